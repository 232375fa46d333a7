"""Checking a wrapper's saved pruning state before it is loaded.

`PruneLowMagnitude.load_own_variables` runs `checked_state` on the values
a `.keras` or `.weights.h5` file holds for the wrapper's own variables
(`pruning_step`, one mask and one threshold per pruned weight,
`nonfinite_count`), before any of them is assigned. Keras' `assign` casts
silently: a mask of 0.5 or -1 would load as `True`, a step of 2**32 + 3 as
3, a float step of 3.7 as 3 and NaN as -2**31. Each of these is refused
here with a `ValueError` naming the layer and the variable; a valid file
loads exactly as before.

A mask must also have the shape its pattern gives (`pattern_misfit`):
with `sparsity_m_by_n=(m, n)` every group of `n` along the weight's
contracted axes keeps at most `n - m` weights or all of them (a dense
group of gradual N:M, or a mask not updated yet); with `block_size`, every
block is kept or pruned whole; with `pattern="channel"`, every channel.
A file whose mask keeps 3 of 4 in a 2:4 group loaded silently before: the
stripped weights then failed `is_pruned_m_by_n`, and no update ran once
the schedule had ended. Such a mask is refused by name too, unless the
file marks it as saved so on purpose (`mark_masks_off_pattern`: a mask
set by hand is saved as it is, with a warning, since a save cannot refuse
without losing the file Keras has already truncated); custom patterns
are not checked (their masks can be anything).

Not checked here, on purpose: a pruned weight that is not zero where its
mask is 0. Such a state is legitimate in memory (a training step reads
`w * mask` and leaves the raw weight as it is; only saving bakes the
zeros in), and the loaded model computes `w * mask` exactly as the saved
one did.
"""

import sys
import warnings

import numpy as np

from keras_prune.core import patterns
from keras_prune.core import sparsity_patterns

_INT32_MAX = 2**31 - 1

# The key of a wrapper's saved entry whose masks were saved off their
# pattern on purpose (`mark_masks_off_pattern`).
OFF_PATTERN_KEY = "masks_off_pattern"


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


