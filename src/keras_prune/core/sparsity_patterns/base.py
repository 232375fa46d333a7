"""`Pattern`: which sets of weights are kept or pruned together.

A pattern turns a tensor of scores (non-negative float32, the weight's
shape, see `keras_prune.core.scores`) into a bool mask, at a sparsity. The
built-in patterns each live in their own module of this package and
register themselves with `register`; `get` resolves a name, a config or an
instance.
"""

import keras

from keras_prune.core.parts import Part
from keras_prune.core.parts import resolve

_REGISTRY = {}  # name -> Pattern subclass (the built-in string names)


def register(name):
    """Class decorator: makes `pattern=name` select this pattern class.

    Args:
        name: The string users may pass as `pattern=` (e.g. `'channel'`).
    """

    def decorate(cls):
        _REGISTRY[name] = cls
        cls.registered_name = name
        return cls

    return decorate


@keras.saving.register_keras_serializable(package="keras_prune")
class Pattern(Part):
    """Base class of a sparsity pattern: subclass it and implement `mask`.

    `mask` runs inside compiled train steps: write it with `keras.ops`, with
    static shapes. It must keep the entries with the largest scores under
    its structure and return exact, deterministic masks (ties broken by
    position): the masks must not depend on the backend.

    Class attributes:
        shares_budget: Whether a shared allocation (`'global'`, `'erk'`)
            may select this pattern's masks (only single weights can).

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_patterns")
    class TopKPerRow(keras_prune.Pattern):
        def mask(self, scores, sparsity):
            ...  # bool mask, float32 threshold, int32 count of NaN/Inf
    ```
    """

    shares_budget = False
    registered_name = None

    def weight_args(self, layer, weight):
        """Static per-weight keyword arguments of `mask` (e.g. an axis).

        Args:
            layer: The layer that owns `weight` (not the wrapper).
            weight: The pruned variable.

        Returns:
            A dict of hashable values (default: empty).
        """
        return {}

    def uses_sparsity(self, schedule=None, sparsity=None):
        """Whether `mask` needs the sparsity (else it is passed None).

        Exactly one of the arguments is given: the schedule of an in-step
        update, or the Python float of an eager one. Default True.
        """
        return True

    def misfit(self, layer, weight):
        """Why this pattern cannot prune `weight` at all, or None."""
        return None

    def describe(self):
        """How an error message names this pattern (the argument given)."""
        return f"pattern={self!r}"

    def mask(self, scores, sparsity, **weight_args):
        """The mask of one weight.

        Args:
            scores: Non-negative float32 tensor of the weight's shape.
            sparsity: float32 scalar (a tensor inside compiled steps), or
                None when `uses_sparsity` said so.
            **weight_args: `weight_args(layer, weight)`.

        Returns:
            `(mask, threshold, n_nonfinite)`: a bool tensor of the weight's
            shape (True = kept), a float32 scalar (the smallest kept score,
            or the pattern's own measure), and an int32 count of NaN/Inf
            scores (when non-zero the update is skipped).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "`mask(self, scores, sparsity, **weight_args)`."
        )


def get(identifier):
    """A `Pattern` from an instance, its config or a registered name."""
    pattern = resolve(identifier, Pattern, _REGISTRY)
    if pattern is None:
        names = ", ".join(repr(n) for n in sorted(_REGISTRY))
        raise ValueError(
            f"Unknown pattern {identifier!r}: use None (single weights), "
            f"one of {names}, or a keras_prune.Pattern instance (e.g. "
            "keras_prune.Block((1, 4)), keras_prune.NM(2, 4)). Blocks and "
            "N:M can also be set with `block_size` and `sparsity_m_by_n`."
        )
    return pattern
