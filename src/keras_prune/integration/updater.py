"""`MaskUpdate`: the one mask update, for a layer's weights or a group's.

Every mask update of keras-prune goes through this component: in-step
updates inside compiled train steps (wrapper and pruning group), eager
updates (`prune_once`, `update_masks_now`, eager train steps), and the
host-driven updates of `UpdatePruningStep` in `fit`. It is parameterised by
three parts:

- a `Score` (`keras_prune.core.scores`): what each weight is worth, from
  `w * mask`; `Magnitude` by default;
- a `Pattern` (`keras_prune.core.sparsity_patterns`): which weights are
  kept together (single weights, blocks, N:M groups, channels);
- an `Allocation` (`keras_prune.core.allocation`): per tensor, or one budget
  shared by a group (global threshold, ERK).

The math is written once (`recompute`: scores, pattern or allocation,
exact top-k, NaN/Inf rollback), and so is the write-back (`_assign`). The
execution strategy is chosen here, from where the update runs and which
parts it uses:

- in a compiled step: `recompute` under a `cond` on the schedule;
- eagerly, per tensor: `Magnitude` + `Unstructured` in NumPy on the host
  (`masks.host_mask`, nothing compiles); anything else through one compiled
  function per (shape, dtype, score, pattern) class, shared by the layers;
- eagerly, for a group: `Magnitude` + `Unstructured` streamed in bounded
  memory (`_stream_on_host` in NumPy over cache-sized blocks where the
  variables can be read without a copy, `_stream_with_ops` over chunks
  otherwise); anything else (and host-driven group updates) through one
  compiled function of the whole group.

Every strategy gives the same masks and thresholds, bit for bit.
"""

import collections
import functools
import json

import numpy as np
from keras import ops
from keras.src.backend import AutocastScope

from keras_prune import _backend
from keras_prune.core import allocation as _allocation
from keras_prune.core import masks
from keras_prune.core import patterns
from keras_prune.core import schedules
from keras_prune.core import scores as _scores
from keras_prune.core import sparsity_patterns

Target = collections.namedtuple(
    "Target",
    "wrapper weight mask threshold owner max_sparsity min_sparsity",
)
Target.__doc__ = """One pruned weight: its variables, layer and bounds."""

# (score class, pattern class, weight arguments, ...) -> compiled
# `(weight, old_mask, sparsity) -> (mask, threshold, n_nonfinite)`. JAX
# caches each one's compilations per input shape and dtype: one compilation
# per (shape, dtype, pattern) class, shared by every layer of a model
# (ResNet50: 53 kernels, 20 shapes).
_CLASS_FUNCTIONS = {}

# Elements per chunk of the eager (streaming) group update with backend
# operations (4 MiB of float32): temporaries stay small next to large
# tensors.
STREAM_CHUNK = 1 << 20
# Elements per block of the NumPy streaming update: 1 MiB of bits, 2 MiB
# of int64 bucket ids (cache-resident), and few allocations per weight.
STREAM_BLOCK = 1 << 18


def read_raw(variable):
    """The value of a variable, without mixed-precision autocast."""
    with AutocastScope(None):
        return variable.value


def apply_masks(pairs):
    """Eagerly sets each weight to `weight * mask` (exact zeros).

    Weights already exactly sparse (every pruned entry +0.0) are only read,
    through zero-copy views (`_backend.host_array`): `UpdatePruningStep`
    checks every pruned weight this way at each `fit`'s start, and a copy of
    each (Keras' `convert_to_numpy`) was half of that check's time on
    TensorFlow (ResNet50: 0.05 of 0.10 s).

    Args:
        pairs: `(weight, mask)` variables.

    Returns:
        Number of weights set to zero by this call (NaN counts as nonzero
        on both sides).
    """
    n_changed = 0
    for weight, mask in pairs:
        value = host_value(weight)
        keep = host_value(mask)
        if _exactly_sparse(value, keep):
            continue  # no write
        masked = masks.zero_where_not(value, keep)
        n_changed += int(np.count_nonzero(value)) - int(
            np.count_nonzero(masked)
        )
        weight.assign(masked)
    return n_changed


