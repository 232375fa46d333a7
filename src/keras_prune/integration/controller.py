"""The per-step control of a wrapper's masks: when and what to update.

`PruneLowMagnitude` holds the state (masks, thresholds, `pruning_step`,
`nonfinite_count`); `updater.MaskUpdate` computes new masks. This module
decides, in a training call, whether this call updates the masks, at what
sparsity, and who does it:

- `first_call_in_forward_pass`: a layer used twice in one forward pass
  advances once;
- `schedule_at`: the schedule at a step, in-graph or evaluated on the host
  (`evaluate_on_host`, with the error sink of `UpdatePruningStep`);
- `update_masks`: the in-step update (the layer's own masks, or its group's
  when it is the first member called in the pass), the NaN/Inf count and
  the step increment;
- `update_masks_now`: the eager update of `prune_once`.
"""

import keras
import numpy as np
from keras import ops

from keras_prune import _backend
from keras_prune.core import masks
from keras_prune.core import schedules
from keras_prune.integration import layer_call
from keras_prune.integration import spec as _spec
from keras_prune.integration import updater

forward_pass = layer_call.forward_pass


def first_call_in_forward_pass(wrapper):
    """Whether this call of `wrapper` is its first in the forward pass (the
    one that counts the step and updates the masks)."""
    return layer_call.first_in_forward_pass(wrapper, "_last_call_context")


def compiles_with_xla(schedule):
    """Whether a train step holding `schedule` compiles with XLA.

    On TensorFlow a host schedule runs through `tf.numpy_function` (a
    user's in-graph schedule too, to report an invalid value), which XLA
    cannot compile: Keras then trains the model without XLA
    (`jit_compile=True` falls back with a warning).
    """
    return (
        schedules.is_builtin(schedule)
        or keras.backend.backend() != "tensorflow"
    )


def schedule_at(wrapper, step):
    """`(should_prune, sparsity)` of `wrapper`'s schedule at `step`.

    Args:
        wrapper: A `PruneLowMagnitude`.
        step: int32 scalar tensor.

    Returns:
        bool and float32 scalar tensors.
    """
    schedule = wrapper.pruning_schedule

    saving = _backend.traced_for_saving()

    def on_host():
        if saving:
            raise ValueError(_saved_schedule_message(wrapper))
        return _backend.host_call(lambda s: evaluate_on_host(wrapper, s), step)

    if schedule.in_graph:
        should_prune, sparsity = schedule(step)
        should_prune = ops.cast(should_prune, "bool")
        sparsity = ops.cast(sparsity, "float32")
        if schedules.is_builtin(schedule):
            return should_prune, sparsity  # valid by construction
        # A user's in-graph schedule: an invalid value (NaN fails both
        # comparisons) re-evaluates it on the host, where the check
        # raises; valid values cost one comparison.
        valid = ops.logical_and(
            ops.greater_equal(sparsity, 0.0), ops.less_equal(sparsity, 1.0)
        )
        if saving:  # no host call in a SavedModel: check in the graph
            message = (
                f"Layer '{wrapper.layer.name}': the pruning schedule "
                f"{type(schedule).__name__} returned a sparsity outside "
                "[0, 1] (or NaN)."
            )
            return _backend.checked_in_graph(
                valid, message, (should_prune, sparsity)
            )
        return _backend.cond(valid, lambda: (should_prune, sparsity), on_host)
    return on_host()


def _saved_schedule_message(wrapper):
    schedule = wrapper.pruning_schedule
    return (
        f"Layer '{wrapper.layer.name}': its pruning schedule "
        f"{type(schedule).__name__} runs Python at each training step, "
        "which a SavedModel cannot hold (the saved training function would "
        "fail where it is loaded). To save a function that trains the "
        "pruned model, use a built-in schedule (ConstantSparsity, "
        "PolynomialDecay, ...) or one written with keras.ops (`in_graph = "
        "True`); to save the model for inference, use `model.export(...)` "
        "or save `keras_prune.strip_pruning(model)`."
    )


def evaluate_on_host(wrapper, step):
    """`schedules.evaluate` at `step`, run from inside the train step.

    An invalid value (`schedules.check_value`) raises `ValueError`. A
    Python exception inside `jax.pure_callback` or `tf.numpy_function`
    reaches the caller as the backend's runtime error (with the same
    message), so while `UpdatePruningStep` watches the wrapper
    (`wrapper._schedule_errors` is a list) on JAX and TensorFlow, the error
    is recorded instead, this step does not update the masks, and the
    callback raises the `ValueError` at its next hook.

    Args:
        wrapper: A `PruneLowMagnitude`.
        step: Python int.

    Returns:
        `(should_prune, sparsity)` as NumPy values.
    """
    try:
        return schedules.evaluate(wrapper.pruning_schedule, step)
    except ValueError as error:
        sink = wrapper._schedule_errors
        if sink is None:
            raise
        sink.append(error)
        return False, np.float32(0.0)


