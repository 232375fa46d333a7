"""`Unstructured`: single weights (the default pattern)."""

import keras

from keras_prune.core import masks
from keras_prune.core.sparsity_patterns.base import Pattern
from keras_prune.core.sparsity_patterns.base import register


@register("unstructured")
@keras.saving.register_keras_serializable(package="keras_prune")
class Unstructured(Pattern):
    """Keeps the `kept_count(n, s)` largest scores of each weight.

    Exact count, ties kept lowest flat index first (`masks.mask_from_bits`).
    The only pattern a shared allocation (`'global'`, `'erk'`) selects.

    Example:

    ```python
    keras_prune.prune_low_magnitude(model, pattern=keras_prune.Unstructured())
    ```
    """

    shares_budget = True

    def mask(self, scores, sparsity):
        return self.mask_from_bits(
            masks.magnitude_bits(scores), sparsity, tuple(scores.shape)
        )

    def mask_from_bits(self, bits, sparsity, shape):
        """`mask` given the scores' bits (`Score.bits`): one pass less."""
        return masks.mask_from_bits(bits, sparsity, shape)
