"""What a pruned model holds: its wrappers, their step, sparsity and health.

Read-only questions about a model, shared by the callbacks, `strip_pruning`,
the reports and the CLI.
"""

import inspect

import keras
import numpy as np

from keras_prune import _backend
from keras_prune.integration import updater
from keras_prune.integration.controller import nonfinite_message
from keras_prune.integration.wrapper import PruneLowMagnitude


def pruning_wrappers(model):
    """Every `PruneLowMagnitude` in `model`, nested ones included.

    Args:
        model: A Keras model or layer.

    Returns:
        List of wrappers, each once, in traversal order.
    """
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, PruneLowMagnitude) and layer not in found:
            found.append(layer)
    return found


def check_finite(model):
    """Raises `FloatingPointError` if a compiled mask update met NaN or Inf.

    Args:
        model: A model holding pruning wrappers.
    """
    built = [w for w in pruning_wrappers(model) if w.built]
    counts = _backend.read_ints(w.nonfinite_count for w in built)
    for wrapper, count in zip(built, counts):
        if count:
            raise FloatingPointError(nonfinite_message(wrapper))


def wrapper_steps(wrappers):
    """The `pruning_step` of each built wrapper, read with one transfer.

    Args:
        wrappers: `PruneLowMagnitude` layers.

    Returns:
        List of `(wrapper, step)` for the built ones, in order.
    """
    built = [w for w in wrappers if w.built]
    return list(zip(built, _backend.read_ints(w.pruning_step for w in built)))


def model_sparsity(model):
    """Fraction of zeros over all pruned weights of `model` (their masks).

    Args:
        model: A model holding pruning wrappers.

    Returns:
        float, or `None` when the model has nothing pruned.
    """
    _check_model(model, "model_sparsity")
    pruned = total = 0
    for wrapper in pruning_wrappers(model):
        if not wrapper.built:  # no masks yet
            continue
        for mask in wrapper.masks:
            m = updater.host_value(mask)
            total += m.size
            pruned += m.size - int(np.count_nonzero(m))
    return pruned / total if total else None


def pruning_step(model):
    """The number of training batches a pruned model has completed.

    Args:
        model: A model holding pruning wrappers.

    Returns:
        int, or `None` when the model has no built pruning wrapper.
    """
    _check_model(model, "pruning_step")
    for wrapper in pruning_wrappers(model):
        if wrapper.built:
            return int(keras.ops.convert_to_numpy(wrapper.pruning_step))
    return None


def _check_model(model, function):
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"{function} expects a keras.Model (or layer), got "
            f"{type(model).__name__}: {model!r:.80}"
        )


class TrainingNotPassedWarning(UserWarning):
    """A pruned model's layers are not told when they train."""


def takes_training(model):
    """Whether `model.call` takes a `training` argument.

    Keras passes `training=True` to a model in `fit` only when its `call`
    takes `training`; otherwise its layers never learn that they train, and
    the pruning wrappers inside never update their masks or step.
    """
    return "training" in inspect.signature(model.call).parameters


def training_message(model, wrappers=None):
    """The error for pruned layers that `fit` never calls in training mode.

    Args:
        model: The model `fit` trains.
        wrappers: The wrappers concerned (all of the model's if None).

    Returns:
        str naming the model, the layers and the fix.
    """
    cls = type(model).__name__
    names = [w.layer.name for w in (wrappers or pruning_wrappers(model))]
    shown = f"{names[:5]}{' ...' if len(names) > 5 else ''}"
    if not takes_training(model):
        cause = f"{cls}.call() takes no `training` argument"
    else:
        cause = f"{cls}.call() does not pass `training` on to those layers"
    return (
        f"The pruned layers {shown} of model {model.name!r} are never called "
        f"with training=True, so they would never prune: {cause}. Keras "
        "tells layers that they train only through `training` (on JAX, `fit` "
        "runs call() directly, so nothing is inherited). Give call() a "
        "`training=None` argument and pass it to each layer, e.g. "
        "`self.dense(x, training=training)`."
    )