def _first(bad):
    """Index (a tuple) of the first True of a bool array."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(bad), bad.shape))


def _nm_misfit(keep, pattern, axis):
    m, n = pattern.m, pattern.n
    axes = patterns._normalize_axes(axis, keep.ndim)
    rest = tuple(i for i in range(keep.ndim) if i not in axes)
    length = int(np.prod([keep.shape[a] for a in axes]))
    rows = np.transpose(keep, rest + axes).reshape(-1, length)
    full = length // n * n
    head = rows[:, :full].reshape(rows.shape[0], full // n, n)
    parts = [(head.sum(-1), n, 0)]
    if full < length:  # the trailing partial group
        tail = rows[:, full:].sum(-1, keepdims=True)
        parts.append((tail, length - full, full // n))
    for count, size, first in parts:
        bad = (count > n - m) & (count != size)
        if bad.any():
            row, group = _first(bad)
            return (
                f"keeps {int(count[row, group])} of the {size} weights of "
                f"group {first + group} of row {row} (groups of {n} along "
                f"axes {axes}), but its pattern sparsity_m_by_n={(m, n)} "
                f"keeps at most {n - m} of a group, or a whole dense group"
            )
    return None


def _block_misfit(keep, pattern):
    if keep.ndim < 2:
        return None
    br, bc = pattern.block_size
    rows, cols = keep.shape[-2:]
    nr, nc = -(-rows // br), -(-cols // bc)
    pad = [(0, 0)] * (keep.ndim - 2) + [
        (0, nr * br - rows),
        (0, nc * bc - cols),
    ]
    grid = np.pad(keep, pad).reshape(keep.shape[:-2] + (nr, br, nc, bc))
    count = grid.sum(axis=(-3, -1))
    valid_rows = np.minimum(br, rows - br * np.arange(nr))
    valid_cols = np.minimum(bc, cols - bc * np.arange(nc))
    bad = (count != 0) & (count != np.outer(valid_rows, valid_cols))
    if bad.any():
        where = _first(bad)
        return (
            f"keeps part of block {where} (blocks of {(br, bc)} over the "
            f"last two axes), but its pattern block_size={(br, bc)} keeps "
            "or prunes whole blocks"
        )
    return None


def _channel_misfit(keep, axis):
    moved = np.moveaxis(keep, axis, -1).reshape(-1, keep.shape[axis])
    bad = (moved != moved[:1]).any(axis=0)
    if bad.any():
        return (
            f"keeps part of channel {int(np.argmax(bad))} (axis {axis}), "
            "but its pattern 'channel' keeps or prunes whole channels"
        )
    return None


def pattern_misfit(pattern, keep, owner, weight):
    """Why a mask could not come from `pattern`, or None if it could.

    Checks the built-in structured patterns (`NM`, `Block`, `Channel`, the
    exact classes); any other pattern's masks are accepted.

    Args:
        pattern: The wrapper's `keras_prune.Pattern` (`spec.mask_pattern`).
        keep: The mask, a NumPy array of bools (or 0/1).
        owner: The layer that owns `weight` (`registry.owner_of`).
        weight: The pruned weight (for its name and the pattern's axes).

    Returns:
        A phrase naming the first group, block or channel that breaks the
        pattern, or None.
    """
    keep = np.asarray(keep).astype(bool)
    if keep.size == 0:
        return None
    kind = type(pattern)
    if kind is sparsity_patterns.NM:
        return _nm_misfit(
            keep, pattern, patterns.contracted_axes(owner, weight)
        )
    if kind is sparsity_patterns.Block:
        return _block_misfit(keep, pattern)
    if kind is sparsity_patterns.Channel:
        axis = pattern.weight_args(owner, weight)["axis"] % keep.ndim
        return _channel_misfit(keep, axis)
    return None


def _checked_pattern(wrapper):
    """The wrapper's built-in N:M, block or channel pattern, or None (a
    mask of any other pattern is not checked against it)."""
    pattern = wrapper.pruning_spec.mask_pattern
    kinds = (
        sparsity_patterns.NM,
        sparsity_patterns.Block,
        sparsity_patterns.Channel,
    )
    return pattern if type(pattern) in kinds else None


def _mask_misfit(wrapper, mask, value):
    """Why the mask `value` (for `mask`, one of the wrapper's masks) is not
    one the wrapper's pattern can give, or None."""
    from keras_prune.integration import registry

    pattern = _checked_pattern(wrapper)
    if pattern is None:
        return None
    for weight, own_mask, _ in wrapper.pruning_vars:
        if own_mask is not mask:
            continue
        if tuple(value.shape) != tuple(mask.shape):
            return None  # Keras' own check names a wrong shape
        owner = registry.owner_of(wrapper.layer, weight)
        why = pattern_misfit(pattern, value, owner, weight)
        if why is not None:
            return f"(the mask of `{weight.name}`) {why}"
    return None


def _check_mask_pattern(wrapper, mask, value, marked=False):
    """Refuses a mask `value` that the wrapper's pattern cannot give, unless
    the file says it was saved so (`marked`): then it loads, with a
    warning."""
    why = _mask_misfit(wrapper, mask, value)
    if why is None:
        return
    if marked:
        warnings.warn(_off_pattern_message(wrapper, mask, why, "Loaded"))
        return
    _fail(wrapper.layer.name, mask.name, why + ".")


def _off_pattern_message(wrapper, mask, why, done):
    return (
        f"Layer {wrapper.layer.name!r}: its `{mask.name}` {why}. {done} as "
        "it is (a mask set by hand); the file marks it so, and loading "
        "keeps it with this warning. The next mask update gives the "
        "pattern again; to give it now, call "
        "`wrapper.update_masks_now(sparsity)`."
    )


def mark_masks_off_pattern(wrapper, store):
    """Saves the fact that some masks break the wrapper's pattern.

    A mask set by hand that breaks the wrapper's N:M, block or channel
    pattern is saved as it is, with a warning naming it, and the
    wrapper's entry in the file gets the key `OFF_PATTERN_KEY`. Loading
    refuses an off-pattern mask in a file without that key (a damaged or
    edited file), and loads it with the same warning in a file with it.
    Refusing the save instead would lose the user's file: Keras opens the
    file for writing (truncating it) before any layer is saved.

    Args:
        wrapper: A built `PruneLowMagnitude`.
        store: The mapping Keras passes to `save_own_variables`, after the
            wrapper's variables are written to it.

    Returns:
        The number of masks that break the pattern.
    """
    from keras import ops

    if _checked_pattern(wrapper) is None:
        return 0
    found = 0
    for _, mask, _ in wrapper.pruning_vars:
        why = _mask_misfit(
            wrapper, mask, np.asarray(ops.convert_to_numpy(mask))
        )
        if why is not None:
            found += 1
            warnings.warn(_off_pattern_message(wrapper, mask, why, "Saved"))
    if found:
        store[OFF_PATTERN_KEY] = np.asarray(found, dtype="int32")
    return found


def _roles(wrapper):
    """`{id(variable): role}` of the wrapper's own variables."""
    roles = {
        id(wrapper.pruning_step): "step",
        id(wrapper.nonfinite_count): "count",
    }
    roles.update((id(m), "mask") for m in wrapper.masks)
    roles.update((id(t), "threshold") for t in wrapper.thresholds)
    return roles


def _check_value(wrapper, variable, role, value, marked=False):
    """Refuses a saved `value` of one of the wrapper's own variables."""
    layer, name = wrapper.layer.name, variable.name
    if role in ("step", "count"):
        _count(value, layer, name, 0)
    elif role == "mask":
        _mask(value, layer, name)
        _check_mask_pattern(wrapper, variable, value, marked)
    elif role == "threshold":
        _threshold(value, layer, name)


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
            (see the module docstring), or a mask that breaks the
            wrapper's N:M, block or channel pattern in a file that does
            not mark it so (`mark_masks_off_pattern`), naming the layer
            and variable.
    """
    variables = wrapper._trainable_variables + wrapper._non_trainable_variables
    keys = list(store.keys())
    marked = OFF_PATTERN_KEY in keys
    if marked:
        keys.remove(OFF_PATTERN_KEY)
        _count(
            np.asarray(store[OFF_PATTERN_KEY]),
            wrapper.layer.name,
            OFF_PATTERN_KEY,
            1,
        )
    # Keras' own check names the expected or missing variables.
    unchecked = {k: store[k] for k in keys} if marked else store
    if not wrapper.built or len(keys) != len(variables):
        return unchecked
    roles = _roles(wrapper)
    values = {}
    for i in range(len(variables)):
        key = f"{i}"
        if key not in keys:
            return unchecked
        values[key] = np.asarray(store[key])
    for i, v in enumerate(variables):
        _check_value(wrapper, v, roles.get(id(v)), values[f"{i}"], marked)
    return values


class _CheckedVariable:
    """One of a wrapper's own variables as Keras' legacy `.h5` loader sees
    it: `assign` checks the saved value first (`_check_value`); anything
    else is the variable's."""

    def __init__(self, wrapper, variable, role):
        self._wrapper = wrapper
        self._variable = variable
        self._role = role

    def __getattr__(self, name):
        return getattr(self._variable, name)

    def assign(self, value):
        value = np.asarray(value)
        _check_value(self._wrapper, self._variable, self._role, value)
        return self._variable.assign(value)


_LEGACY_LOADERS = None


def _legacy_codes():
    global _LEGACY_LOADERS
    if _LEGACY_LOADERS is None:
        try:
            from keras.src.legacy.saving import legacy_h5_format as h5
        except ImportError:  # another Keras: nothing to intercept
            _LEGACY_LOADERS = (None, frozenset())
        else:
            _LEGACY_LOADERS = (
                h5._legacy_weights.__code__,
                frozenset(
                    f.__code__
                    for f in (
                        h5.load_weights_from_hdf5_group,
                        h5.load_weights_from_hdf5_group_by_name,
                    )
                ),
            )
    return _LEGACY_LOADERS


def legacy_h5_variables(wrapper, variables):
    """`variables` (the wrapper's `weights`), the wrapper's own ones made
    checking (`_CheckedVariable`) when Keras' legacy `.h5` loader asks for
    them.

    The `.h5` format (`model.save("x.h5")`, tfmot's) is loaded variable by
    variable with `variable.assign`, never through `load_own_variables`:
    a mask of 0.5 loaded as True, a step of 2**32 + 3 as 3, a mask
    breaking its N:M pattern silently. The loader reads each top-level
    layer's variables through `_legacy_weights(layer)` (the wrapper's, or
    a nested model's, which reads the wrapper's `weights`); when that call
    of a loader is on the stack, within `_LEGACY_DEPTH` frames, the
    wrapper's own variables are checking stand-ins. Every other caller gets
    the variables themselves.

    Args:
        wrapper: A `PruneLowMagnitude`.
        variables: Its `weights`.

    Returns:
        `variables`, or a list with the checking stand-ins.
    """
    legacy, loaders = _legacy_codes()
    if legacy is None or not wrapper.built:
        return variables
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return variables  # a compiled step (no loader; no frame walk)
    frame = sys._getframe(2)  # this, the property, then its callers
    for _ in range(_LEGACY_DEPTH):
        if frame is None:
            return variables
        if frame.f_code is legacy:
            break
        frame = frame.f_back
    else:
        return variables
    if frame.f_back is None or frame.f_back.f_code not in loaders:
        return variables
    roles = _roles(wrapper)
    return [
        _CheckedVariable(wrapper, v, roles[id(v)]) if id(v) in roles else v
        for v in variables
    ]


# Frames between `_legacy_weights` and the wrapper's `weights`: Keras'
# `trainable_weights` / `non_trainable_weights` and one `weights` per
# level of nested models.
_LEGACY_DEPTH = 16
