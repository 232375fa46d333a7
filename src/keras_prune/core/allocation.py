"""Sparsity allocation across tensors: how many weights each tensor keeps.

- `global_counts`: one magnitude threshold over all tensors, so exactly
  `kept_count(N, s)` of all N weights are kept, with optional per-tensor
  bounds (e.g. no layer above 98% sparsity), the total still exact. Found
  with the same two-level radix select as `masks`, on per-tensor histograms
  that are summed: no tensor is ever concatenated with another.
- `erk_counts`: Erdős–Rényi-Kernel budgets (Evci et al., RigL): density
  proportional to `sum(shape) / prod(shape)`, so larger tensors get sparser;
  the total is exactly `kept_count(N, s)`.

With `global`, no tensor is pruned whole by default (`guard_floor`): each
keeps at least as many weights as it has output channels, unless its
`max_sparsity` is set (then that cap is the floor; 1.0 lifts every floor).

Both return per-tensor kept counts; each tensor's mask is then its own exact
top-k (`masks.mask_for_count`), which for `global_counts` is exactly the
elements above the global threshold plus the tied elements assigned to it.
"""

import keras
import numpy as np
from keras import ops

from keras_prune import _backend
from keras_prune.core import masks
from keras_prune.core.parts import Part
from keras_prune.core.parts import resolve


def guard_floor(owner, weight):
    """Default least number of weights a tensor keeps under global allocation.

    One per output channel (as a count: the top-k of the tensor still
    decides which weights), so that a global threshold never prunes a whole
    kernel, which would cut the network's output off from its input:

    - Dense `(in, out)`, conv `(..., in, out)` kernels and others: `out`;
    - depthwise kernels `(..., channels, multiplier)`: `channels * mult`;
    - conv-transpose kernels `(..., out, in)`: `out`;
    - EinsumDense: the product of the kernel axes it does not contract;
    - embeddings `(vocab, dim)`: `vocab` (one per row); an untied
      `reverse_embeddings` `(dim, vocab)`: `vocab`;
    - weights of rank < 2: 1.

    Args:
        owner: The layer holding `weight`.
        weight: A pruned variable.

    Returns:
        int, at most the weight's size.
    """
    import keras
    from keras.src.layers.convolutional.base_conv_transpose import (
        BaseConvTranspose,
    )
    from keras.src.layers.convolutional.base_depthwise_conv import (
        BaseDepthwiseConv,
    )
    from keras.src.layers.convolutional.base_separable_conv import (
        BaseSeparableConv,
    )

    from keras_prune.core import patterns

    shape = tuple(int(d) for d in weight.shape)
    size = int(np.prod(shape, dtype=np.int64))
    if len(shape) < 2:
        return 1 if size else 0
    name = weight.name
    if isinstance(owner, keras.layers.EinsumDense) and name == "kernel":
        axes = patterns.contracted_axes(owner, weight)
        axes = (axes,) if isinstance(axes, int) else axes
        contracted = int(np.prod([shape[a] for a in axes]))
        floor = size // max(contracted, 1)
    elif isinstance(owner, BaseConvTranspose):
        floor = shape[-2]
    elif isinstance(owner, keras.layers.Embedding):
        floor = shape[-1] if name == "reverse_embeddings" else shape[0]
    elif isinstance(owner, BaseDepthwiseConv) or (
        isinstance(owner, BaseSeparableConv) and name == "depthwise_kernel"
    ):
        floor = shape[-2] * shape[-1]
    else:
        floor = shape[-1]
    return max(1, min(floor, size))


def _clipped_total(ge, k_min, k_max):
    """`sum_i clip(ge[i, b], k_min[i], k_max[i])` for every bucket b."""
    return ops.sum(
        ops.minimum(ops.maximum(ge, k_min[:, None]), k_max[:, None]), axis=0
    )


def _last_index_at_least(totals, k):
    """Largest bucket index b with `totals[b] >= k` (totals non-increasing)."""
    return ops.sum(ops.cast(ops.greater_equal(totals, k), "int32")) - 1


def global_counts(bits_list, k_total, k_min=None, k_max=None):
    """Kept count per tensor under one global magnitude threshold.

    Args:
        bits_list: List of 1-D int32 tensors (`masks.magnitude_bits`).
        k_total: int32 scalar, total number of weights to keep.
        k_min: Optional int32 vector: at least this many kept per tensor.
        k_max: Optional int32 vector: at most this many kept per tensor.

    Returns:
        `(counts, threshold_bits)`: int32 vector of kept counts summing to
        `k_total` (clamped into `[sum(k_min), sum(k_max)]`), and the global
        threshold's bit pattern.
    """
    sizes = [int(b.shape[0]) for b in bits_list]
    hist = BitsHistograms(bits_list)
    return global_counts_from_histograms(
        hist.high(), hist.low, sizes, k_total, k_min, k_max
    )


