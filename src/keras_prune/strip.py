"""`strip_pruning`: a model of stock Keras layers with exactly sparse weights."""

import keras

from keras_prune.prune import is_graph_model
from keras_prune.prune import replace_sublayers
from keras_prune.wrapper import PruneLowMagnitude
from keras_prune.wrapper import nonfinite_message


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
    for wrapper in pruning_wrappers(model):
        if wrapper.built and int(keras.ops.convert_to_numpy(
            wrapper.nonfinite_count
        )):
            raise FloatingPointError(
                nonfinite_message(wrapper)
            )


def strip_pruning(model):
    """Removes pruning wrappers: stock Keras layers, pruned weights exactly 0.

    Each wrapped weight is first set to `weight * mask` in place, then the
    wrappers are replaced by the layers they wrap. The result predicts what
    the pruned model predicts and loads where keras-prune is not installed.
    Sequential and Functional models are rebuilt around the same layer
    objects (as tfmot does); a subclassed model has its wrappers replaced in
    place.

    Args:
        model: A `keras.Model` (possibly holding `PruneLowMagnitude` layers).

    Returns:
        The stripped model.

    Raises:
        ValueError: `model` is not a `keras.Model`.
        FloatingPointError: a mask update found NaN or Inf weights.

    Example:

    ```python
    final = keras_prune.strip_pruning(pruned_model)
    final.save("final.keras")   # loads without keras_prune
    ```
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Expected model to be a `keras.Model` instance but got: "
            f"{model!r}. To strip one wrapper, use `wrapper.layer` after "
            "`wrapper.apply_masks()`."
        )
    check_finite(model)
    for wrapper in pruning_wrappers(model):
        if wrapper.built:
            wrapper.apply_masks()

    def unwrap(layer):
        return layer.layer if isinstance(layer, PruneLowMagnitude) else layer

    if is_graph_model(model):
        return keras.models.clone_model(
            model, clone_function=unwrap, recursive=True
        )
    replace_sublayers(
        model, lambda layer: unwrap(layer) if layer is not unwrap(layer) else None
    )
    return model
