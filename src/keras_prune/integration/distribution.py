"""How pruning state is laid out under `keras.distribution` (JAX).

Two rules, applied by `PruneLowMagnitude.build` (see docs/distributed.md):

- The wrapped layer keeps the variable paths it has without pruning
  (`"big/kernel"`, not `"prune_low_magnitude_big/big/kernel"`), so a
  `LayoutMap` written for the unpruned model shards the same kernels.
- Under a distribution, each mask is created with its weight's layout (a
  sharded kernel gets an identically sharded mask) and each threshold is
  replicated, whatever the user's `LayoutMap` regexes match (a key such as
  `".*kernel.*"` would otherwise give the scalar `kernel_threshold` a 2-D
  layout).

Masks are always computed from the whole tensor (the threshold is global,
never per shard): the ops see the logical array and XLA/GSPMD inserts the
gathers.

Without a distribution (TensorFlow, torch, or JAX on one device) nothing here
changes the layout: variables are made by `Layer.add_weight`. Their initial
values are then filled on the host (`state_initializer`): a Keras
initializer such as `"ones"` is a compiled op on JAX, compiled once per
shape, which made building the wrappers of a ResNet50 compile 20 programs.
"""

import keras
import numpy as np

from keras_prune import _backend


def current_distribution():
    """The active `keras.distribution.Distribution`, or None."""
    return keras.distribution.distribution()


def keep_unwrapped_path(layer, wrapper):
    """Makes `layer`, built inside `wrapper`, use the wrapper's parent scope.

    Keras puts the variables a layer creates under the name scopes of the
    layers being built: a layer built by its wrapper would get paths
    `<parent>/prune_low_magnitude_<name>/<name>/kernel`. Giving the layer the
    wrapper's parent path makes them `<parent>/<name>/kernel`, as unwrapped.
    """
    parent = getattr(wrapper, "_parent_path", None)
    if parent is not None and hasattr(layer, "_parent_path"):
        layer._parent_path = parent


class HostFill:
    """An initializer that fills with one value in NumPy: nothing compiled.

    Keras takes the returned array as the variable's value
    (`_backend.to_device`: on JAX a `device_put`, no compile). Not
    serializable, and not needed to be: the
    wrapper's config does not hold its variables' initializers.

    Args:
        value: The fill value (`True`, `0`, `0.0`).
    """

    def __init__(self, value):
        self.value = value

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype)
        return _backend.to_device(np.full(tuple(shape), self.value, dtype))


def state_initializer(value):
    """The initializer of a pruning state variable filled with `value`.

    `HostFill(value)` when no distribution is active; under one, Keras'
    `"ones"` / `"zeros"`, which JAX can create sharded on the devices.

    Args:
        value: `True` / `1` (ones) or `False` / `0` (zeros).

    Returns:
        An initializer for `Layer.add_weight` / `add_state_weight`.
    """
    if current_distribution() is None:
        return HostFill(value)
    return "ones" if value else "zeros"


def add_state_weight(layer, like=None, **kwargs):
    """`layer.add_weight(**kwargs)`, laid out for the active distribution.

    Args:
        layer: The layer that owns and tracks the new variable.
        like: A variable of the same shape whose layout the new variable
            takes (a mask takes its kernel's), or None for a replicated one.
        **kwargs: `name`, `shape`, `dtype`, `initializer`, `trainable`,
            `autocast`.

    Returns:
        The new variable, tracked by `layer`.
    """
    distribution = current_distribution()
    if distribution is None:
        return layer.add_weight(**kwargs)
    layout = getattr(like, "_layout", None) if like is not None else None
    if layout is None:
        shape = tuple(kwargs.get("shape") or ())
        layout = keras.distribution.TensorLayout(
            [None] * len(shape), distribution.device_mesh
        )
    with keras.name_scope(layer.name, caller=layer):
        variable = keras.Variable(
            initializer=kwargs["initializer"],
            shape=kwargs.get("shape") or (),
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            autocast=kwargs.get("autocast", True),
            name=kwargs.get("name"),
            layout=layout,
        )
    layer._track_variable(variable)
    return variable
