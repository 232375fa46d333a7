"""Which weights of a layer are pruned.

Built-in layers are matched with `isinstance`, so subclasses work (tfmot
matches exact classes only). Container layers (RNN, Bidirectional,
TimeDistributed, MultiHeadAttention, nested models, custom layers holding
sublayers) are searched recursively. A custom layer chooses its own weights by
subclassing `PrunableLayer` or defining `get_prunable_weights()`.
"""

import keras
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import (
    BaseConvTranspose,
)
from keras.src.layers.convolutional.base_depthwise_conv import (
    BaseDepthwiseConv,
)
from keras.src.layers.convolutional.base_separable_conv import (
    BaseSeparableConv,
)
from keras.src.layers.rnn.conv_lstm import ConvLSTMCell

_L = keras.layers

# Order matters only for readability: classes do not overlap.
PRUNED_WEIGHTS = (
    ((_L.Dense, _L.EinsumDense, BaseConv, BaseConvTranspose), ("kernel",)),
    # Keras 3 names the depthwise kernel of DepthwiseConv1D/2D "kernel".
    ((BaseDepthwiseConv,), ("kernel", "depthwise_kernel")),
    ((BaseSeparableConv,), ("depthwise_kernel", "pointwise_kernel")),
    ((_L.Embedding,), ("embeddings",)),
    (
        (_L.SimpleRNNCell, _L.LSTMCell, _L.GRUCell, ConvLSTMCell),
        ("kernel", "recurrent_kernel"),
    ),
)

# Layers whose weights are known and deliberately never pruned.
NEVER_PRUNED = tuple(
    cls
    for cls in (
        getattr(_L, name, None)
        for name in (
            "BatchNormalization",
            "LayerNormalization",
            "GroupNormalization",
            "RMSNormalization",
            "UnitNormalization",
            "Normalization",
            "PReLU",
        )
    )
    if cls is not None
)


class PrunableLayer:
    """Mixin for custom layers that choose which of their weights are pruned.

    Implement `get_prunable_weights()` returning the layer's variables to
    prune (after `build`). Any layer with such a method is accepted, whether or
    not it subclasses this class (tfmot's duck typing).

    Example:

    ```python
    class MyDense(keras.layers.Dense, keras_prune.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]   # prunes the bias too
    ```
    """

    def get_prunable_weights(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_prunable_weights()."
        )


class UnsupportedLayerError(ValueError):
    """A layer has weights keras-prune does not know how to prune."""


def _own_variables(layer):
    # Operations called in a Functional model (`keras.ops.add(x, 1)`) are
    # not Layers and hold no variables.
    return list(getattr(layer, "_trainable_variables", ())) + list(
        getattr(layer, "_non_trainable_variables", ())
    )


def _known_names(layer):
    for classes, names in PRUNED_WEIGHTS:
        if isinstance(layer, classes):
            return names
    return None


def _chooses_own_weights(layer):
    return getattr(
        layer, "get_prunable_weights", None
    ) is not None and not getattr(layer, "_is_prune_wrapper", False)


def is_supported(layer):
    """Whether every weight of `layer` is either prunable or known.

    Args:
        layer: A Keras layer (built or not).

    Returns:
        bool.
    """
    try:
        find_unsupported(layer)
    except UnsupportedLayerError:
        return False
    return True


def find_unsupported(layer):
    """Raises `UnsupportedLayerError` naming the first unknown sublayer."""
    _walk(layer, on_unknown="raise", out=None)


def prunable_weights(layer, skip_unsupported=False):
    """The variables of `layer` (and its sublayers) that are pruned.

    Args:
        layer: A built Keras layer.
        skip_unsupported: Leave the weights of unknown sublayers alone
            instead of raising.

    Returns:
        List of variables, without duplicates, in discovery order.

    Raises:
        UnsupportedLayerError: a sublayer has trainable weights that are
            neither prunable nor known, and `skip_unsupported` is False.
    """
    out = []
    _walk(layer, "skip" if skip_unsupported else "raise", out)
    seen, unique = set(), []
    for v in out:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    return unique


def has_prunable_weights(layer, skip_unsupported=False):
    """Whether `layer` would get at least one mask (builds nothing)."""
    found = []
    _walk(layer, "skip" if skip_unsupported else "raise", found, names=True)
    return bool(found)


def _walk(layer, on_unknown, out, names=False):
    if _chooses_own_weights(layer):
        # `get_prunable_weights()` is only called to collect weights: the
        # layer may not be built when its support is checked.
        if out is not None:
            out.extend([layer] if names else layer.get_prunable_weights())
        return
    known = _known_names(layer)
    if known is not None:
        if out is not None:
            if names:
                out.append(layer)
            else:
                out.extend(
                    v for v in _own_variables(layer) if v.name in known
                )
    elif (
        getattr(layer, "_trainable_variables", None)
        and not isinstance(layer, NEVER_PRUNED)
        and on_unknown == "raise"
    ):
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has weights "
            f"{[v.name for v in layer._trainable_variables]} that keras-prune "
            "does not know how to prune. Either make it prunable (subclass "
            "keras_prune.PrunableLayer and define get_prunable_weights()), "
            "leave it out of pruning with `layers=...`, or pass "
            "`skip_unsupported=True` to prune_low_magnitude to leave such "
            "layers dense."
        )
    flatten = getattr(layer, "_flatten_layers", None)
    for sub in flatten(include_self=False, recursive=False) if flatten else ():
        _walk(sub, on_unknown, out, names)


def owner_of(layer, weight):
    """The layer (`layer` or one of its sublayers) that created `weight`."""
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if any(v is weight for v in _own_variables(sub)):
            return sub
    return layer
