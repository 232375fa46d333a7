"""Pruning groups: wrappers that share one sparsity budget.

With `allocation="global"` or `"erk"`, the pruned weights of all wrapped
layers of a model form one group. The schedule's sparsity then applies to
the group's total: `global` keeps the largest magnitudes across all tensors
(one threshold), `erk` gives each tensor an Erdős–Rényi-Kernel budget; both
keep exactly `kept_count(N, s)` of the N weights. Each tensor's mask is then
its own exact top-k (`masks.mask_for_count`).

The first member called in a training forward pass recomputes (when the
schedule says so) the masks of every member; the others read them. Groups
are not saved as objects: every member's config holds the group's id, size
and its own index. `prune_low_magnitude` fills the group of the wrappers it
creates (`join` and `seal`). Members created from configs (loading a model,
or `clone_model`) are linked from the model that holds them (`link`):
within that model, by group id and index, whatever the order in which
models were loaded or cloned. `link` runs when the model is called (its
first call, e.g. the symbolic build of `fit`, or any call on TensorFlow and
torch), by `UpdatePruningStep`, `prune_once` and the reports.
"""

import weakref

import numpy as np
from keras import ops

from keras_prune import _backend
from keras_prune.core import allocation
from keras_prune.core import masks

ALLOCATIONS = ("layer", "global", "erk")

# id -> the group a running `prune_low_magnitude` call is filling; emptied
# by its `seal` (in a `finally`), so nothing outlives the call.
_FILLING = {}

# Elements per chunk of the eager (streaming) group update (4 MiB of
# float32): temporaries stay small next to large tensors.
STREAM_CHUNK = 1 << 20
# Elements per block of the NumPy streaming update: 1 MiB of bits, 2 MiB
# of int64 bucket ids (cache-resident), and few allocations per weight.
STREAM_BLOCK = 1 << 18


def _row_chunks(shape, chunk):
    """`(start, stop)` row ranges of about `chunk` elements along axis 0.

    Slices along the first axis are contiguous in flat (C) order, so the
    chunks visit the flat tensor in order without reshaping it whole.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return [(None, None)]
    row = int(np.prod(shape[1:], dtype=np.int64))
    step = max(1, int(chunk) // max(row, 1))
    return [(a, min(a + step, shape[0])) for a in range(0, shape[0], step)]


def _rows(x, start, stop):
    """`x[start:stop]` along axis 0 (`ops.slice`: one compiled op per shape)."""
    if start is None:
        return ops.reshape(x, (1,))
    shape = tuple(int(d) for d in x.shape)
    if start == 0 and stop == shape[0]:
        return x
    return ops.slice(
        x, (start,) + (0,) * (len(shape) - 1), (stop - start,) + shape[1:]
    )


def _int(x):
    return int(ops.convert_to_numpy(x))


def _kept_count(n, sparsity):
    """`masks.kept_count` of Python numbers, on the host."""
    one = np.float32(1.0)
    return int(max(np.round(np.float32(n) * (one - np.float32(sparsity))), 1))


def _guard_floors(entries):
    """Per tensor: the default guard's floor (`allocation.guard_floor`),
    or None where the layer sets `max_sparsity` (its cap is the floor)."""
    from keras_prune.integration import registry

    return [
        allocation.guard_floor(registry.owner_of(e[0].layer, e[1]), e[1])
        if e[4] is None
        else None
        for e in entries
    ]


def _count_bounds(entries, sizes):
    """Per-tensor kept-count floors and caps from max/min sparsity.

    Without `max_sparsity`, the floor is the guard's (no tensor pruned
    whole); `max_sparsity=1.0` lifts it to 0.
    """
    guards = _guard_floors(entries)
    k_min = [
        g if e[4] is None else 0 if e[4] >= 1.0 else _kept_count(n, e[4])
        for e, n, g in zip(entries, sizes, guards)
    ]
    k_max = [
        n if e[5] is None else _kept_count(n, e[5])
        for e, n in zip(entries, sizes)
    ]
    return k_min, k_max


def link(model):
    """Gives the wrappers of `model` that have no group yet their groups.

    Wrappers created from configs (a loaded or cloned model) hold their
    group's id and size and their own index. Within `model`, in its layer
    order, each joins the first group with its id that lacks its index, so
    two models loaded or cloned in any order keep separate groups; and a
    model holding two copies of a pruned model gets two groups. Only
    complete groups are linked; wrappers that already have a group keep
    it.

    Args:
        model: A model (or layer) holding pruning wrappers.
    """
    from keras_prune.integration import strip

    filling = {}
    for wrapper in strip.pruning_wrappers(model):
        config = getattr(wrapper, "_group_config", None)
        if config is None or wrapper._linked_group is not None:
            continue
        index = int(config["index"])
        candidates = filling.setdefault(config["id"], [])
        group = next((g for g in candidates if index not in g._members), None)
        if group is None:
            group = PruningGroup(
                config["id"], config["size"], config["allocation"]
            )
            candidates.append(group)
        group._members[index] = wrapper
    for candidates in filling.values():
        for group in candidates:
            # A model holding part of a group (a nested model called on its
            # own while the outer one is built) links nothing of it.
            if group.full:
                for wrapper in group._members.values():
                    wrapper._set_group(group)


def unlinked(wrapper):
    """The group of a wrapper that `link` has not reached: the wrapper
    alone (not kept), so that whatever needs the group's other members
    raises `members`' error (a layer taken out of its pruned model)."""
    config = wrapper._group_config
    group = PruningGroup(config["id"], config["size"], config["allocation"])
    group._members[int(config["index"])] = wrapper
    return group