def host_value(variable):
    """A NumPy view of `variable`'s value where one exists (do not write to
    it; `_backend.host_array`), else a copy."""
    value = _backend.host_array(variable)
    if value is None:
        value = np.asarray(ops.convert_to_numpy(variable))
    return value


def _exactly_sparse(value, keep):
    """Whether every entry of `value` outside `keep` has all bits zero
    (+0.0: a -0.0 is not, so that it is rewritten). False for a dtype of
    another size: the caller then writes."""
    if value.dtype.itemsize not in (1, 2, 4, 8):
        return False
    bits = np.ascontiguousarray(value).view(f"u{value.dtype.itemsize}")
    return not np.logical_and(bits, np.logical_not(keep)).any()


def targets_of(wrappers):
    """The `Target`s of the pruned weights of `wrappers`, in order."""
    from keras_prune.integration import registry

    return [
        Target(
            w,
            weight,
            mask,
            threshold,
            registry.owner_of(w.layer, weight),
            w.max_sparsity,
            w.min_sparsity,
        )
        for w in wrappers
        for weight, mask, threshold in w.pruning_vars
    ]


def _key(part):
    """A hashable identity of a score or pattern: class and config."""
    return type(part), json.dumps(
        part.get_config(), sort_keys=True, default=repr
    )


def _int(x):
    return int(ops.convert_to_numpy(x))


def _is_eager(x):
    return masks._is_eager(x)


def rollback(new, old, n_bad):
    """`new` where `n_bad == 0`, else `old`: an update that met NaN/Inf
    changes nothing (the count is reported instead)."""
    ok = ops.equal(n_bad, 0)
    return [
        (ops.where(ok, m, om), ops.where(ok, t, ot))
        for (m, t), (om, ot) in zip(new, old)
    ]


