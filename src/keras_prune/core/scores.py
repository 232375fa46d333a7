"""Scores: how much each weight is worth keeping (the pipeline's first part).

A score maps a pruned weight (its current value with the pruned entries set
to zero, plus the variable and the layer that owns it) to a non-negative
float32 tensor of the weight's shape. The pattern then keeps the entries
(or blocks, groups, channels) with the largest scores. Because non-negative
float32 values order like their int32 bit patterns, every score reuses the
exact radix select of `masks` (jaxpruner's `calculate_scores` plays the same
role there).

`Magnitude` (`|w|`) is the default and the only score with the fast paths
(the NumPy host select and the bounded-memory streaming group update); any
other score runs the generic compiled path.
"""

import keras
from keras import ops

from keras_prune.core import masks
from keras_prune.core.parts import Part
from keras_prune.core.parts import resolve


@keras.saving.register_keras_serializable(package="keras_prune")
class Score(Part):
    """Base class of a score: subclass it and implement `__call__`.

    A score must be a pure function of its arguments, written with
    `keras.ops` (it runs inside compiled train steps), returning
    non-negative float32 values (NaN and Inf count as invalid weights: the
    update is then skipped and reported).

    Class attributes:
        layer_independent: True when the score depends only on `value`
            (not on `weight` or `layer`): eager updates then share one
            compiled function across all weights of the same shape.
            Default False (a compiled function per weight).

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_scores")
    class Scaled(keras_prune.Score):
        def __init__(self, factor=2.0):
            self.factor = factor

        def __call__(self, value, weight, layer):
            return ops.abs(value) * self.factor

        def get_config(self):
            return {"factor": self.factor}
    ```
    """

    layer_independent = False

    def __call__(self, value, weight, layer):
        """Scores of one weight.

        Args:
            value: float32 tensor: the weight with its pruned entries zero.
            weight: The variable (for its `name`, `path`, `shape`).
            layer: The layer that owns `weight` (not the wrapper).

        Returns:
            A non-negative float32 tensor of `value`'s shape.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "`__call__(self, value, weight, layer)`."
        )

    def bits(self, value, weight, layer):
        """Flat int32 bit patterns of the scores (`masks.magnitude_bits`),
        which the exact select reads. Override only to save a pass."""
        return masks.magnitude_bits(self(value, weight, layer))


@keras.saving.register_keras_serializable(package="keras_prune")
class Magnitude(Score):
    """`|w|`, the default score (tfmot's).

    The absolute value is taken on the bit pattern (sign bit cleared), so
    that float32 subnormals keep their value on every backend (TensorFlow's
    float `abs` flushes them to zero).

    Example:

    ```python
    keras_prune.prune_low_magnitude(model, score=keras_prune.Magnitude())
    ```
    """

    layer_independent = True

    def __call__(self, value, weight=None, layer=None):
        bits = masks.magnitude_bits(value)
        return ops.reshape(ops.view(bits, "float32"), tuple(value.shape))

    def bits(self, value, weight=None, layer=None):
        return masks.magnitude_bits(value)


def get(identifier):
    """A `Score` from an instance, its config, `'magnitude'` or None."""
    if identifier is None:
        return Magnitude()
    score = resolve(identifier, Score, {"magnitude": Magnitude})
    if score is None:
        raise TypeError(
            "`score` must be a keras_prune.Score (e.g. "
            f"keras_prune.Magnitude()), its config or None; got "
            f"{identifier!r}. Subclass keras_prune.Score for your own."
        )
    return score