def own_update(wrapper):
    """The `updater.MaskUpdate` of `wrapper`'s own masks (built), cached."""
    cached = wrapper.__dict__.get("_mask_update")
    if cached is None:
        cached = updater.MaskUpdate.for_wrappers([wrapper])
        object.__setattr__(wrapper, "_mask_update", cached)
    return cached


def training_call(wrapper):
    """The control of a training call of `wrapper` (in-step updates).

    A wrapper still attached to a host-mode `fit` (a train step called by
    hand after a `fit` that raised) goes back to in-step updates for good
    (`host_updates.HostUpdates.stop`). The first call in a forward pass
    updates the masks (`update_masks`).
    """
    if wrapper._host_attached is not None:
        wrapper._host_attached.stop()
    if first_call_in_forward_pass(wrapper):
        update_masks(wrapper)


def update_masks(wrapper):
    """One in-step update: schedule at `pruning_step`, the masks of the
    layer (or of its group, by the group's first member called in the
    forward pass), the NaN/Inf count, and the step increment."""
    step = ops.convert_to_tensor(wrapper.pruning_step)
    group = wrapper._group
    if group is None:
        update = own_update(wrapper)
        counts = update.update_from_step(
            wrapper.pruning_schedule, step, wrapper.nonfinite_count
        )
        if counts is not None:  # schedule, masks and counts in one call
            wrapper.nonfinite_count.assign(counts[1])
            wrapper.pruning_step.assign(counts[0])
            return
        should_prune, sparsity = schedule_at(wrapper, step)
        n_bad = update.update(should_prune, sparsity)
    else:
        should_prune, sparsity = schedule_at(wrapper, step)
        context = forward_pass()
        if context is None or group.claim(context):
            n_bad = group.update(should_prune, sparsity)
        else:
            n_bad = None  # another member updated the group's masks
    if n_bad is not None:
        raise_if_eager_nonfinite(wrapper, n_bad)
        wrapper.nonfinite_count.assign(
            ops.convert_to_tensor(wrapper.nonfinite_count)
            + ops.cast(n_bad, "int32")
        )
    wrapper.pruning_step.assign(step + 1)


def update_masks_now(wrapper, sparsity):
    """Eagerly recomputes `wrapper`'s masks to `sparsity` (no step change).

    With global or ERK allocation, the masks of the whole group are
    recomputed.

    Args:
        wrapper: A built `PruneLowMagnitude`.
        sparsity: Fraction to prune, in `[0, 1]`.

    Raises:
        FloatingPointError: a pruned weight is NaN or Inf (the masks are
            then left as they were).
    """
    if not wrapper.built:
        raise ValueError(
            f"Layer {wrapper.layer.name!r}: the pruning wrapper is not "
            "built, so it has no masks to update. Build it first (call the "
            "model on data, or `model.build(input_shape)`)."
        )
    if sparsity is None:
        raise ValueError(
            f"Layer {wrapper.layer.name!r}: update_masks_now needs a "
            "`sparsity` in [0, 1], got None."
        )
    # Not float() first: float(True) and float("0.5") are numbers.
    sparsity = _spec.fraction(sparsity, "sparsity")
    group = wrapper._group
    if group is None:
        # NumPy for single weights by magnitude; otherwise compiled per
        # (shape, pattern) class, not per layer.
        n_bad = own_update(wrapper).update_now(sparsity)
    else:
        n_bad = group.update(
            ops.convert_to_tensor(True),
            ops.convert_to_tensor(sparsity, "float32"),
        )
    raise_if_eager_nonfinite(wrapper, n_bad)


def raise_if_eager_nonfinite(wrapper, n_bad):
    """Raises `FloatingPointError` when an eager `n_bad` is non-zero."""
    if not masks._is_eager(n_bad):
        return  # Inside a compiled step: UpdatePruningStep reports it.
    if int(ops.convert_to_numpy(n_bad)):
        raise FloatingPointError(nonfinite_message(wrapper))


def nonfinite_message(wrapper):
    """The error message of a mask update that met NaN or Inf weights."""
    scope = (
        f"Layer {wrapper.layer.name!r}"
        if wrapper._group is None
        else f"A layer of the {wrapper.allocation!r} pruning group of "
        f"{wrapper.layer.name!r}"
    )
    return (
        f"{scope}: a pruned weight holds NaN or Inf values at a mask update, "
        "so the masks were left unchanged. "
        "Training has diverged: lower the learning rate, clip gradients, or "
        "restore a checkpoint."
    )