class BitsHistograms:
    """The per-tensor histograms an allocation reads, from whole tensors.

    Streaming updates give allocations an object with the same two methods,
    computed chunk by chunk.

    Args:
        bits_list: List of 1-D int32 tensors (`masks.magnitude_bits` of
            each tensor's scores).
    """

    def __init__(self, bits_list):
        self.bits_list = bits_list
        self.highs = [ops.right_shift(b, masks._LO_BITS) for b in bits_list]

    def high(self):
        """int32 `(n, 2**16)`: per tensor, `masks.high_histogram`."""
        return ops.stack(
            [_backend.histogram(h, 1 << masks._HI_BITS) for h in self.highs]
        )

    def low(self, bucket):
        """int32 `(n, 2**15)`: per tensor, `masks.low_histogram(bucket)`."""
        return ops.stack(
            [
                masks.low_histogram(b, bucket, h)
                for h, b in zip(self.highs, self.bits_list)
            ]
        )


def global_counts_from_histograms(
    hist, low_histograms, sizes, k_total, k_min=None, k_max=None
):
    """`global_counts` from per-tensor histograms instead of the bits.

    The streaming (eager) group update computes the histograms chunk by
    chunk, so that no tensor's bit patterns are ever held whole.

    Args:
        hist: int32 `(n, 2**16)`: per tensor, the histogram of the high 16
            bits of its magnitude bits (`masks.high_histogram`).
        low_histograms: Function `bucket -> int32 (n, 2**15)`: per tensor,
            the histogram of the low 15 bits of the values whose high bits
            equal `bucket` (`masks.low_histogram`).
        sizes: Number of elements of each tensor (Python ints).
        k_total, k_min, k_max: As in `global_counts`.

    Returns:
        `(counts, threshold_bits)`, as `global_counts`.
    """
    n = len(sizes)
    sizes_t = ops.convert_to_tensor(np.array(sizes, np.int32))
    k_min = ops.zeros((n,), "int32") if k_min is None else k_min
    k_max = sizes_t if k_max is None else k_max
    k_total = ops.convert_to_tensor(k_total, "int32")
    k_total = ops.clip(k_total, ops.sum(k_min), ops.sum(k_max))

    lo_bits = masks._LO_BITS
    # ge[i, b]: elements of tensor i in buckets >= b.
    ge = ops.flip(ops.cumsum(ops.flip(hist, axis=1), axis=1), axis=1)
    bucket = _last_index_at_least(_clipped_total(ge, k_min, k_max), k_total)
    above = ops.take(ge, bucket, axis=1) - ops.take(hist, bucket, axis=1)

    hist_low = low_histograms(bucket)
    ge_low = above[:, None] + ops.flip(
        ops.cumsum(ops.flip(hist_low, axis=1), axis=1), axis=1
    )
    low = _last_index_at_least(_clipped_total(ge_low, k_min, k_max), k_total)
    threshold = bucket * (1 << lo_bits) + low

    ge_t = ops.take(ge_low, low, axis=1)
    gt_t = ge_t - ops.take(hist_low, low, axis=1)
    clip_gt = ops.minimum(ops.maximum(gt_t, k_min), k_max)
    clip_ge = ops.minimum(ops.maximum(ge_t, k_min), k_max)
    # Ties at the threshold go to tensors in order (deterministic).
    room = clip_ge - clip_gt
    remaining = k_total - ops.sum(clip_gt)
    before = ops.cumsum(room) - room
    share = ops.clip(remaining - before, 0, room)
    return clip_gt + share, threshold


