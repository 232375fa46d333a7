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
changes anything: variables are made by `Layer.add_weight`.
"""

import keras


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


def add_state_weight(layer, like=None, **kwargs):
    """`layer.add_weight(**kwargs)`, laid out for the active distribution.

    Args:
        layer: The layer that owns and tracks the new variable.
        like: A variable of the same shape whose layout the new variable
            takes (a mask takes its kernel's), or None for a replicated one.
        **kwargs: `name`, `shape`, `dtype`, `initializer`, `trainable`.

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
            name=kwargs.get("name"),
            layout=layout,
        )
    layer._track_variable(variable)
    return variable
