"""Pruning policies: which layers of a model may be pruned (tfmot's contract).

A policy has two methods: `allow_pruning(layer) -> bool`, asked for every
layer, and `ensure_model_supports_pruning(model)`, which raises if the model
as a whole is unsuitable. Pass one as `prune_low_magnitude(...,
pruning_policy=...)`.
"""

import keras

from keras_prune import registry

_L = keras.layers


class PruningPolicy:
    """Base class: decides which layers are pruned.

    Example:

    ```python
    class OnlyDense(keras_prune.PruningPolicy):
        def allow_pruning(self, layer):
            return isinstance(layer, keras.layers.Dense)

        def ensure_model_supports_pruning(self, model):
            pass

    pruned = keras_prune.prune_low_magnitude(model, pruning_policy=OnlyDense())
    ```
    """

    def allow_pruning(self, layer):
        raise NotImplementedError(
            f"{type(self).__name__} must implement allow_pruning(layer)."
        )

    def ensure_model_supports_pruning(self, model):
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "ensure_model_supports_pruning(model)."
        )


class SkipUnsupportedLayers(PruningPolicy):
    """Prunes every layer keras-prune knows; leaves unknown layers dense.

    tfmot fails a whole model when one layer is unsupported (its issue
    #1098); with this policy such layers are simply not pruned. Equivalent
    to `prune_low_magnitude(..., skip_unsupported=True)`.
    """

    def allow_pruning(self, layer):
        return registry.is_supported(layer)

    def ensure_model_supports_pruning(self, model):
        return None


def _is_1x1_conv(layer):
    return isinstance(layer, _L.Conv2D) and tuple(layer.kernel_size) == (1, 1)


_XNNPACK_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "sigmoid")


def _xnnpack_compatible(layer):
    if isinstance(layer, (_L.InputLayer, _L.Add, _L.Multiply, _L.ReLU,
                          _L.LeakyReLU, _L.ELU, _L.Dropout,
                          _L.ZeroPadding2D)):
        return True
    if isinstance(layer, _L.DepthwiseConv2D):
        return (
            tuple(layer.kernel_size) in ((3, 3), (5, 5))
            and layer.depth_multiplier == 1
            and tuple(layer.dilation_rate) == (1, 1)
            and (
                (tuple(layer.strides) == (1, 1) and layer.padding in
                 ("same", "valid"))
                or (tuple(layer.strides) == (2, 2) and layer.padding == "valid")
            )
        )
    if isinstance(layer, _L.Conv2D):
        if _is_1x1_conv(layer):
            return (
                tuple(layer.strides) == (1, 1)
                and layer.groups == 1
                and tuple(layer.dilation_rate) == (1, 1)
            )
        return _is_xnnpack_stem(layer)
    if isinstance(layer, _L.GlobalAveragePooling2D):
        return True
    if isinstance(layer, _L.BatchNormalization):
        return layer.axis in (-1, 3, [3], [-1])
    if isinstance(layer, _L.UpSampling2D):
        return layer.interpolation == "bilinear"
    if isinstance(layer, _L.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name in _XNNPACK_ACTIVATIONS
    return False


def _is_xnnpack_stem(layer):
    return (
        isinstance(layer, _L.Conv2D)
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (2, 2)
        and layer.padding == "valid"
        and layer.built
        and layer.kernel.shape[-2] == 3
    )


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only what XNNPACK's sparse inference can speed up (tfmot rules).

    Only 1x1 `Conv2D` layers are pruned. The model must be a built
    Functional or Sequential model whose layers XNNPACK's sparse path
    supports: a 3x3 stride-2 `valid` stem `Conv2D` on 3 input channels,
    then 1x1 convolutions, 3x3/5x5 depthwise convolutions, batch norm,
    ReLU-like activations, Add/Multiply, ZeroPadding2D, bilinear upsampling,
    and `GlobalAveragePooling2D` before the head. Use it for models exported
    to LiteRT (TFLite) with XNNPACK sparse inference.
    """

    def allow_pruning(self, layer):
        return _is_1x1_conv(layer)

    def ensure_model_supports_pruning(self, model):
        from keras_prune.prune import is_graph_model

        if not is_graph_model(model):
            raise ValueError(
                "Subclassed models are not supported currently by "
                "PruneForLatencyOnXNNPack; use a Functional or Sequential "
                "model."
            )
        if not model.built:
            raise ValueError("Unbuilt models are not supported currently.")
        layers = model._flatten_layers(include_self=False, recursive=True)
        layers = [
            layer for layer in layers if not isinstance(layer, keras.Model)
        ]
        if not any(_is_xnnpack_stem(layer) for layer in layers):
            raise ValueError(
                "Could not find `Conv2D 3x3` layer with stride 2x2, "
                "`input filters == 3` and `VALID` padding in the model."
            )
        if not any(isinstance(layer, _L.GlobalAveragePooling2D)
                   for layer in layers):
            raise ValueError(
                "Could not find a `GlobalAveragePooling2D` layer in the model."
            )
        seen_pool = False
        for layer in layers:
            if isinstance(layer, _L.GlobalAveragePooling2D):
                seen_pool = True
                continue
            if seen_pool:
                continue  # the head after pooling is not constrained
            if not _xnnpack_compatible(layer):
                raise ValueError(
                    f"Layer {layer.name} is not supported for the "
                    "PruneForLatencyOnXNNPack pruning policy"
                )