def host_global_counts(hist, low_histograms, sizes, k_total, k_min, k_max):
    """`global_counts_from_histograms` in NumPy, on the host.

    The same integer arithmetic (in int64), so the same counts and
    threshold. Eager group updates on the host (`MaskUpdate.stream`) use it:
    the backend version runs some 40 small eager operations, each compiled
    by JAX on first use (15 s of a first `prune_once(..., 'global')` on a
    loaded 2-core machine).

    Args:
        hist: NumPy `(n, 2**16)` high-bit histograms.
        low_histograms: Function `bucket (int) -> NumPy (n, 2**15)`.
        sizes: Number of elements of each tensor.
        k_total: int, total number of weights to keep.
        k_min, k_max: Sequences of ints (floors and caps per tensor).

    Returns:
        `(counts, threshold_bits)`: int32 NumPy vector and a Python int.
    """
    hist = np.asarray(hist, np.int64)
    k_min = np.asarray(k_min, np.int64)
    k_max = np.asarray(k_max, np.int64)
    k_total = int(np.clip(k_total, k_min.sum(), k_max.sum()))

    def clipped_total(ge):
        return np.minimum(np.maximum(ge, k_min[:, None]), k_max[:, None]).sum(
            axis=0
        )

    def last_index_at_least(totals):
        return int(np.count_nonzero(totals >= k_total)) - 1

    def ge_of(h):  # elements in buckets >= b, per tensor
        return np.flip(np.cumsum(np.flip(h, axis=1), axis=1), axis=1)

    ge = ge_of(hist)
    bucket = last_index_at_least(clipped_total(ge))
    above = ge[:, bucket] - hist[:, bucket]
    hist_low = np.asarray(low_histograms(bucket), np.int64)
    ge_low = above[:, None] + ge_of(hist_low)
    low = last_index_at_least(clipped_total(ge_low))
    threshold = bucket * (1 << masks._LO_BITS) + low
    ge_t = ge_low[:, low]
    gt_t = ge_t - hist_low[:, low]
    clip_gt = np.minimum(np.maximum(gt_t, k_min), k_max)
    clip_ge = np.minimum(np.maximum(ge_t, k_min), k_max)
    room = clip_ge - clip_gt
    remaining = k_total - clip_gt.sum()
    before = np.cumsum(room) - room
    share = np.clip(remaining - before, 0, room)
    return (clip_gt + share).astype(np.int32), threshold


def erk_densities(shapes, power_scale=1.0):
    """Raw ERK density factors `sum(shape) / prod(shape)` per tensor."""
    out = []
    for shape in shapes:
        shape = [int(d) for d in shape]
        out.append((sum(shape) / float(np.prod(shape))) ** power_scale)
    return np.array(out, np.float64)


def erk_counts(shapes, sparsity):
    """Erdős–Rényi-Kernel kept counts, summing exactly to `kept_count(N, s)`.

    Tensors whose ERK density would exceed 1 stay dense and the scale is
    recomputed for the others (RigL / jaxpruner). Fractional budgets are
    rounded by largest remainder (ties: earlier tensor first). Computed with
    `keras.ops` on a vector of one entry per tensor, so `sparsity` may be a
    tensor inside a compiled step.

    Args:
        shapes: List of weight shapes.
        sparsity: float32 scalar, overall sparsity.

    Returns:
        int32 vector of kept counts.
    """
    sizes_np = np.array([int(np.prod(s)) for s in shapes], np.float64)
    raw = ops.convert_to_tensor(erk_densities(shapes).astype(np.float32))
    sizes = ops.convert_to_tensor(sizes_np.astype(np.float32))
    total = int(sizes_np.sum())
    k_total = masks.kept_count(total, sparsity)
    k_f = ops.cast(k_total, "float32")
    dense = ops.zeros_like(raw, dtype="bool")
    for _ in range(len(shapes)):
        dense_size = ops.sum(ops.where(dense, sizes, 0.0))
        weighted = ops.sum(ops.where(dense, 0.0, raw * sizes))
        scale = (k_f - dense_size) / ops.maximum(weighted, 1e-30)
        dense = ops.logical_or(dense, ops.greater_equal(scale * raw, 1.0))
    dense_size = ops.sum(ops.where(dense, sizes, 0.0))
    weighted = ops.sum(ops.where(dense, 0.0, raw * sizes))
    scale = (k_f - dense_size) / ops.maximum(weighted, 1e-30)
    budget = ops.where(dense, sizes, ops.minimum(scale * raw * sizes, sizes))
    base = ops.cast(ops.floor(budget), "int32")
    base = ops.maximum(ops.minimum(base, ops.cast(sizes, "int32")), 0)
    short = k_total - ops.sum(base)
    remainder = budget - ops.floor(budget)
    room = ops.cast(sizes, "int32") - base
    remainder = ops.where(ops.greater(room, 0), remainder, -1.0)
    # Rank remainders: larger first, earlier first on ties.
    n = len(shapes)
    index = ops.arange(n)
    a = ops.expand_dims(remainder, 1)
    b = ops.expand_dims(remainder, 0)
    earlier = ops.less(ops.expand_dims(index, 0), ops.expand_dims(index, 1))
    beats = ops.logical_or(
        ops.greater(b, a), ops.logical_and(ops.equal(b, a), earlier)
    )
    rank = ops.sum(ops.cast(beats, "int32"), axis=1)
    extra = ops.cast(ops.less(rank, short), "int32")
    return base + extra


def guard_floors(targets):
    """Per target: `guard_floor`, or None where it sets `max_sparsity`
    (its cap is then the floor).

    Args:
        targets: Objects with `owner`, `weight` and `max_sparsity`.
    """
    return [
        guard_floor(t.owner, t.weight) if t.max_sparsity is None else None
        for t in targets
    ]


