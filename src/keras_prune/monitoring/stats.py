"""Pruning statistics: per-weight sparsity rows of a model or of its logs."""

import keras
import numpy as np

from keras_prune.core import schedules as schedules_lib
from keras_prune.integration import state
from keras_prune.monitoring.events import _SUFFIXES


def _weight_tags(wrappers):
    """`(wrapper, index, tag)` per pruned weight; `tag` = `<layer>/<weight>`.

    `<weight>` is the weight's path inside the wrapped layer (`kernel`,
    `forward_lstm/lstm_cell/kernel`); tags are made unique within the model.
    """
    tags, seen = [], set()
    for wrapper in wrappers:
        layer = wrapper.layer
        prefix = getattr(layer, "path", layer.name)
        for i, weight in enumerate(wrapper.pruned_weights):
            # The variable may sit under the model's scope as well
            # (`sequential/d/kernel` for a layer whose path is `d`).
            scoped = "/" + weight.path
            at = scoped.find(f"/{prefix}/")
            rel = scoped[at + len(prefix) + 2 :] if at >= 0 else weight.path
            tag = f"{layer.name}/{rel}"
            unique, n = tag, 1
            while unique in seen:
                unique, n = f"{tag}_{n}", n + 1
            seen.add(unique)
            tags.append((wrapper, i, unique))
    return tags


last_update = schedules_lib.last_update  # the one schedule scan


class _TargetTracker:
    """Remembers each wrapper's last mask update between log points."""

    def __init__(self):
        self._state = {}  # id(wrapper) -> (last step scanned, (step, s))

    def target(self, wrapper, pruning_step):
        """Schedule sparsity of the last update at a step < `pruning_step`.

        `pruning_step` batches have run (steps 0 .. pruning_step - 1), so the
        masks in effect come from the last update among those steps; 0.0
        when none has happened yet.
        """
        last = pruning_step - 1
        scanned, found = self._state.get(id(wrapper), (-1, None))
        if last < scanned:  # step went back (reset or reloaded): rescan
            scanned, found = -1, None
        if last > scanned:
            newer = last_update(wrapper.pruning_schedule, last, scanned + 1)
            found = newer or found
            self._state[id(wrapper)] = (last, found)
        return float(found[1]) if found else 0.0


def pruned_weight_stats(model, _tracker=None):
    """Measures every pruned weight of a model, as `PruningSummaries` logs it.

    On JAX, call this on a synced model (outside `fit`, or `self.model` in a
    callback).

    Args:
        model: A model holding pruning wrappers.

    Returns:
        List of dicts, one per pruned weight: `tag` (`<layer>/<weight>`),
        `layer`, `weight`, `shape`, `params`, `zeros` (of `weight * mask`,
        what the forward pass uses), `sparsity` (`zeros / params`),
        `threshold` (the wrapper's threshold: the smallest magnitude kept at
        the last mask update), `target_sparsity` (the schedule's sparsity at
        the last mask update that has run; 0.0 before the first one) and
        `step` (the wrapper's `pruning_step`: batches it has trained).
    """
    tracker = _tracker or _TargetTracker()
    wrappers = [w for w in state.pruning_wrappers(model) if w.built]
    rows = []
    index = {}
    for wrapper, i, tag in _weight_tags(wrappers):
        if id(wrapper) not in index:
            step = int(keras.ops.convert_to_numpy(wrapper.pruning_step))
            index[id(wrapper)] = (step, tracker.target(wrapper, step))
        step, target = index[id(wrapper)]
        weight = wrapper.pruned_weights[i]
        value = np.asarray(keras.ops.convert_to_numpy(weight))
        keep = np.asarray(keras.ops.convert_to_numpy(wrapper.masks[i]))
        zeros = int(value.size - np.count_nonzero(np.where(keep, value, 0)))
        rows.append(
            dict(
                tag=tag,
                layer=wrapper.layer.name,
                weight=tag[len(wrapper.layer.name) + 1 :],
                shape=tuple(weight.shape),
                params=int(value.size),
                zeros=zeros,
                sparsity=zeros / value.size if value.size else 0.0,
                threshold=float(
                    keras.ops.convert_to_numpy(wrapper.thresholds[i])
                ),
                target_sparsity=target,
                step=step,
            )
        )
    return rows


def model_scalars(rows):
    """The scalars logged for `pruned_weight_stats` rows: `{tag: value}`."""
    scalars = {}
    for r in rows:
        scalars[f"{r['tag']}/sparsity"] = r["sparsity"]
        scalars[f"{r['tag']}/threshold"] = r["threshold"]
        scalars[f"{r['tag']}/target_sparsity"] = r["target_sparsity"]
    params = sum(r["params"] for r in rows)
    if params:
        scalars["model/sparsity"] = sum(r["zeros"] for r in rows) / params
        scalars["model/target_sparsity"] = (
            sum(r["target_sparsity"] * r["params"] for r in rows) / params
        )
    return scalars


def last_values(scalars):
    """`{tag: (step, value)}`: the last point of each `read_scalars` list."""
    return {tag: points[-1] for tag, points in scalars.items() if points}


def weight_rows_from_logs(scalars, config=None):
    """Per-weight rows (as `pruned_weight_stats`) from the last logged values.

    Args:
        scalars: `read_scalars(log_dir)`.
        config: `read_config(log_dir)` (gives `params`), optional.

    Returns:
        List of dicts with `tag`, `sparsity`, `threshold`,
        `target_sparsity`, `step`, and `params` when known.
    """
    last = last_values(scalars)
    params = {}
    if config:
        params = {t: w.get("params") for t, w in config["weights"].items()}
    rows = {}
    for tag, (step, value) in last.items():
        for suffix in _SUFFIXES:
            base = tag[: -len(suffix)]
            # `<layer>/<weight>/<suffix>`; `model/sparsity` has no weight.
            if tag.endswith(suffix) and "/" in base:
                row = rows.setdefault(base, dict(tag=base, step=step))
                row[suffix[1:]] = value
                row["step"] = max(row["step"], step)
    out = []
    for base, row in rows.items():
        if "sparsity" not in row:
            continue
        if params.get(base):
            row["params"] = params[base]
        out.append(row)
    return out
