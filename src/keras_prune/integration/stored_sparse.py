"""Pruned weights stored as zeros and read unmasked, in torch's eager steps.

With in-step updates (no `UpdatePruningStep`: custom loops, `fit` with
`steps_per_execution > 1`) a wrapper reads each pruned weight as
`w * mask` in its forward pass. On torch, which runs steps eagerly on the
CPU, that costs a multiply forward and backward per weight, and the
pruned weights' zero gradients give Adam exact-zero second moments, whose
`sqrt` torch's CPU kernels take about 10x longer on (ResNet50: 1.33x a
dense step, 68 of the 88 ms added; docs/models.md, section 6).

So on torch, in Keras' own `fit` (or `train_on_batch`) of a model whose
optimizer is elementwise (`host_updates.elementwise_optimizer`: Adam, SGD,
... without clipping by norm) and whose `train_step` is Keras' own, a
training call first zeroes each pruned weight in place (`where(mask, w,
0)`) if it was written since it was last zeroed (by the optimizer's
update), and the layer then reads the weights as they are:

- the forward pass computes the same values, and the kept weights get the
  same gradients (bit for bit: a multiply by 1.0 is exact);
- pruned weights get non-zero gradients, as in tfmot, whose updates are
  discarded at the next zeroing; an elementwise optimizer's updates of the
  kept weights do not read them, so the kept weights, and the masks
  (scored on `where(mask, w, 0)`), are those of in-step masking, bit for
  bit.

Writes are seen through torch's version counter of each variable's own
tensor, which every in-place write bumps (`_backend.write_version`: the
token also names the tensor and its storage, so a tensor put in its place
is never taken for the one zeroed). A weight is zeroed
in place only when it was written since it was last zeroed: a graph built
before that write can no longer be differentiated anyway. When only its
mask changed (this step's update, or `update_masks_now`), a forward pass
of the same step may still hold the weight for its backward pass (two
forward passes before one backward), so that call masks it as before, and
the next call after the optimizer's write zeroes it. An inference call
reads a weight unmasked only when nothing was written since it was zeroed.
Everything else masks in the forward pass: JAX and TensorFlow, whose
compiled steps are pure functions of the variables; torch under
`torch.compile`; custom training loops, which may apply any optimizer;
`fit` with an optimizer that is not elementwise or a `train_step` of
the model's own; a weight whose constraint or regularizer is not
elementwise (`MaxNorm`, `OrthogonalRegularizer`: they read the pruned
weights' values, dense under masking, zeros here, and would change the
kept weights' updates); and a wrapper whose masks may keep a weight they
pruned before (a schedule whose sparsity may decrease, a score, pattern
or allocation of the user's own): masking brings it back with the value
it kept, stored sparse it would come back as zero.
"""

import inspect

from keras_prune import _backend
from keras_prune.core import schedules
from keras_prune.integration import host_updates
from keras_prune.integration import layer_call


def _keras_train_step(model):
    """Whether `model` trains with Keras' own `train_step` (which applies
    `model.optimizer`), not a subclass's nor one set on the instance
    (`model.train_step = ...`, which `fit` calls instead)."""
    step = getattr(model, "train_step", None)
    step = getattr(step, "__func__", step)  # a bound method's function
    module = getattr(inspect.unwrap(step), "__module__", "") if step else ""
    return module.startswith("keras.")


def _storable(weight):
    """Whether `weight` may be stored sparse: its constraint and regularizer
    (applied by the optimizer, or added to the loss, on its stored values)
    do not mix the pruned weights' values into the kept weights'."""
    if getattr(weight, "constraint", None) is not None:
        return False
    regularizer = getattr(weight, "regularizer", None)
    return regularizer is None or (
        type(regularizer) in layer_call.ELEMENTWISE_PENALTIES
    )


_RAMPS = (
    schedules.PolynomialDecay,
    schedules.ExponentialDecay,
    schedules.CosineDecay,
)


def _pruned_stay_pruned(wrapper):
    """Whether `wrapper`'s masks never keep a weight they pruned before.

    Keras-prune's own scores, patterns and allocations rank the pruned
    weights (scored as zeros) last, so a sparsity that never decreases
    (`ConstantSparsity`, a ramp whose final sparsity is at least its
    initial one; in a per-layer table, every one) prunes them again. A
    user's own part or a `FunctionSchedule` may not.
    """
    spec = wrapper.pruning_spec
    for part in (spec.score, spec.pattern, spec.allocation):
        if part is None or isinstance(part, str):
            continue
        if not type(part).__module__.startswith("keras_prune."):
            return False
    schedule = spec.pruning_schedule
    table = schedule.values() if isinstance(schedule, dict) else [schedule]
    return all(_never_decreases(s) for s in table)


def _never_decreases(schedule):
    """Whether the sparsity of `schedule` (or a constant target) never
    decreases as steps go on."""
    if isinstance(schedule, (int, float)):
        return True
    if type(schedule) is schedules.ConstantSparsity:
        return True
    return type(schedule) in _RAMPS and (
        schedule.initial_sparsity <= schedule.final_sparsity
    )


def _may_zero_in_place(training):
    """Whether this training call may zero pruned weights in place.

    Only in Keras' own `fit` or `train_on_batch` of the model being called
    (the outermost layer), with Keras' own `train_step`, whose optimizer is
    elementwise: then the optimizer that applies the gradients is known. A
    custom loop may apply any optimizer (one clipping by norm would mix the
    pruned weights' gradients into the kept weights' updates), so it masks.
    Decided once per forward pass (cached on Keras' call context).
    """
    if training is not True:
        return False
    context = layer_call.call_context()
    entry = getattr(context, "entry_layer", None)
    if entry is None:
        return False
    decided = getattr(context, "_keras_prune_zero_in_place", None)
    if decided is None:
        optimizer = getattr(entry, "optimizer", None)
        decided = (
            host_updates.elementwise_optimizer(optimizer)
            and _keras_train_step(entry)
            and host_updates.driven_by_fit(entry, ("fit", "train_on_batch"))
        )
        context._keras_prune_zero_in_place = decided
    return decided


def unmasked(wrapper, training):
    """The ids of `wrapper`'s pruned weights this call reads as they are.

    Each of them holds exactly `w * mask` (zeroed in place now, or earlier
    with nothing written since). The others are read as `w * mask`.

    Args:
        wrapper: A built `PruneLowMagnitude`, in its `call`.
        training: The call's `training`.

    Returns:
        A set of `id(weight)` (empty off torch's eager steps).
    """
    pairs = list(zip(wrapper.pruned_weights, wrapper.masks))
    if (
        not pairs
        or layer_call.stateless_scope() is not None  # values mapped, not ours
        or not _pruned_stay_pruned(wrapper)
    ):
        return set()
    may_write, out = None, set()
    for weight, mask in pairs:
        versions = _backend.write_version(weight), _backend.write_version(mask)
        if versions[0] is None:
            return set()  # writes cannot be followed (not torch's eager)
        if may_write is None:  # torch's eager step: decided once per call
            may_write = _may_zero_in_place(training)
        if not _storable(weight):
            continue
        # Not a tracked attribute (a plain dict in the instance's own dict).
        record = wrapper.__dict__.setdefault("_zeroed_versions", {})
        seen = record.get(id(weight))
        if seen == versions:
            out.add(id(weight))
        elif may_write and (seen is None or seen[0] != versions[0]):
            _backend.zero_pruned(weight, mask)
            record[id(weight)] = (_backend.write_version(weight), versions[1])
            out.add(id(weight))
    return out
