"""Structured mask math: blocks, N:M groups and whole channels.

Pure functions of a weight tensor (any backend tensor, or NumPy through
`masks.magnitude_mask`'s conventions), usable inside compiled steps. Each
returns a bool mask of the weight's shape (True = kept) and a float32
threshold, selecting with the same exact, position-tie-broken rule as
`masks.mask_from_bits`.
"""

import keras
import numpy as np
from keras import ops
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose

from keras_prune import _backend
from keras_prune._keywords import keywords_checked
from keras_prune.core import masks


def _select(scores, sparsity):
    """Exact mask over a tensor of non-negative float32 scores."""
    return masks.mask_from_bits(
        masks.magnitude_bits(scores), sparsity, ops.shape(scores)
    )


def block_mask(weights, sparsity, block_size, pooling="AVG"):
    """Prunes whole blocks over the last two axes (tfmot's block sparsity).

    Each block's score is the mean (`'AVG'`, over the block's valid elements
    only, as tfmot's SAME padding) or the max (`'MAX'`) of `|w|`. Sparsity is
    a fraction of blocks, with tfmot's count and position tie-breaking. For
    rank > 2 (conv kernels) every position of the leading axes is blocked on
    its own (tfmot refuses rank != 2).

    Args:
        weights: Tensor of rank >= 2.
        sparsity: float32 scalar.
        block_size: `(rows, cols)` of a block over the last two axes.
        pooling: `'AVG'` or `'MAX'`.

    Returns:
        `(mask, threshold, n_nonfinite)` as `masks.mask_from_bits`.
    """
    shape = tuple(weights.shape)
    if len(shape) < 2:
        raise ValueError(
            f"Block sparsity needs weights of rank >= 2, got shape {shape}."
        )
    br, bc = block_size
    rows, cols = shape[-2], shape[-1]
    nr, nc = -(-rows // br), -(-cols // bc)
    lead = shape[:-2]
    pad = [(0, 0)] * len(lead) + [(0, nr * br - rows), (0, nc * bc - cols)]
    magnitude = ops.abs(ops.cast(weights, "float32"))
    grid = lead + (nr, br, nc, bc)
    blocks = ops.reshape(ops.pad(magnitude, pad), grid)
    axes = (len(lead) + 1, len(lead) + 3)
    if pooling == "MAX":
        scores = ops.max(blocks, axis=axes)
    else:
        # 1 / (valid elements per block), a static float32 constant: a
        # multiplication rounds the same on every backend, while a compiled
        # division may not (XLA on TensorFlow gave 20.499998 for 82 / 4).
        valid_rows = np.minimum(br, rows - br * np.arange(nr))
        valid_cols = np.minimum(bc, cols - bc * np.arange(nc))
        inverse = (1.0 / np.outer(valid_rows, valid_cols)).astype("float32")
        scores = ops.multiply(
            ops.sum(blocks, axis=axes), ops.convert_to_tensor(inverse)
        )
    block_keep, threshold, n_bad = _select(scores, sparsity)
    keep = ops.repeat(ops.repeat(block_keep, br, axis=-2), bc, axis=-1)
    keep = keep[..., :rows, :cols]
    return keep, threshold, n_bad


def input_axis(weight_shape):
    """The default N:M grouping axis: -2 (tfmot's), 0 for rank-1 weights.

    Dense kernels `(in, out)` and conv kernels `(..., in, out)` group along
    their input channels. The wrapper chooses per layer kind (conv-transpose
    kernels and embeddings along -1, EinsumDense along 0).
    """
    return max(len(weight_shape) - 2, 0)


def _einsum_contracted_axes(equation):
    """Kernel axes an EinsumDense equation sums over, or None."""
    try:
        inputs, output = equation.replace(" ", "").split("->")
        operand, kernel = inputs.split(",")
    except ValueError:
        return None
    operand, kernel, output = (
        x.replace("...", "") for x in (operand, kernel, output)
    )
    axes = tuple(
        i for i, c in enumerate(kernel) if c in operand and c not in output
    )
    return axes or None


def contracted_axes(layer, weight):
    """The input (contracted) axes of `weight`, along which N:M groups run.

    Sparse hardware (e.g. 2:4 tensor cores) needs every `n` consecutive
    weights along the reduction axis of the matrix product to hold at most
    `n - m` non-zeros.

    - `EinsumDense` (also the query/key/value/output kernels of
      MultiHeadAttention and of keras-hub attention layers): the kernel
      axes the equation sums over, read from the equation. Several axes
      (an attention output kernel `(heads, head_dim, hidden)`) are grouped
      as one flattened axis in C order.
    - Conv-transpose kernels `(..., out, in)`: -1.
    - Embeddings `(vocab, dim)`: -1 (the axis a tied output projection
      contracts); an untied `reverse_embeddings` `(dim, vocab)`: 0.
    - Other kernels of rank > 2 (convolutions `(..., in, out)`, depthwise,
      separable, ConvLSTM): -2, tfmot's input channels; when that axis
      holds one channel (a grouped convolution with one channel per group,
      as ConvNeXt's depthwise `Conv2D(groups=channels)`, or a one-channel
      stem), the window axes with it: all the axes the kernel's product
      sums over (N:M could prune nothing along one channel).
    - Dense and recurrent kernels `(in, out)`: 0.

    Args:
        layer: The layer that holds `weight` (not a wrapper).
        weight: A variable of `layer`.

    Returns:
        An int axis, or a tuple of axes (ascending) when several are
        contracted.
    """
    rank = len(weight.shape)
    if isinstance(layer, keras.layers.EinsumDense) and weight.name == "kernel":
        axes = _einsum_contracted_axes(layer.equation)
        if axes is not None:
            return axes[0] if len(axes) == 1 else axes
    if isinstance(layer, BaseConvTranspose):
        return -1
    if isinstance(layer, keras.layers.Embedding):
        return 0 if weight.name == "reverse_embeddings" else -1
    if rank > 2:
        if int(weight.shape[-2]) == 1:
            return tuple(range(rank - 1))
        return -2
    return 0


def always_full_m_by_n(schedule, m_by_n):
    """Whether `schedule` always asks for full N:M (`ConstantSparsity` with
    a target >= m / n): the gradual group selection is then skipped, which
    keeps it out of compiled train steps. Same masks either way."""
    from keras_prune.core import schedules

    if type(schedule) is not schedules.ConstantSparsity:
        return False
    m, n = m_by_n
    target = np.float32(schedule.target_sparsity)
    return bool(target * np.float32(n / m) >= np.float32(1.0))


def m_by_n_inapplicable(owner, weight, m_by_n):
    """Why N:M cannot prune `weight` of `owner`, or None if it can.

    A weight whose contracted length is at most `n - m` would keep every
    value: N:M cannot prune it at all.
    """
    m, n = m_by_n
    axis = contracted_axes(owner, weight)
    length = group_length(tuple(weight.shape), axis)
    if length <= n - m:
        return (
            f"{m}:{n} cannot prune it: its contracted axes {axis} hold "
            f"{length} value(s), at most n - m = {n - m}"
        )
    return None


def _normalize_axes(axis, rank):
    """`axis` (an int or a sequence of ints) as sorted non-negative axes.

    Raises:
        ValueError: an axis outside `[-rank, rank)` (it wrapped around
            before: axis 2 of a rank-2 weight grouped along axis 0), a
            non-integer or bool axis, or no axis at all.
    """
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axes:
        raise ValueError("`axis` must name at least one axis.")
    for a in axes:
        if isinstance(a, (bool, np.bool_)) or not isinstance(
            a, (int, np.integer)
        ):
            raise ValueError(f"`axis` must hold integers, got {axis!r}.")
        if not -rank <= a < rank:
            raise ValueError(
                f"`axis` {axis!r} is out of range for a weight of rank "
                f"{rank} (axes run from {-rank} to {rank - 1})."
            )
    return tuple(sorted({int(a) % rank for a in axes}))


def group_length(shape, axis):
    """Length of the (flattened) grouping axes `axis` of a weight `shape`."""
    axes = _normalize_axes(axis, len(shape))
    return int(np.prod([int(shape[a]) for a in axes]))


def m_by_n_mask(weights, m_by_n, sparsity=None, axis=None):
    """N:M sparsity: `m` zeros in every `n` consecutive weights along `axis`.

    Groups run along the input-channel axis (default: -2, tfmot's layout);
    when that axis is not a multiple of `n`, the last group is padded with
    virtual zeros that count as pruned (2:4 over 7 channels prunes 3 of 7).
    Inside a group the `n - m` largest magnitudes are kept (ties: lower
    position first).

    Gradual N:M: with `sparsity` below `m / n`, only a fraction
    `sparsity / (m / n)` of the groups is made N:M, those that lose the least
    magnitude by it; the others stay dense. At `sparsity >= m / n` (the
    schedule's final value should be `m / n`) every group is N:M.

    Args:
        weights: Tensor.
        m_by_n: `(m, n)` with `0 < m < n`.
        sparsity: Optional float32 scalar for the gradual path.
        axis: Grouping axis, or a tuple of axes grouped as one flattened
            axis in C order (default: `input_axis`; `contracted_axes`
            gives a layer's).

    Returns:
        `(mask, threshold, n_nonfinite)`; threshold is the smallest kept
        magnitude.
    """
    m, n = m_by_n
    if not 0 < m < n:
        raise ValueError(
            f"sparsity_m_by_n=(m, n) needs 0 < m < n, got {m_by_n}: m is the "
            "number of zeros in every n consecutive weights, e.g. (2, 4)."
        )
    shape = tuple(weights.shape)
    axes = _normalize_axes(
        input_axis(shape) if axis is None else axis, len(shape)
    )
    rest = tuple(i for i in range(len(shape)) if i not in axes)
    perm = rest + axes
    magnitude = ops.abs(ops.cast(weights, "float32"))
    moved = (
        ops.transpose(magnitude, perm)
        if perm != tuple(range(len(shape)))
        else magnitude
    )
    length = int(np.prod([shape[a] for a in axes]))
    moved_shape = tuple(shape[i] for i in rest) + (length,)
    moved = ops.reshape(moved, moved_shape)
    groups = -(-length // n)
    pad = [(0, 0)] * (len(moved_shape) - 1) + [(0, groups * n - length)]
    # Virtual pad entries get -1: below every real magnitude.
    padded = ops.pad(moved, pad, constant_values=-1.0)
    grouped = ops.reshape(padded, moved_shape[:-1] + (groups, n))
    # Rank of each entry inside its group: larger first, then position.
    a = ops.expand_dims(grouped, -1)  # entry i
    b = ops.expand_dims(grouped, -2)  # entry j
    index = ops.arange(n)
    earlier = ops.less(ops.expand_dims(index, 0), ops.expand_dims(index, 1))
    beats = ops.logical_or(
        ops.greater(b, a), ops.logical_and(ops.equal(b, a), earlier)
    )
    rank = ops.sum(ops.cast(beats, "int32"), axis=-1)
    keep = ops.less(rank, n - m)
    n_bad = ops.sum(ops.cast(ops.logical_not(ops.isfinite(magnitude)), "int32"))
    if sparsity is not None:
        # Cost of making a group N:M: the magnitude it loses.
        loss = ops.sum(ops.where(keep, 0.0, ops.maximum(grouped, 0.0)), axis=-1)
        fraction = ops.minimum(
            ops.cast(sparsity, "float32") * (n / m), ops.cast(1.0, "float32")
        )
        # Groups to convert: the cheapest; selecting the *dense* ones keeps
        # the most expensive `1 - fraction` of them.
        dense_groups, _, _ = _select(loss, fraction)
        # `_select` keeps at least one group; at fraction 1 none stays dense.
        all_nm = ops.greater_equal(fraction, ops.cast(1.0, "float32"))
        dense_groups = ops.logical_and(dense_groups, ops.logical_not(all_nm))
        keep = ops.logical_or(keep, ops.expand_dims(dense_groups, -1))
    keep = ops.reshape(keep, moved_shape[:-1] + (groups * n,))[..., :length]
    keep = ops.reshape(keep, tuple(shape[i] for i in perm))
    if perm != tuple(range(len(shape))):
        keep = ops.transpose(keep, tuple(int(i) for i in np.argsort(perm)))
    kept_values = ops.where(keep, magnitude, ops.cast(float("inf"), "float32"))
    threshold = ops.min(kept_values)
    return keep, threshold, n_bad


def host_m_by_n_mask(weights, m_by_n, axis=None):
    """NumPy twin of `m_by_n_mask` at full N:M (`sparsity=None`).

    For eager updates on the host (`prune_once(..., sparsity_m_by_n=...)`):
    the compiled version is compiled by JAX once per weight shape. The
    magnitudes are compared as their int32 bit patterns, which order
    non-negative floats exactly as the float compare does; a subnormal
    magnitude is kept as itself, where XLA on CPU (JAX, TensorFlow) may
    treat it as zero.

    Args:
        weights: float32 NumPy array.
        m_by_n: `(m, n)` with `0 < m < n`.
        axis: As in `m_by_n_mask`.

    Returns:
        `(mask, threshold, n_nonfinite)`: bool NumPy mask of the shape of
        `weights`, the float32 smallest kept magnitude, and the count of
        NaN/Inf values.
    """
    m, n = m_by_n
    weights = np.ascontiguousarray(weights, np.float32)
    shape = weights.shape
    axes = _normalize_axes(
        input_axis(shape) if axis is None else axis, len(shape)
    )
    rest = tuple(i for i in range(len(shape)) if i not in axes)
    perm = rest + axes
    bits = weights.view(np.int32) & np.int32(0x7FFFFFFF)
    n_bad = int(np.count_nonzero(bits >= np.int32(0x7F800000)))
    moved = np.transpose(bits, perm)
    length = int(np.prod([shape[a] for a in axes]))
    moved_shape = tuple(shape[i] for i in rest) + (length,)
    moved = moved.reshape(moved_shape)
    groups = -(-length // n)
    padded = np.full(moved_shape[:-1] + (groups * n,), -1, np.int32)
    padded[..., :length] = moved  # pads rank below every magnitude
    grouped = padded.reshape(moved_shape[:-1] + (groups, n))
    # Rank inside the group: larger first, then lower position first.
    rank = np.zeros(grouped.shape, np.int8)
    index = np.arange(n)
    for j in range(n):
        other = grouped[..., j : j + 1]
        beats = other > grouped
        beats |= (other == grouped) & (j < index)
        rank += beats
    keep = (rank < n - m).reshape(moved_shape[:-1] + (groups * n,))
    keep = keep[..., :length].reshape(tuple(shape[i] for i in perm))
    keep = np.ascontiguousarray(np.transpose(keep, np.argsort(perm)))
    kept = np.where(keep, bits, np.int32(0x7F800000))
    threshold = (
        np.asarray(kept.min() if kept.size else 0x7F800000, np.int32)
        .view(np.float32)
        .reshape(())
    )
    return keep, threshold, n_bad


def channel_mask(weights, sparsity, axis=-1):
    """Prunes whole output channels with the smallest L2 norms.

    Sparsity is a fraction of channels (tfmot's count, ties by position);
    the mask marks whole channels, so the realised weight sparsity is the
    channel fraction exactly.

    Args:
        weights: Kernel tensor.
        sparsity: float32 scalar.
        axis: Output-channel axis (-1 for Dense and Conv kernels; -2 for
            conv-transpose kernels).

    Returns:
        `(mask, threshold, n_nonfinite)`; threshold is the smallest kept
        channel norm.
    """
    shape = tuple(weights.shape)
    axis = axis % len(shape)
    other = tuple(i for i in range(len(shape)) if i != axis)
    w = ops.cast(weights, "float32")
    norms = ops.sqrt(ops.sum(ops.square(w), axis=other))
    keep_channels, threshold, n_bad = _select(norms, sparsity)
    broadcast = [1] * len(shape)
    broadcast[axis] = shape[axis]
    keep = ops.broadcast_to(ops.reshape(keep_channels, broadcast), shape)
    return keep, threshold, n_bad


@keywords_checked
def is_pruned_m_by_n(weights, m_by_n=(2, 4), last_channel="C_OUT", axis=None):
    """Whether `weights` holds at most `n - m` non-zeros in every `n`
    consecutive values (tfmot's `pruning_utils.is_pruned_m_by_n`).

    With `last_channel` (tfmot's meaning, tfmot's default): it names the
    last axis of `weights`.

    - `'C_OUT'`: a Keras/TF kernel, Dense `(in, out)` or Conv2D
      `(h, w, in, out)`, is checked along its input channels (TFLite's
      layout `(out, in)` / `(out, h, w, in)`). Only rank 2 and 4 are
      accepted, as in tfmot.
    - `'C_IN'`: the tensor is already in TFLite's layout: checked along its
      last axis (any rank).

    With `axis` (keras-prune's addition), `last_channel` is ignored and the
    groups run along `axis`, or along several axes flattened in C order:
    `patterns.contracted_axes(layer, weight)` gives the axes keras-prune
    groups a layer's weight along (e.g. `(0, 1)` for an attention output
    kernel `(heads, head_dim, hidden)`). A trailing partial group may hold
    `n - m` non-zeros too.

    Args:
        weights: NumPy array or tensor.
        m_by_n: `(m, n)`: `m` zeros in every `n` consecutive values.
        last_channel: `'C_OUT'` (default) or `'C_IN'` (tfmot matches the
            end of the string).
        axis: Optional int or tuple of ints.

    Returns:
        bool.

    Raises:
        ValueError: `m > n`; `last_channel` is neither; with `'C_OUT'`, a
            weight of rank other than 2 or 4; an `axis` outside the
            weight's rank.
        TypeError: `weights` is a `numpy.ma.MaskedArray`.

    Example:

    >>> keras_prune.is_pruned_m_by_n(np.array([[1, 2, 3, 4]]).T, (2, 4))
    False
    """
    if (
        not isinstance(m_by_n, (tuple, list))
        or len(m_by_n) != 2
        or any(
            isinstance(v, (bool, np.bool_))
            or not isinstance(v, (int, np.integer))
            for v in m_by_n
        )
        or m_by_n[1] < 1
        or m_by_n[0] < 0
    ):
        raise ValueError(
            "`m_by_n` must be a pair of integers (m, n) with 0 <= m <= n "
            f"and n >= 1 (m zeros in every n values, e.g. (2, 4)), got "
            f"{m_by_n!r}."
        )
    num_zeros, num_elem = int(m_by_n[0]), int(m_by_n[1])
    if num_zeros > num_elem:
        raise ValueError(
            "number of zeros can't be more than number elements. "
            f"received: {num_zeros} zeros in {num_elem} elements."
        )
    if isinstance(weights, np.ma.MaskedArray):
        raise TypeError(masks.masked_array_message("is_pruned_m_by_n"))
    w = np.asarray(ops.convert_to_numpy(_backend.resolved(weights)))
    if axis is not None:
        axes = _normalize_axes(axis, w.ndim)
        rest = tuple(i for i in range(w.ndim) if i not in axes)
        length = int(np.prod([w.shape[a] for a in axes]))
        rows = np.transpose(w, rest + axes).reshape(-1, length)
    elif not isinstance(last_channel, str):
        raise ValueError(
            f"last_channel must be `C_IN` or `C_OUT`, got {last_channel!r}."
        )
    elif last_channel.endswith("C_IN"):
        rows = w.reshape(-1, w.shape[-1]) if w.ndim else w.reshape(1, 1)
    elif last_channel.endswith("C_OUT"):
        if w.ndim == 2:
            rows = w.T
        elif w.ndim == 4:
            rows = np.transpose(w, (3, 0, 1, 2)).reshape(-1, w.shape[2])
        else:
            raise ValueError(
                f"weight tensor with shape: {tuple(w.shape)} is not supported."
            )
    else:
        raise ValueError("last_channel must be `C_IN` or `C_OUT`")
    # Full groups, then the trailing partial one, without padding: a
    # padded copy was rows x n (n = 2**40 asked for 2 TiB).
    nonzero = rows != 0
    length, limit = nonzero.shape[-1], num_elem - num_zeros
    full = length // num_elem * num_elem
    head = nonzero[:, :full].reshape(
        nonzero.shape[0], full // num_elem, num_elem
    )
    tail = nonzero[:, full:]
    return bool(
        np.all(head.sum(axis=-1) <= limit)
        and np.all(tail.sum(axis=-1) <= limit)
    )
