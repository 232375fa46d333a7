"""Structured mask math: blocks, N:M groups and whole channels.

Pure functions of a weight tensor (any backend tensor, or NumPy through
`masks.magnitude_mask`'s conventions), usable inside compiled steps. Each
returns a bool mask of the weight's shape (True = kept) and a float32
threshold, selecting with the same exact, position-tie-broken rule as
`masks.mask_from_bits`.
"""

import numpy as np
from keras import ops

from keras_prune import masks


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
        axis: Grouping axis (default: `input_axis`).

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
    axis = input_axis(shape) if axis is None else axis % len(shape)
    magnitude = ops.abs(ops.cast(weights, "float32"))
    moved = ops.moveaxis(magnitude, axis, -1)
    moved_shape = tuple(moved.shape)
    length = moved_shape[-1]
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
    keep = ops.moveaxis(keep, -1, axis)
    kept_values = ops.where(keep, magnitude, ops.cast(float("inf"), "float32"))
    threshold = ops.min(kept_values)
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


def is_pruned_m_by_n(weights, m_by_n=(2, 4), last_channel="C_IN"):
    """Whether every group of `n` consecutive weights has at most `n - m`
    non-zeros (tfmot's checker).

    Args:
        weights: NumPy array or tensor.
        m_by_n: `(m, n)`.
        last_channel: `'C_IN'` (groups along the input axis of a Keras
            kernel, axis -2 for rank >= 2) or `'C_OUT'` (along the last axis,
            tfmot's TFLite layout).

    Returns:
        bool.
    """

    m, n = m_by_n
    w = np.asarray(ops.convert_to_numpy(weights))
    if last_channel not in ("C_IN", "C_OUT"):
        raise ValueError(
            f"last_channel must be 'C_IN' or 'C_OUT', got {last_channel!r}."
        )
    if last_channel == "C_IN" and w.ndim >= 2:
        w = np.moveaxis(w, -2, -1)
    length = w.shape[-1]
    groups = -(-length // n)
    padded = np.zeros(w.shape[:-1] + (groups * n,), w.dtype)
    padded[..., :length] = w
    nonzero = np.count_nonzero(
        padded.reshape(w.shape[:-1] + (groups, n)), axis=-1
    )
    return bool(np.all(nonzero <= n - m))
