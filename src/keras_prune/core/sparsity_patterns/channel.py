"""`Channel`: whole output channels."""

import keras
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose

from keras_prune.core import patterns
from keras_prune.core.sparsity_patterns.base import Pattern
from keras_prune.core.sparsity_patterns.base import register


@register("channel")
@keras.saving.register_keras_serializable(package="keras_prune")
class Channel(Pattern):
    """Prunes whole output channels with the smallest L2 norms of scores.

    Same masks as `pattern='channel'`: the last axis (axis -2 of
    conv-transpose kernels); sparsity is a fraction of channels
    (`patterns.channel_mask`).

    Example:

    ```python
    keras_prune.prune_low_magnitude(model, pattern=keras_prune.Channel())
    ```
    """

    def weight_args(self, layer, weight):
        return {"axis": -2 if isinstance(layer, BaseConvTranspose) else -1}

    def mask(self, scores, sparsity, axis):
        return patterns.channel_mask(scores, sparsity, axis=axis)

    def describe(self):
        return "pattern='channel'"