class MaskUpdate:
    """Recomputes the masks and thresholds of some pruned weights.

    Args:
        targets: List of `Target`s (one per pruned weight).
        score: A `keras_prune.Score`.
        pattern: A `keras_prune.Pattern`.
        allocation: A `keras_prune.Allocation`; `PerTensor` runs the pattern
            on each weight, a shared one (global, ERK) selects each weight's
            exact top-k scores at the count it gives.
        schedule: The pruning schedule (patterns may skip work it never
            needs, e.g. N:M's gradual group selection).
    """

    def __init__(
        self, targets, score, pattern, allocation, schedule=None, chunks=None
    ):
        self.targets = list(targets)
        # () -> (elements per chunk of `_stream_with_ops`, per block of
        # `_stream_on_host`), read at each update.
        self.chunks = chunks or (lambda: (STREAM_CHUNK, STREAM_BLOCK))
        self.score = score
        self.pattern = pattern
        self.allocation = allocation
        self.schedule = schedule
        self.weight_args = [
            pattern.weight_args(t.owner, t.weight) for t in self.targets
        ]
        self._functions = {}  # compiled functions of this update only

    @classmethod
    def for_wrappers(cls, wrappers, allocation=None, chunks=None):
        """The update of a wrapper's weights, or of a group's.

        Args:
            wrappers: The wrappers (one, or a group's members in order).
            allocation: The group's `Allocation` (default: the first
                wrapper's spec).
            chunks: As in the constructor.
        """
        spec = wrappers[0].pruning_spec
        return cls(
            targets_of(wrappers),
            spec.score,
            spec.mask_pattern,
            spec.allocator if allocation is None else allocation,
            spec.pruning_schedule,
            chunks,
        )

    @property
    def fast(self):
        """Whether the parts are `Magnitude` and `Unstructured`: the NumPy
        host select and the streaming group update apply."""
        return type(self.score) is _scores.Magnitude and (
            type(self.pattern) is sparsity_patterns.Unstructured
        )

    # ---------------------------------------------------------------- math

    def recompute(self, sparsity, old, values=None, uses_sparsity=None):
        """New `(mask, threshold)` per target; the old ones on NaN/Inf.

        Pure: reads the weights (or `values`), writes nothing; runs inside
        compiled steps.

        Args:
            sparsity: float32 scalar.
            old: List of `(mask, threshold)` tensors, one per target.
            values: Optional weight values (default: read the variables).
            uses_sparsity: Whether the pattern needs `sparsity` (default:
                `pattern.uses_sparsity(schedule=...)`).

        Returns:
            `(new, n_bad)`: list of `(mask, threshold)`, and the int32
            number of NaN/Inf scores (when non-zero, `new` is `old`).
        """
        if values is None:
            values = [read_raw(t.weight) for t in self.targets]
        masked = [
            ops.where(om, ops.cast(v, "float32"), 0.0)
            for v, (om, _) in zip(values, old)
        ]
        if self.allocation.shared:
            new, n_bad = self._select_shared(masked, sparsity)
            return rollback(new, old, n_bad), n_bad
        if uses_sparsity is None:
            uses_sparsity = self.pattern.uses_sparsity(schedule=self.schedule)
        given = sparsity if uses_sparsity else None
        by_bits = getattr(self.pattern, "mask_from_bits", None)
        new, n_bad = [], ops.convert_to_tensor(0, "int32")
        for t, x, args in zip(self.targets, masked, self.weight_args):
            if by_bits is not None:  # the select reads the bits only
                bits = self.score.bits(x, t.weight, t.owner)
                mask, threshold, bad = by_bits(bits, given, t.weight.shape)
            else:
                scores = self.score(x, t.weight, t.owner)
                mask, threshold, bad = self.pattern.mask(scores, given, **args)
            new.append((mask, threshold))
            n_bad = n_bad + ops.cast(bad, "int32")
        return rollback(new, old, n_bad), n_bad

    def _select_shared(self, masked, sparsity):
        """Each tensor's exact top-k at the allocation's counts."""
        bits = [
            self.score.bits(x, t.weight, t.owner)
            for t, x in zip(self.targets, masked)
        ]
        counts = self.allocation.counts(
            self.targets, sparsity, _allocation.BitsHistograms(bits)
        )
        new, n_bad = [], ops.convert_to_tensor(0, "int32")
        for i, (b, t) in enumerate(zip(bits, self.targets)):
            k = counts[i]
            mask, threshold, bad = masks.mask_for_count(b, k, t.weight.shape)
            mask = ops.logical_and(mask, ops.greater(k, 0))
            new.append((mask, threshold))
            n_bad = n_bad + bad
        return new, n_bad

    def _old(self):
        return [
            (ops.convert_to_tensor(t.mask), read_raw(t.threshold))
            for t in self.targets
        ]

    def _assign(self, new, old=None, zero_weights=False):
        """Writes new masks and thresholds (only those recomputed)."""
        for i, (t, (m, thr)) in enumerate(zip(self.targets, new)):
            if old is not None and m is old[i][0]:
                continue  # no writes when nothing was recomputed
            t.mask.assign(m)
            t.threshold.assign(thr)
            if zero_weights:
                t.weight.assign(ops.where(m, read_raw(t.weight), 0))

    # ----------------------------------------------------------- in a step

    def update(self, should_prune, sparsity):
        """Recomputes the masks when `should_prune` (in a train step).

        In a compiled step, `recompute` runs under a `cond`. Eagerly
        (`should_prune` has a value: torch, `run_eagerly`), a Python branch;
        with the fast parts a group then streams (`stream`) and a layer's
        own weights, when they are eager CPU tensors, take the NumPy select
        (`update_now`), as `prune_once` and `UpdatePruningStep` do: the same
        masks, bit for bit.

        Returns:
            int32 count of NaN/Inf weights met (masks then unchanged).
        """
        eager = _is_eager(should_prune)
        if eager:  # a Python branch
            if not bool(ops.convert_to_numpy(should_prune)):
                return ops.convert_to_tensor(0, "int32")
            if self.fast and self.allocation.shared:
                return self.stream(sparsity)
            if self.fast and all(
                _backend.host_array(read_raw(t.weight)) is not None
                for t in self.targets
            ):
                # Eager CPU tensors only: not under JAX's `run_eagerly`
                # gradient (it traces the trainable weights while the step
                # is known), and not on an accelerator, where the tensor
                # select stays on the device.
                sparsity = float(ops.convert_to_numpy(sparsity))
                return ops.convert_to_tensor(self.update_now(sparsity), "int32")
        old = self._old()
        if eager:
            new, n_bad = self.recompute(sparsity, old)
        elif self._selects_on_host():
            new, n_bad = self._update_on_host(should_prune, sparsity, old)
        else:
            new, n_bad = _backend.cond(
                should_prune,
                lambda: self.recompute(sparsity, old),
                lambda: (old, ops.convert_to_tensor(0, "int32")),
            )
        self._assign(new, old)
        return n_bad

    def _update_on_host(self, should_prune, sparsity, old):
        """`update` of single weights by magnitude, selected on the host.

        JAX, and TensorFlow without XLA: `masks.host_mask` runs from the
        compiled step (`_backend.pure_host_call`; the same masks, bit for
        bit), so the step compiles one host call per weight, not a radix
        select. On TensorFlow every wrapper calls one function, traced once
        per number of weights (`_backend.shared_step_function`; ResNet50:
        one trace instead of 54 conds).

        Returns:
            `(new, n_bad)` as from `recompute` under the `cond`.
        """
        head = [ops.cast(should_prune, "bool"), ops.cast(sparsity, "float32")]
        out = self._call_on_host(
            ("host_masks", len(self.targets)),
            _cond_host_masks,
            head,
            [((), "bool"), ((), "float32")],
            old,
        )
        return self._shaped(out), out[-1]

    def update_from_step(self, schedule, step, nonfinite):
        """The whole in-step update, from the step, in one host call.

        Where `update` would select on the host (`_update_on_host`) and the
        schedule is a built-in one (a pure function of the step), the
        schedule, the select and the counts run in one function shared by
        every wrapper with an equal schedule: TensorFlow traces it once,
        not once per wrapper (ResNet50's first pruned `fit` without
        `UpdatePruningStep`: ~11 ms of tracing per wrapper saved, 54
        wrappers). The masks and thresholds are `update`'s, bit for bit.

        Args:
            schedule: The wrapper's pruning schedule.
            step: int32 scalar tensor, the step of this update.
            nonfinite: The wrapper's NaN/Inf count (int32 variable).

        Returns:
            `(step + 1, nonfinite + n_bad)` after writing the new masks and
            thresholds, or None where this does not apply (use `update`).
        """
        if (
            _is_eager(step)
            or not schedules.is_builtin(schedule)
            or not self._selects_on_host()
        ):
            return None
        old = self._old()
        head = [ops.cast(step, "int32"), ops.cast(nonfinite, "int32")]
        out = self._call_on_host(
            ("host_step", len(self.targets), _key(schedule)),
            functools.partial(_host_step, schedule),
            head,
            [((), "int32"), ((), "int32")],
            old,
        )
        self._assign(self._shaped(out[:-2]))
        return out[-2], out[-1]

    def _selects_on_host(self):
        """Whether a compiled step selects these masks on the host."""
        return (
            self.fast
            and not self.allocation.shared
            and _backend.host_callback_in_step()
        )

    def _call_on_host(self, key, fn, head, head_specs, old):
        """`fn(*head, *weights, *old_masks, *old_thresholds)` as a shared
        step function (weights and masks of any shape: nothing reshaped)."""
        n = len(self.targets)
        args = head + [
            ops.cast(read_raw(t.weight), "float32") for t in self.targets
        ]
        args += [m for m, _ in old]
        args += [ops.cast(thr, "float32") for _, thr in old]
        specs = head_specs + [(None, "float32")] * n + [(None, "bool")] * n
        specs += [((), "float32")] * n
        return _backend.shared_step_function(key, fn, specs)(*args)

    def _shaped(self, out):
        """`(mask, threshold)` per target from a host call's outputs, each
        mask with its weight's static shape."""
        n = len(self.targets)
        return [
            (_backend.with_shape(m, t.weight.shape), thr)
            for t, m, thr in zip(self.targets, out[:n], out[n : 2 * n])
        ]

    # -------------------------------------------------------------- eager

    def update_now(self, sparsity, zero_weights=False, stream=True):
        """Eagerly recomputes the masks to `sparsity` (a Python float).

        Args:
            sparsity: Python float in [0, 1].
            zero_weights: Also set the pruned weights to zero (host-driven
                updates in `fit`).
            stream: A group with the fast parts streams (bounded memory);
                else it runs one compiled function of the whole group.

        Returns:
            int: the number of NaN/Inf weights met (when non-zero, nothing
            was changed).
        """
        if self.allocation.shared:
            if self.fast and stream and not zero_weights:
                return _int(self.stream(sparsity))
            function = self._functions.get("group")
            if function is None:
                function = self._functions["group"] = _backend.compile_function(
                    self._group_function
                )
            old = self._old()
            new, n_bad = function(
                [read_raw(t.weight) for t in self.targets],
                old,
                ops.convert_to_tensor(sparsity, "float32"),
            )
            n_bad = _int(n_bad)
            if n_bad:
                return n_bad
            self._assign(new, zero_weights=zero_weights)
            return 0
        new, host_values = [], []
        full_nm = self._host_full_m_by_n(sparsity)
        on_host = self.fast or full_nm
        for i, t in enumerate(self.targets):
            if on_host:
                raw = np.asarray(ops.convert_to_numpy(read_raw(t.weight)))
                old_mask = np.asarray(ops.convert_to_numpy(t.mask), bool)
                value = masks.zero_where_not(
                    np.asarray(raw, np.float32), old_mask
                )
                if full_nm:
                    m, thr, bad = patterns.host_m_by_n_mask(
                        value,
                        (self.pattern.m, self.pattern.n),
                        **self.weight_args[i],
                    )
                    if bad:
                        m = thr = None
                else:
                    m, thr, bad = masks.host_mask(value, sparsity)
                # The weight in its own dtype: a float64 weight written
                # back from the float32 scores lost its low bits at every
                # host update of `fit` with `UpdatePruningStep`.
                host_values.append(
                    (value, old_mask)
                    if raw.dtype == value.dtype
                    else (raw, old_mask)
                )
            else:
                m, thr, bad = self._class_function(i, sparsity)(
                    read_raw(t.weight),
                    ops.convert_to_tensor(t.mask),
                    ops.convert_to_tensor(sparsity, "float32"),
                )
                bad = _int(bad)
                host_values.append(None)
            if bad:
                return bad
            new.append((m, thr))
        if on_host:  # NumPy results: no compile to take them (JAX)
            self._assign(
                [
                    (_backend.to_device(m), _backend.to_device(thr))
                    for m, thr in new
                ]
            )
            if zero_weights:
                for t, (value, old_mask), (m, _) in zip(
                    self.targets, host_values, new
                ):
                    if value.dtype != np.float32:  # not zeroed by old_mask
                        m = np.logical_and(m, old_mask)
                    t.weight.assign(
                        _backend.to_device(masks.zero_where_not(value, m))
                    )
        else:
            self._assign(new, zero_weights=zero_weights)
        return 0

    def _host_full_m_by_n(self, sparsity):
        """Whether an eager update is plain N:M by magnitude with every
        group N:M (`patterns.host_m_by_n_mask` then gives its masks)."""
        return (
            type(self.score) is _scores.Magnitude
            and type(self.pattern) is sparsity_patterns.NM
            and not self.pattern.uses_sparsity(sparsity=sparsity)
        )

    def _group_function(self, values, old, sparsity):
        return self.recompute(sparsity, old, values)

    def _class_function(self, i, sparsity):
        """The compiled per-tensor update of target `i` at `sparsity`.

        Shared by every weight of the same (score, pattern, weight
        arguments) class, and compiled by JAX once per shape and dtype;
        per weight when the score depends on the weight or its layer.
        """
        t, args = self.targets[i], self.weight_args[i]
        uses = self.pattern.uses_sparsity(sparsity=sparsity)
        key = (
            _key(self.score),
            _key(self.pattern),
            tuple(sorted(args.items())),
            uses,
        )
        if self.score.layer_independent:
            cache = _CLASS_FUNCTIONS
        else:
            cache, key = self._functions, key + (i,)
        function = cache.get(key)
        if function is None:
            score, pattern = self.score, self.pattern

            def function(weight, old_mask, sparsity):
                masked = ops.where(old_mask, ops.cast(weight, "float32"), 0.0)
                return pattern.mask(
                    score(masked, t.weight, t.owner),
                    sparsity if uses else None,
                    **args,
                )

            function = cache[key] = _backend.compile_function(function)
        return function

    # ---------------------------------------------------------- streaming

    def stream(self, sparsity, chunk=None):
        """Eager group update with the fast parts, in bounded memory.

        Where every weight and mask can be read as a NumPy array without a
        copy (eager CPU tensors, every backend), the passes run in NumPy
        over cache-sized blocks (`_stream_on_host`, 3-5 ns per weight);
        otherwise (accelerators) with backend operations over chunks
        (`_stream_with_ops`). Both give the masks and thresholds of
        `recompute`, bit for bit.

        Args:
            sparsity: float32 scalar with a value.
            chunk: Elements per chunk of the backend-operation passes, and
                per block of the NumPy passes, when given (default:
                `self.chunks()`).

        Returns:
            int32 scalar: the number of NaN/Inf weights (when non-zero, no
            mask or threshold is changed).
        """
        views = [
            (
                _backend.host_array(read_raw(t.weight)),
                _backend.host_array(t.mask),
            )
            for t in self.targets
        ]
        ops_chunk, host_block = self.chunks()
        if all(v is not None and m is not None for v, m in views):
            return self._stream_on_host(
                views, sparsity, host_block if chunk is None else chunk
            )
        del views
        return self._stream_with_ops(
            sparsity, ops_chunk if chunk is None else chunk
        )

    def _stream_with_ops(self, sparsity, chunk):
        """`stream` with backend operations.

        The int32 bit patterns of `|w * mask|` are recomputed from the
        weights, chunk by chunk (`chunk` elements, along the first axis),
        for each pass: the high-bit histograms of every tensor, the low-bit
        histograms of the global threshold's bucket, the low-bit histogram
        of each tensor's own k-th largest (when it lies in another bucket),
        and the mask. Ties at a tensor's threshold are kept lowest flat
        index first through a running count over the chunks. Extra memory
        is one chunk's temporaries plus the new mask of one tensor (1 byte
        per weight, twice while its chunks are joined), however many
        weights the group holds.
        """
        chunk = int(chunk)
        targets = self.targets
        shapes = [tuple(int(d) for d in t.weight.shape) for t in targets]
        ranges = [_row_chunks(shp, chunk) for shp in shapes]

        def bits_chunks(i):
            t = targets[i]
            value = read_raw(t.weight)
            old_mask = ops.convert_to_tensor(t.mask)
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

        hist = [summed(i, masks.high_histogram) for i in range(len(targets))]
        n_bad = sum(_int(ops.sum(h[masks._NONFINITE_BUCKET :])) for h in hist)
        if n_bad:
            return ops.convert_to_tensor(n_bad, "int32")

        low_cache = {}  # (tensor, bucket) -> low histogram

        def low(i, bucket):
            bucket = _int(bucket)
            if (i, bucket) not in low_cache:
                low_cache[i, bucket] = summed(
                    i, lambda b: masks.low_histogram(b, bucket)
                )
            return low_cache[i, bucket]

        counts = self._counts(
            sparsity,
            lambda: ops.stack(hist),
            lambda bucket: ops.stack(
                [low(i, bucket) for i in range(len(targets))]
            ),
        )

        for i, t in enumerate(targets):
            k = max(counts[i], 1)
            threshold, n_greater, n_equal, _ = masks.threshold_from_histograms(
                hist[i],
                lambda bucket, i=i: low(i, bucket),
                ops.convert_to_tensor(k, "int32"),
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
            t.mask.assign(new)
            del new
            _assign_threshold_bits(t.threshold, threshold)
            low_cache = {key: v for key, v in low_cache.items() if key[0] != i}
        return ops.convert_to_tensor(0, "int32")

    def _counts(self, sparsity, high, low, host=None):
        """The allocation's kept counts, as Python ints, from histograms
        computed on demand (`high()`, `low(bucket)`; `host`: the same as
        NumPy arrays, for the built-in allocations' host arithmetic)."""
        counts = self.allocation.counts(
            self.targets, sparsity, _Histograms(high, low, host)
        )
        return [int(c) for c in ops.convert_to_numpy(counts)]

    def _stream_on_host(self, views, sparsity, block):
        """`stream` in NumPy, on read-only views of the variables.

        The same passes as `_stream_with_ops` (high-bit histograms, low-bit
        histograms of the threshold buckets, masks), each over blocks small
        enough that the block's temporaries stay in the CPU cache. Extra
        memory: the new mask of one tensor (1 byte per weight) and its copy
        made by `assign`, plus one block's temporaries.
        """
        block = int(block)
        targets = self.targets
        shapes = [tuple(int(d) for d in t.weight.shape) for t in targets]
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

        hist = [high_histogram(i) for i in range(len(targets))]
        n_bad = sum(int(h[masks._NONFINITE_BUCKET :].sum()) for h in hist)
        if n_bad:
            return ops.convert_to_tensor(n_bad, "int32")

        counts = self._counts(
            sparsity,
            lambda: ops.convert_to_tensor(np.stack(hist).astype(np.int32)),
            lambda bucket: ops.convert_to_tensor(
                np.stack(
                    [
                        low_histogram(i, _int(bucket))
                        for i in range(len(targets))
                    ]
                ).astype(np.int32)
            ),
            host=(
                lambda: np.stack(hist),
                lambda bucket: np.stack(
                    [low_histogram(i, bucket) for i in range(len(targets))]
                ),
            ),
        )

        for i, t in enumerate(targets):
            k = max(counts[i], 1)
            bucket, k_low, above = masks._host_find_bucket(hist[i], k)
            low = low_histogram(i, bucket)
            low_bucket, _, above_low = masks._host_find_bucket(low, k_low)
            threshold = bucket * (1 << masks._LO_BITS) + low_bucket
            n_ties_kept = k - (above + above_low)
            n_equal = int(low[low_bucket])
            new = _backend.host_zeros(sizes[i], bool)
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
            _backend.assign_from_host(t.mask, new.reshape(shapes[i]))
            del new
            _assign_threshold_bits(t.threshold, threshold)
            low_cache = {key: v for key, v in low_cache.items() if key[0] != i}
        return ops.convert_to_tensor(0, "int32")


def _cond_host_masks(should_prune, sparsity, *arrays):
    """`(masks, thresholds, n_bad)` of flat weights: recomputed on the host
    by magnitude when `should_prune`, else the old ones (NaN/Inf: the old
    ones, with the count)."""
    n = len(arrays) // 3
    old_masks, old_thresholds = arrays[n : 2 * n], arrays[2 * n :]

    def host(sparsity, *arrays):
        values, old_masks = arrays[:n], arrays[n : 2 * n]
        new, n_bad = [], 0
        for v, om in zip(values, old_masks):
            value = masks.zero_where_not(
                np.asarray(v, np.float32), np.asarray(om, bool)
            )
            m, thr, bad = masks.host_mask(value, float(sparsity))
            n_bad += int(bad)
            new.append((m, thr))
        if n_bad:  # rollback: nothing changes
            new = list(zip(old_masks, arrays[2 * n :]))
        out = [np.asarray(m, bool) for m, _ in new]
        out += [np.asarray(t, np.float32).reshape(()) for _, t in new]
        return (*out, np.asarray(n_bad, np.int32))

    def on_host():
        results = [(_backend.static_shape(v), bool) for v in arrays[:n]]
        results += [((), np.float32)] * n + [((), np.int32)]
        return _backend.pure_host_call(host, (sparsity, *arrays), results)

    def keep():
        return (*old_masks, *old_thresholds, ops.convert_to_tensor(0, "int32"))

    return _backend.cond(should_prune, on_host, keep)


def _host_step(schedule, step, nonfinite, *arrays):
    """`_cond_host_masks` at a built-in `schedule`'s value at `step`, with
    `step + 1` and the NaN/Inf count added to `nonfinite`."""
    should_prune, sparsity = schedule(step)
    *new, n_bad = _cond_host_masks(
        ops.cast(should_prune, "bool"), ops.cast(sparsity, "float32"), *arrays
    )
    return (*new, step + 1, nonfinite + n_bad)


def _assign_threshold_bits(variable, bits):
    """Sets a float32 threshold variable from its int32 bit pattern (a
    streamed update's threshold), without compiling (`_backend.to_device`).
    """
    value = np.array(bits, np.int32).view(np.float32).reshape(())
    variable.assign(_backend.to_device(value))


class _Histograms:
    """`high()` / `low(bucket)` for `Allocation.counts`, from functions."""

    def __init__(self, high, low, host=None):
        self.high = high
        self.low = low
        # `(high, low)` returning NumPy arrays, where they are on the host.
        self.host = host


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
