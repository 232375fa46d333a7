"""`NM`: `m` zeros in every `n` consecutive weights (N:M sparsity)."""

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.core import parts
from keras_prune.core import patterns
from keras_prune.core.sparsity_patterns.base import Pattern
from keras_prune.core.sparsity_patterns.base import register


@register("m_by_n")
@keras.saving.register_keras_serializable(package="keras_prune")
class NM(Pattern):
    """N:M sparsity along each weight's contracted (input) axes.

    Same masks as `sparsity_m_by_n=(m, n)` (tfmot's argument): groups run
    along `patterns.contracted_axes(layer, weight)`; below `m / n` the
    schedule's sparsity makes a fraction of the groups N:M
    (`patterns.m_by_n_mask`).

    Args:
        m: Zeros per group, `0 < m < n`.
        n: Group length.

    Example:

    ```python
    keras_prune.prune_low_magnitude(model, pattern=keras_prune.NM(2, 4))
    ```
    """

    @keywords_checked
    def __init__(self, m=2, n=4):
        if not (
            isinstance(m, (int, np.integer))
            and isinstance(n, (int, np.integer))
            and not isinstance(m, (bool, np.bool_))  # True is not m=1
            and not isinstance(n, (bool, np.bool_))
            and 0 < m < n
        ):
            raise ValueError(
                f"sparsity_m_by_n=(m, n) needs 0 < m < n, got {(m, n)}: m is "
                "the number of zeros in every n consecutive weights, e.g. "
                "(2, 4)."
            )
        self.m, self.n = int(m), int(n)
        self._settled = True  # fixed from now on (`__setattr__`)

    def __setattr__(self, name, value):
        parts.fixed_setattr(self, NM, name, value)

    def weight_args(self, layer, weight):
        return {"axis": patterns.contracted_axes(layer, weight)}

    def uses_sparsity(self, schedule=None, sparsity=None):
        # At sparsity >= m / n every group is N:M: the gradual path's group
        # selection (a radix select) is not needed, nor compiled.
        if schedule is not None:
            return not patterns.always_full_m_by_n(schedule, (self.m, self.n))
        return bool(np.float32(sparsity) * np.float32(self.n / self.m) < 1)

    def mask(self, scores, sparsity, axis):
        return patterns.m_by_n_mask(
            scores, (self.m, self.n), sparsity, axis=axis
        )

    def fits(self, shape, axis):
        """Whether groups along `axis` of a weight of `shape` can hold a
        zero: below `n` weights, one padded group holds them, and its
        `n - length` pads take the zeros first."""
        return patterns.group_length(shape, axis) > self.n - self.m

    def misfit(self, layer, weight):
        axis = patterns.contracted_axes(layer, weight)
        if self.fits(tuple(weight.shape), axis):
            return None
        length = patterns.group_length(tuple(weight.shape), axis)
        return (
            f"its contracted axes {axis} hold {length} value(s) per output, "
            f"at most n - m = {self.n - self.m}"
        )

    def describe(self):
        return f"sparsity_m_by_n={(self.m, self.n)}"

    def get_config(self):
        return {"m": self.m, "n": self.n}
