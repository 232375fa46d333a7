"""`Block`: whole blocks over the last two axes (tfmot's block sparsity)."""

import math

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.core import parts
from keras_prune.core import patterns
from keras_prune.core.sparsity_patterns.base import Pattern
from keras_prune.core.sparsity_patterns.base import register

POOLING_TYPES = ("AVG", "MAX")


@register("block")
@keras.saving.register_keras_serializable(package="keras_prune")
class Block(Pattern):
    """Prunes whole `block_size` blocks, scored by `pooling` of the scores.

    Same masks as `block_size=` / `block_pooling_type=` (tfmot's arguments):
    sparsity is a fraction of blocks (`patterns.block_mask`).

    Args:
        block_size: `(rows, cols)` of positive integers.
        pooling: `'AVG'` or `'MAX'`.

    Example:

    ```python
    keras_prune.prune_low_magnitude(model, pattern=keras_prune.Block((1, 4)))
    ```
    """

    @keywords_checked
    def __init__(self, block_size=(1, 1), pooling="AVG"):
        given = block_size
        try:
            block_size = tuple(block_size)
        except TypeError:  # Block(2): not a pair
            block_size = None
        if (
            block_size is None
            or len(block_size) != 2
            or not all(
                isinstance(i, (int, np.integer))
                and not isinstance(i, (bool, np.bool_))  # True is not 1
                for i in block_size
            )
            or min(block_size) < 1
        ):
            raise ValueError(
                "`block_size` must be a pair of two positive integers, got "
                f"{given!r}."
            )
        block_size = tuple(int(i) for i in block_size)
        if pooling not in POOLING_TYPES:
            raise ValueError(
                f"Unsupported pooling type '{pooling}'. Should be 'AVG' or "
                "'MAX'."
            )
        self.block_size = block_size
        self.pooling = pooling
        self._settled = True  # fixed from now on (`__setattr__`)

    def __setattr__(self, name, value):
        parts.fixed_setattr(self, Block, name, value)

    def mask(self, scores, sparsity):
        return patterns.block_mask(
            scores, sparsity, self.block_size, self.pooling
        )

    def fits(self, shape, axis=None):
        """Whether a weight of `shape` holds more than one block."""
        if len(shape) < 2:
            return True  # block_mask raises its own error
        br, bc = self.block_size
        lead = math.prod(shape[:-2])
        blocks = lead * -(-shape[-2] // br) * -(-shape[-1] // bc)
        return blocks > 1

    def misfit(self, layer, weight):
        return None if self.fits(tuple(weight.shape)) else "a single block"

    def describe(self):
        return f"block_size={self.block_size}"

    def get_config(self):
        return {"block_size": list(self.block_size), "pooling": self.pooling}
