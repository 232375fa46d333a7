"""Checking a wrapper's saved pruning state before it is loaded.

`PruneLowMagnitude.load_own_variables` runs `checked_state` on the values
a `.keras` or `.weights.h5` file holds for the wrapper's own variables
(`pruning_step`, one mask and one threshold per pruned weight,
`nonfinite_count`), before any of them is assigned. Keras' `assign` casts
silently: a mask of 0.5 or -1 would load as `True`, a step of 2**32 + 3 as
3, a float step of 3.7 as 3 and NaN as -2**31. Each of these is refused
here with a `ValueError` naming the layer and the variable; a valid file
loads exactly as before.

Not checked here, on purpose: a pruned weight that is not zero where its
mask is 0. Such a state is legitimate in memory (a training step reads
`w * mask` and leaves the raw weight as it is; only saving bakes the
zeros in), and the loaded model computes `w * mask` exactly as the saved
one did.
"""

import numpy as np

_INT32_MAX = 2**31 - 1


def _fail(layer, variable, message):
    raise ValueError(
        f"Cannot load the pruning state of layer {layer!r}: its saved "
        f"`{variable}` {message} The file was not written by keras-prune "
        "or was damaged; load it from an intact copy, or strip and prune the "
        "model again."
    )


def _scalar(value, layer, variable):
    if value.shape != ():
        _fail(layer, variable, f"has shape {value.shape}, expected a scalar.")
    return value


def _count(value, layer, variable, low):
    """An integer scalar in `[low, 2**31 - 1]` (int32 counters)."""
    value = _scalar(value, layer, variable)
    if value.dtype.kind not in "iu":
        _fail(
            layer,
            variable,
            f"has dtype {value.dtype.name}, expected an integer (an int32 "
            "counter).",
        )
    number = int(value)
    if not low <= number <= _INT32_MAX:
        _fail(
            layer,
            variable,
            f"is {number}, outside [{low}, 2**31 - 1] (an int32 counter).",
        )


def _mask(value, layer, variable):
    if value.dtype.kind == "b":
        return
    if value.dtype.kind not in "iuf":
        _fail(
            layer,
            variable,
            f"has dtype {value.dtype.name}, expected bool (1 keeps a "
            "weight, 0 prunes it).",
        )
    bad = ~((value == 0) | (value == 1))  # NaN is neither
    if bad.any():
        first = value.reshape(-1)[int(np.argmax(bad.reshape(-1)))]
        _fail(
            layer,
            variable,
            f"holds {int(bad.sum())} value(s) other than 0 and 1 (e.g. "
            f"{first!r}); a mask is bool (1 keeps a weight, 0 prunes it).",
        )


def _threshold(value, layer, variable):
    value = _scalar(value, layer, variable)
    if value.dtype.kind not in "iuf" and value.dtype.name != "bfloat16":
        _fail(
            layer,
            variable,
            f"has dtype {value.dtype.name}, expected a float32 number.",
        )
    number = float(value)
    if np.isfinite(number) and abs(number) > np.finfo(np.float32).max:
        _fail(
            layer,
            variable,
            f"is {number!r}, beyond float32's range (it would load as Inf).",
        )


def checked_state(wrapper, store):
    """The wrapper's saved variables as NumPy arrays, each checked.

    Args:
        wrapper: A built `PruneLowMagnitude`.
        store: The mapping Keras passes to `load_own_variables` (keys
            `"0"`, `"1"`, ... in the order of the wrapper's variables).

    Returns:
        A dict of the same keys to NumPy arrays, for
        `keras.layers.Layer.load_own_variables`.

    Raises:
        ValueError: a value that Keras would cast into something else
            (see the module docstring), naming the layer and variable.
    """
    variables = wrapper._trainable_variables + wrapper._non_trainable_variables
    keys = list(store.keys())
    if not wrapper.built or len(keys) != len(variables):
        return store  # Keras' own check names the expected variables
    roles = {
        id(wrapper.pruning_step): "step",
        id(wrapper.nonfinite_count): "count",
    }
    roles.update((id(m), "mask") for m in wrapper.masks)
    roles.update((id(t), "threshold") for t in wrapper.thresholds)
    layer = wrapper.layer.name
    values = {}
    for i, v in enumerate(variables):
        key = f"{i}"
        if key not in keys:
            return store  # Keras names the missing one
        value = np.asarray(store[key])
        role = roles.get(id(v))
        name = v.name
        if role == "step":
            _count(value, layer, name, 0)
        elif role == "count":
            _count(value, layer, name, 0)
        elif role == "mask":
            _mask(value, layer, name)
        elif role == "threshold":
            _threshold(value, layer, name)
        values[key] = value
    return values
