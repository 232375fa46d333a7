"""`strip_pruning`: a model of stock Keras layers, exactly sparse weights."""

import keras

from keras_prune._keywords import keywords_checked
from keras_prune.integration import inplace
from keras_prune.integration import rewrite
from keras_prune.integration.state import check_finite
from keras_prune.integration.state import pruning_wrappers


@keywords_checked
def strip_pruning(model):
    """Removes pruning wrappers: stock Keras layers, pruned weights exactly 0.

    Each wrapped weight is first set to `weight * mask` in place, then every
    wrapper is replaced by the layer it wraps, in place, wherever the model
    holds it (graph nodes, attributes, lists): the model keeps its class (a
    Keras-Hub task keeps `generate()`), its layer objects and their weights.
    The result predicts what the pruned model predicts and loads where
    keras-prune is not installed.

    The model is returned **uncompiled, without optimizer state**: it is for
    export, and saves to the size of the dense model. Compile it again to
    train it further. tfmot returns a new model object sharing the same
    layers; here the model passed in is itself unwrapped and returned.

    Args:
        model: A `keras.Model` (possibly holding `PruneLowMagnitude` layers).

    Returns:
        The stripped model (the same object).

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
    wrappers = pruning_wrappers(model)
    for wrapper in wrappers:
        wrapper.check_masks_apply()  # before any weight is changed
    check_finite(model)
    for wrapper in wrappers:
        if wrapper.built:
            wrapper.apply_masks()
    stripped = rewrite.swap_layers(model, {id(w): w.layer for w in wrappers})
    rewrite.uncompile(stripped)
    # A model pruned in place had a keras-prune class (`inplace`): the
    # stripped one is of its own class again, loadable without keras-prune.
    return inplace.restore_class(stripped)