class PruningGroup:
    """The wrappers of one model that share a sparsity budget.

    Args:
        group_id: A string unique to the pruned model.
        size: Number of wrappers in the group.
        allocation: `"global"` or `"erk"`.
    """

    def __init__(self, group_id, size, allocation):
        if allocation not in ("global", "erk"):
            raise ValueError(
                f"allocation={allocation!r}: a pruning group allocates "
                "'global' or 'erk' budgets."
            )
        self.id = group_id
        self.size = None if size is None else int(size)
        self.allocation = allocation
        self._members = {}  # index -> wrapper
        self._last_context = None

    @classmethod
    def join(cls, wrapper, config):
        """The group `wrapper` belongs to when it is created, or None.

        `config['size']` is None while `prune_low_magnitude` is wrapping
        layers: the wrapper joins the group that call fills (it then calls
        `seal`). A wrapper created from a saved config (loading, cloning)
        joins nothing here: `link` gives it its group from its model.
        """
        if config["size"] is not None:
            return None
        group = _FILLING.get(config["id"])
        if group is None:
            group = _FILLING[config["id"]] = cls(
                config["id"], None, config["allocation"]
            )
        group._members[int(config["index"])] = wrapper
        return group

    @classmethod
    def seal(cls, group_id):
        """Closes the group `group_id` that `prune_low_magnitude` filled:
        its size is its member count."""
        group = _FILLING.pop(group_id, None)
        if group is not None:
            group.size = len(group._members)
            for wrapper in group._members.values():
                wrapper._group_config["size"] = group.size
        return group

    @property
    def full(self):
        return self.size is not None and len(self._members) == self.size

    def config_for(self, wrapper):
        index = next(i for i, w in self._members.items() if w is wrapper)
        return {
            "id": self.id,
            "size": self.size,
            "index": index,
            "allocation": self.allocation,
        }

    @property
    def members(self):
        if not self.full:
            raise ValueError(
                f"Pruning group {self.id!r} ({self.allocation} allocation) "
                f"has {len(self._members)} of its {self.size} layers. A model "
                "pruned with allocation='global' or 'erk' must be trained "
                "whole: do not remove or copy single pruned layers out of it."
            )
        return [self._members[i] for i in sorted(self._members)]

    def claim(self, context):
        """True once per forward pass `context` (a weakly held object)."""
        last = self._last_context
        if last is not None and last() is context:
            return False
        self._last_context = weakref.ref(context)
        return True

    # ------------------------------------------------------------- masks

    def guarded(self):
        """`(layer name, weight name, kept, floor)` of every tensor held at
        the default guard's floor (`allocation.guard_floor`): a global
        threshold alone would have pruned it further, possibly whole."""
        if self.allocation != "global":
            return []
        entries = self._entries()
        out = []
        for e, floor in zip(entries, _guard_floors(entries)):
            if floor is None:
                continue
            kept = int(np.count_nonzero(ops.convert_to_numpy(e[2])))
            if kept <= floor:
                out.append(
                    (e[0].layer.name, e[1].path or e[1].name, kept, floor)
                )
        return out

    def warn_guarded(self):
        """Warns once per tensor newly held at the guard's floor."""
        import warnings

        seen = self.__dict__.setdefault("_warned", set())
        for layer, weight, kept, _floor in self.guarded():
            if (layer, weight) in seen:
                continue
            seen.add((layer, weight))
            warnings.warn(
                f"allocation='global': layer {layer!r} weight {weight!r} "
                f"would be pruned (almost) whole by the global threshold; "
                f"it keeps {kept} weights, the guard's floor (one per output "
                "channel). Pass max_sparsity={" + repr(layer) + ": 1.0} to "
                "allow pruning it whole, or a lower cap to keep more.",
                stacklevel=4,
            )

    def _entries(self):
        """`(wrapper, weight, mask, threshold, max_s, min_s)` per tensor."""
        out = []
        for w in self.members:
            for weight, mask, threshold in w.pruning_vars:
                out.append(
                    (w, weight, mask, threshold, w.max_sparsity, w.min_sparsity)
                )
        return out

    def recompute(self, sparsity, old):
        """New masks of every member at the group's `sparsity`.

        Args:
            sparsity: float32 scalar.
            old: List of `(mask, threshold)` tensors, one per tensor, in
                `_entries` order.

        Returns:
            `(new, n_bad)`: list of `(mask, threshold)` and the number of
            NaN/Inf weights (when non-zero, `new` is `old`).
        """
        entries = self._entries()
        bits = [
            ops.where(
                ops.reshape(old_mask, (-1,)),
                masks.magnitude_bits(w._read(weight)),
                0,
            )
            for (w, weight, *_), (old_mask, _) in zip(entries, old)
        ]
        sizes = [int(b.shape[0]) for b in bits]
        total = sum(sizes)
        k_total = masks.kept_count(total, sparsity)
        if self.allocation == "erk":
            counts = allocation.erk_counts(
                [tuple(e[1].shape) for e in entries], sparsity
            )
        else:
            k_min, k_max = _count_bounds(entries, sizes)
            counts, _ = allocation.global_counts(
                bits,
                k_total,
                ops.convert_to_tensor(k_min, "int32"),
                ops.convert_to_tensor(k_max, "int32"),
            )
        new, n_bad = [], ops.convert_to_tensor(0, "int32")
        for i, (b, entry) in enumerate(zip(bits, entries)):
            k = counts[i]
            mask, threshold, bad = masks.mask_for_count(b, k, entry[1].shape)
            mask = ops.logical_and(mask, ops.greater(k, 0))
            new.append((mask, threshold))
            n_bad = n_bad + bad
        ok = ops.equal(n_bad, 0)
        new = [
            (ops.where(ok, m, om), ops.where(ok, t, ot))
            for (m, t), (om, ot) in zip(new, old)
        ]
        return new, n_bad

    def update(self, should_prune, sparsity):
        """Recomputes every member's masks when `should_prune` (in a step).

        Eagerly (`should_prune` has a value), the masks are computed by
        `update_streaming`, which never holds a whole tensor's temporaries;
        in a compiled step, by `recompute` (whole tensors, fused by XLA).
        Both give the same masks and thresholds, bit for bit.
        """
        if masks._is_eager(should_prune):
            if not bool(ops.convert_to_numpy(should_prune)):
                return ops.convert_to_tensor(0, "int32")
            n_bad = self.update_streaming(sparsity)
            if self.allocation == "global":
                self.warn_guarded()
            return n_bad
        entries = self._entries()
        old = [(ops.convert_to_tensor(e[2]), e[0]._read(e[3])) for e in entries]

        def recompute():
            return self.recompute(sparsity, old)

        def keep():
            return old, ops.convert_to_tensor(0, "int32")

        new, n_bad = _backend.cond(should_prune, recompute, keep)
        for e, (m, t), (om, _) in zip(entries, new, old):
            if m is not om:  # torch skips the writes between updates
                e[2].assign(m)
                e[3].assign(t)
        return n_bad

    def update_streaming(self, sparsity, chunk=None):
        """Eager `update`: same masks as `recompute`, in bounded memory.

        Where every weight and mask can be read as a NumPy array without a
        copy (eager CPU tensors, every backend), the passes run in NumPy
        over cache-sized blocks (`_update_on_host`, 3-5 ns per weight);
        otherwise (accelerators) with backend operations over chunks
        (`_update_with_ops`). Both give the masks and thresholds of
        `recompute`, bit for bit.

        Args:
            sparsity: float32 scalar with a value.
            chunk: Elements per chunk of the backend-operation passes
                (default `STREAM_CHUNK`); also the block size of the NumPy
                passes when given.

        Returns:
            int32 scalar: the number of NaN/Inf weights (when non-zero, no
            mask or threshold is changed).
        """
        entries = self._entries()
        views = [
            (
                _backend.host_array(e[0]._read(e[1])),
                _backend.host_array(e[2]),
            )
            for e in entries
        ]
        if all(v is not None and m is not None for v, m in views):
            return self._update_on_host(entries, views, sparsity, chunk)
        del views
        return self._update_with_ops(sparsity, chunk)

    def _update_with_ops(self, sparsity, chunk=None):
        """`update_streaming` with backend operations.

        The int32 bit patterns of `|w * mask|` are recomputed from the
        weights, chunk by chunk (`STREAM_CHUNK` elements, along the first
        axis), for each pass: the high-bit histograms of every tensor, the
        low-bit histograms of the global threshold's bucket, the low-bit
        histogram of each tensor's own k-th largest (when it lies in another
        bucket), and the mask. Ties at a tensor's threshold are kept lowest
        flat index first through a running count over the chunks. Extra
        memory is one chunk's temporaries plus the new mask of one tensor
        (1 byte per weight, twice while its chunks are joined), however
        many weights the group holds.

        Args:
            sparsity: float32 scalar with a value.
            chunk: Elements per chunk (default `STREAM_CHUNK`).

        Returns:
            int32 scalar: the number of NaN/Inf weights (when non-zero, no
            mask or threshold is changed).
        """
        chunk = STREAM_CHUNK if chunk is None else int(chunk)
        entries = self._entries()
        shapes = [tuple(int(d) for d in e[1].shape) for e in entries]
        sizes = [int(np.prod(shp, dtype=np.int64)) for shp in shapes]
        ranges = [_row_chunks(shp, chunk) for shp in shapes]

        def bits_chunks(i):
            w, weight, mask = entries[i][:3]
            value = w._read(weight)
            old_mask = ops.convert_to_tensor(mask)
            for a, b in ranges[i]:
                yield ops.where(
                    ops.reshape(_rows(old_mask, a, b), (-1,)),
                    masks.magnitude_bits(_rows(value, a, b)),
                    0,
                )

        def summed(i, fn):
            total = None
            for bits in bits_chunks(i):
                h = fn(bits)
                total = h if total is None else total + h
            return total

        hist = [summed(i, masks.high_histogram) for i in range(len(entries))]
        n_bad = sum(_int(ops.sum(h[masks._NONFINITE_BUCKET :])) for h in hist)
        if n_bad:
            return ops.convert_to_tensor(n_bad, "int32")

        k_total = masks.kept_count(sum(sizes), sparsity)
        low_cache = {}  # (tensor, bucket) -> low histogram
        if self.allocation == "erk":
            counts = allocation.erk_counts(shapes, sparsity)
        else:
            k_min, k_max = _count_bounds(entries, sizes)

            def low_histograms(bucket):
                bucket = _int(bucket)
                rows = []
                for i in range(len(entries)):
                    low_cache[i, bucket] = summed(
                        i, lambda b: masks.low_histogram(b, bucket)
                    )
                    rows.append(low_cache[i, bucket])
                return ops.stack(rows)

            counts, _ = allocation.global_counts_from_histograms(
                ops.stack(hist),
                low_histograms,
                sizes,
                k_total,
                ops.convert_to_tensor(k_min, "int32"),
                ops.convert_to_tensor(k_max, "int32"),
            )
        counts = [int(c) for c in ops.convert_to_numpy(counts)]

        for i, e in enumerate(entries):
            k = max(counts[i], 1)

            def low_counts_for(bucket, i=i):
                bucket = _int(bucket)
                if (i, bucket) not in low_cache:
                    low_cache[i, bucket] = summed(
                        i, lambda b: masks.low_histogram(b, bucket)
                    )
                return low_cache[i, bucket]

            threshold, n_greater, n_equal, _ = masks.threshold_from_histograms(
                hist[i], low_counts_for, ops.convert_to_tensor(k, "int32")
            )
            threshold = _int(threshold)
            n_ties_kept = k - _int(n_greater)
            split = n_ties_kept != _int(n_equal)
            if counts[i] > 0:
                pieces = []
                ties = ops.convert_to_tensor(0, "int32")
                for (a, b), bits in zip(ranges[i], bits_chunks(i)):
                    flat, ties = masks.mask_chunk(
                        bits, threshold, n_ties_kept, split, ties
                    )
                    rows = shapes[i][1:] if a is not None else ()
                    if a is not None:
                        flat = ops.reshape(flat, (b - a,) + rows)
                    pieces.append(flat)
                    del flat, bits
                new = (
                    pieces[0]
                    if len(pieces) == 1
                    else ops.concatenate(pieces, axis=0)
                )
                del pieces
                new = ops.reshape(new, shapes[i])
            else:
                new = ops.zeros(shapes[i], "bool")
            e[2].assign(new)
            del new
            e[3].assign(
                np.array(threshold, np.int32).view(np.float32).reshape(())
            )
            low_cache = {key: v for key, v in low_cache.items() if key[0] != i}
        return ops.convert_to_tensor(0, "int32")

    def _update_on_host(self, entries, views, sparsity, block=None):
        """`update_streaming` in NumPy, on read-only views of the variables.

        The same passes as `_update_with_ops` (high-bit histograms, low-bit
        histograms of the threshold buckets, masks), each over blocks small
        enough that the block's temporaries stay in the CPU cache. Extra
        memory: the new mask of one tensor (1 byte per weight) and its copy
        made by `assign`, plus one block's temporaries.
        """
        block = STREAM_BLOCK if block is None else int(block)
        shapes = [tuple(int(d) for d in e[1].shape) for e in entries]
        sizes = [int(np.prod(shp, dtype=np.int64)) for shp in shapes]
        flat = [
            (
                np.ascontiguousarray(v, np.float32).reshape(-1).view(np.int32),
                np.ascontiguousarray(m, bool).reshape(-1),
            )
            for v, m in views
        ]
        buf = np.empty(min(block, max(sizes)), np.int32)
        # Bucket ids as int64 (`np.bincount` copies any other dtype into a
        # fresh int64 array, one page fault per 512 elements), and the
        # selection of a bucket's elements: reused by every block.
        ids = np.empty(buf.shape, np.int64)
        sel = np.empty(buf.shape, bool)

        def blocks(i):
            """Magnitude bits of `w * old_mask`, block by block."""
            raw, old = flat[i]
            for a in range(0, sizes[i], block):
                b = min(a + block, sizes[i])
                bits = buf[: b - a]
                np.bitwise_and(raw[a:b], np.int32(0x7FFFFFFF), out=bits)
                np.multiply(bits, old[a:b], out=bits)
                yield a, b, bits

        def high_histogram(i):
            total = np.zeros(1 << masks._HI_BITS, np.int64)
            for a, b, bits in blocks(i):
                high = np.right_shift(bits, masks._LO_BITS, out=ids[: b - a])
                total += np.bincount(high, minlength=1 << masks._HI_BITS)
            return total

        low_cache = {}  # (tensor, bucket) -> low histogram

        def low_histogram(i, bucket):
            key = (i, int(bucket))
            if key not in low_cache:
                total = np.zeros(1 << masks._LO_BITS, np.int64)
                start = key[1] << masks._LO_BITS
                span = np.uint64((1 << masks._LO_BITS) - 1)
                for a, b, bits in blocks(i):
                    low = np.subtract(bits, start, out=ids[: b - a])
                    inside = np.less_equal(
                        low.view(np.uint64), span, out=sel[: b - a]
                    )
                    total += np.bincount(
                        low[inside], minlength=1 << masks._LO_BITS
                    )
                low_cache[key] = total
            return low_cache[key]

        hist = [high_histogram(i) for i in range(len(entries))]
        n_bad = sum(int(h[masks._NONFINITE_BUCKET :].sum()) for h in hist)
        if n_bad:
            return ops.convert_to_tensor(n_bad, "int32")

        k_total = _kept_count(sum(sizes), sparsity)
        if self.allocation == "erk":
            counts = allocation.erk_counts(shapes, sparsity)
        else:
            k_min, k_max = _count_bounds(entries, sizes)
            counts, _ = allocation.global_counts_from_histograms(
                ops.convert_to_tensor(np.stack(hist).astype(np.int32)),
                lambda bucket: ops.convert_to_tensor(
                    np.stack(
                        [
                            low_histogram(i, _int(bucket))
                            for i in range(len(entries))
                        ]
                    ).astype(np.int32)
                ),
                sizes,
                k_total,
                ops.convert_to_tensor(k_min, "int32"),
                ops.convert_to_tensor(k_max, "int32"),
            )
        counts = [int(c) for c in ops.convert_to_numpy(counts)]

        for i, e in enumerate(entries):
            k = max(counts[i], 1)
            bucket, k_low, above = masks._host_find_bucket(hist[i], k)
            low = low_histogram(i, bucket)
            low_bucket, _, above_low = masks._host_find_bucket(low, k_low)
            threshold = bucket * (1 << masks._LO_BITS) + low_bucket
            n_ties_kept = k - (above + above_low)
            n_equal = int(low[low_bucket])
            new = np.zeros(sizes[i], bool)
            if counts[i] > 0:
                split = n_ties_kept < n_equal
                cut = threshold + 1 if split else threshold
                for a, b, bits in blocks(i):
                    np.greater_equal(bits, cut, out=new[a:b])
                    if split and n_ties_kept > 0:
                        # Ties kept by position: the first ones in flat order.
                        tied = np.flatnonzero(bits == threshold)[:n_ties_kept]
                        new[a + tied] = True
                        n_ties_kept -= tied.size
            # Drop the views of the old mask first, so that the backend may
            # reuse or free its buffer.
            flat[i] = views[i] = None
            _backend.assign_from_host(e[2], new.reshape(shapes[i]))
            del new
            e[3].assign(
                np.array(threshold, np.int32).view(np.float32).reshape(())
            )
            low_cache = {key: v for key, v in low_cache.items() if key[0] != i}
        return ops.convert_to_tensor(0, "int32")