def count_bounds(targets):
    """Per-tensor kept-count floors and caps from max/min sparsity.

    Without `max_sparsity`, the floor is the guard's (no tensor pruned
    whole); `max_sparsity=1.0` lifts it to 0.

    Args:
        targets: Objects with `owner`, `weight`, `max_sparsity` and
            `min_sparsity`.

    Returns:
        `(k_min, k_max)`: lists of Python ints.
    """
    sizes = [int(np.prod(t.weight.shape, dtype=np.int64)) for t in targets]
    guards = guard_floors(targets)
    k_min = [
        g
        if t.max_sparsity is None
        else 0
        if t.max_sparsity >= 1.0
        else masks.host_kept_count(n, t.max_sparsity)
        for t, n, g in zip(targets, sizes, guards)
    ]
    k_max = [
        n
        if t.min_sparsity is None
        else masks.host_kept_count(n, t.min_sparsity)
        for t, n in zip(targets, sizes)
    ]
    return k_min, k_max


@keras.saving.register_keras_serializable(package="keras_prune")
class Allocation(Part):
    """Base class: how many weights each tensor of a group keeps.

    An allocation turns the group's sparsity into one kept count per
    tensor; each tensor's mask is then its exact top-k by score. Subclass
    it and implement `counts`.

    Class attributes:
        shared: False for `PerTensor` (every weight on its own, with its
            pattern); True for the allocations that share one budget across
            the layers of a model (a pruning group).

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_allocations")
    class Uniform(keras_prune.Allocation):
        def counts(self, targets, sparsity, histograms):
            return ops.stack([
                keras_prune.kept_count(int(np.prod(t.weight.shape)), sparsity)
                for t in targets
            ])
    ```
    """

    shared = True
    name = None

    def counts(self, targets, sparsity, histograms):
        """Kept count per tensor.

        Args:
            targets: Per tensor, an object with `weight` (the variable),
                `owner` (its layer), `max_sparsity` and `min_sparsity`.
            sparsity: float32 scalar: the group's sparsity.
            histograms: An object with `high()` (int32 `(n, 2**16)`: per
                tensor, the histogram of the high 16 bits of its score
                bits) and `low(bucket)` (int32 `(n, 2**15)`), computed on
                demand (see `global_counts_from_histograms`).

        Returns:
            An int32 vector of kept counts, one per tensor.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "`counts(self, targets, sparsity, histograms)`."
        )


@keras.saving.register_keras_serializable(package="keras_prune")
class PerTensor(Allocation):
    """`allocation='layer'`: every weight reaches the sparsity on its own
    (a group of one), with its pattern's own count."""

    shared = False
    name = "layer"

    def counts(self, targets, sparsity, histograms=None):
        return ops.stack(
            [
                masks.kept_count(int(np.prod(t.weight.shape)), sparsity)
                for t in targets
            ]
        )


@keras.saving.register_keras_serializable(package="keras_prune")
class Global(Allocation):
    """`allocation='global'`: one score threshold across the group
    (`global_counts_from_histograms`), within each layer's
    `max_sparsity` / `min_sparsity` and the default guard (`guard_floor`).
    """

    name = "global"

    def counts(self, targets, sparsity, histograms):
        sizes = [int(np.prod(t.weight.shape, dtype=np.int64)) for t in targets]
        k_min, k_max = count_bounds(targets)
        host = getattr(histograms, "host", None)
        if host is not None:
            # An eager update on the host: NumPy histograms, no compile.
            k_total = masks.host_kept_count(
                sum(sizes), np.float32(ops.convert_to_numpy(sparsity))
            )
            counts, _ = host_global_counts(
                host[0](), host[1], sizes, k_total, k_min, k_max
            )
            return counts
        counts, _ = global_counts_from_histograms(
            histograms.high(),
            histograms.low,
            sizes,
            masks.kept_count(sum(sizes), sparsity),
            ops.convert_to_tensor(k_min, "int32"),
            ops.convert_to_tensor(k_max, "int32"),
        )
        return counts


@keras.saving.register_keras_serializable(package="keras_prune")
class ERK(Allocation):
    """`allocation='erk'`: Erdős–Rényi-Kernel budgets (`erk_counts`)."""

    name = "erk"

    def counts(self, targets, sparsity, histograms=None):
        return erk_counts([tuple(t.weight.shape) for t in targets], sparsity)


BUILTIN = {"layer": PerTensor, "global": Global, "erk": ERK}


def get(identifier):
    """An `Allocation` from an instance, its config, or `'layer'`,
    `'global'`, `'erk'`."""
    allocation = resolve(identifier, Allocation, BUILTIN)
    if allocation is None:
        raise ValueError(
            f"Unknown allocation {identifier!r}: use 'layer' (every "
            "weight to the schedule's sparsity), 'global' (one threshold "
            "across layers), 'erk' (Erdős–Rényi-Kernel budgets), or a "
            "keras_prune.Allocation instance."
        )
    return allocation
