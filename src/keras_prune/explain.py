"""Making schedules and sparsity visible: event lists, tables and plots.

These answer the questions users ask: at which steps are masks recomputed,
to what sparsity, and how sparse is each layer now.
"""

import textwrap

import numpy as np

from keras_prune import schedules as schedules_lib


def default_horizon(schedule):
    """A step range that shows the whole schedule: past its last update."""
    begin = getattr(schedule, "begin_step", 0)
    end = getattr(schedule, "end_step", -1)
    frequency = getattr(schedule, "frequency", 100)
    if end is not None and end >= 0:
        return end + 2 * frequency
    return begin + 10 * frequency


def sparsity_curve(schedule, steps):
    """Evaluates `schedule` at each step on the host.

    Args:
        schedule: A `PruningSchedule`.
        steps: 1-D array of integer steps.

    Returns:
        `(should_prune, sparsity)`: bool and float32 NumPy arrays.
    """
    steps = np.asarray(steps, dtype=np.int64)
    if schedule.in_graph:  # built-ins evaluate vectorised on NumPy arrays
        should_prune, sparsity = schedule(steps)
        return (
            np.broadcast_to(np.asarray(should_prune, bool), steps.shape),
            np.broadcast_to(np.asarray(sparsity, np.float32), steps.shape),
        )
    values = [schedules_lib.evaluate(schedule, int(s)) for s in steps]
    return (
        np.array([v[0] for v in values], dtype=bool),
        np.array([v[1] for v in values], dtype=np.float32),
    )


def schedule_events(schedule, stop=None, start=0):
    """The steps at which masks are recomputed, with the sparsity at each.

    Args:
        schedule: A `PruningSchedule`.
        stop: First step not considered (default: past the last update).
        start: First step considered.

    Returns:
        List of `(step, sparsity)` pairs.

    Example:

    >>> keras_prune.schedule_events(keras_prune.ConstantSparsity(0.5, 0, 200))
    [(0, 0.5), (100, 0.5), (200, 0.5)]
    """
    stop = default_horizon(schedule) if stop is None else stop
    steps = np.arange(start, stop, dtype=np.int64)
    should_prune, sparsity = sparsity_curve(schedule, steps)
    return [
        (int(s), round(float(v), 6))
        for s, v in zip(steps[should_prune], sparsity[should_prune])
    ]


def describe_schedule(schedule, stop=None, max_rows=12):
    """A text table of the mask updates of `schedule`, condensed when long.

    Args:
        schedule: A `PruningSchedule`.
        stop: First step not shown (default: past the last update).
        max_rows: Show at most this many updates (first and last halves).

    Returns:
        str.
    """
    events = schedule_events(schedule, stop)
    lines = [f"{schedule!r}", ""]
    if not events:
        lines.append("No mask update before step %d." % (
            default_horizon(schedule) if stop is None else stop))
        return "\n".join(lines)
    lines.append(f"{len(events)} mask updates; sparsity = fraction of each "
                 "pruned tensor set to zero")
    lines.append(f"{'step':>10}  {'sparsity':>9}  {'kept of 1000':>12}")
    shown = events
    if len(events) > max_rows:
        half = max_rows // 2
        shown = events[:half] + [None] + events[-half:]
    from keras_prune.masks import kept_count

    for event in shown:
        if event is None:
            lines.append(f"{'...':>10}  ({len(events) - 2 * half} more)")
            continue
        step, s = event
        kept = int(np.asarray(kept_count(1000, np.float32(s))))
        lines.append(f"{step:>10}  {s:>9.6f}  {kept:>12}")
    last_step, last_s = events[-1]
    end = getattr(schedule, "end_step", -1)
    if end is not None and end >= 0:
        lines.append(
            f"After step {last_step} the masks stay fixed at sparsity "
            f"{last_s:.6f}."
        )
    return "\n".join(lines)


def plot_schedule(schedule, path=None, stop=None, ax=None, actual=None,
                  title=None):
    """Draws sparsity over steps, with the mask updates marked.

    The line is the schedule's target; the dots are the steps at which masks
    are recomputed, which is when the target takes effect. Between dots the
    masks do not change.

    Args:
        schedule: A `PruningSchedule`.
        path: Optional PNG path to write.
        stop: Last step drawn (default: past the last update).
        ax: Optional matplotlib Axes to draw into.
        actual: Optional `(steps, sparsity)` measured during training, drawn
            as a step line on top.
        title: Optional title (default: the schedule's repr).

    Returns:
        The matplotlib Figure.

    Raises:
        ImportError: matplotlib is not installed (`pip install
            keras-prune[plot]`).
    """
    try:
        import matplotlib

        if path is not None and ax is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_schedule needs matplotlib: pip install 'keras-prune[plot]'"
        ) from None
    stop = default_horizon(schedule) if stop is None else stop
    steps = np.linspace(0, stop, num=min(stop + 1, 2000)).astype(np.int64)
    _, target = sparsity_curve(schedule, steps)
    events = schedule_events(schedule, stop + 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    else:
        fig = ax.figure
    ax.plot(steps, target, color="0.6", lw=1.2, ls="--",
            label="schedule target (what schedule(step) returns)")
    if events:
        ev_steps = np.array([e[0] for e in events])
        ev_values = np.array([e[1] for e in events])
        # Effective sparsity: holds the last update's value until the next.
        eff_x = np.concatenate([[0], ev_steps, [stop]])
        eff_y = np.concatenate([[0.0], ev_values, [ev_values[-1]]])
        ax.step(eff_x, eff_y, where="post", color="C0", lw=2,
                label="masks in effect")
        ax.plot(ev_steps, ev_values, "o", color="C3", ms=4,
                label=f"mask update ({len(events)})")
        first_step, first_value = events[0]
        ax.annotate(
            f"first update, step {first_step}:\n"
            f"{first_value:.0%} of each tensor pruned",
            xy=(first_step, first_value),
            xytext=(0.04, 0.78), textcoords="axes fraction",
            arrowprops=dict(arrowstyle="->", color="0.3"), fontsize=8,
        )
    if actual is not None:
        ax.plot(actual[0], actual[1], color="C2", lw=1.5,
                label="measured during training")
    ax.set_xlabel("training step (batches completed)")
    ax.set_ylabel("sparsity (fraction of weights = 0)")
    ax.set_ylim(-0.02, 1.0)
    ax.set_xlim(0, stop)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(textwrap.fill(title or repr(schedule), 80), fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def sparsity_report(model):
    """Per-weight sparsity of a model: pruned or stripped, any backend.

    Args:
        model: A Keras model.

    Returns:
        List of dicts with keys `layer`, `weight`, `shape`, `params`,
        `zeros`, `sparsity`, `pruned` (whether a mask covers the weight). The
        rows work with `pandas.DataFrame(rows)`.
    """
    import keras

    from keras_prune.strip import pruning_wrappers

    masked = {}
    for wrapper in pruning_wrappers(model):
        for w, m in zip(wrapper.pruned_weights, wrapper.masks):
            masked[id(w)] = (wrapper.layer.name, m)
    rows = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for v in layer._trainable_variables + layer._non_trainable_variables:
            if v.name.endswith(("_mask", "_threshold")) or v.dtype == "bool":
                continue
            if v.name in ("pruning_step", "nonfinite_count", "seed_generator_state"):
                continue
            if len(v.shape) < 2 and id(v) not in masked:
                continue
            value = np.asarray(keras.ops.convert_to_numpy(v))
            if id(v) in masked:
                keep = np.asarray(keras.ops.convert_to_numpy(masked[id(v)][1]))
                value = np.where(keep, value, 0)
            zeros = int(value.size - np.count_nonzero(value))
            rows.append(dict(
                layer=layer.name, weight=v.name, shape=tuple(v.shape),
                params=int(value.size), zeros=zeros,
                sparsity=zeros / value.size if value.size else 0.0,
                pruned=id(v) in masked,
            ))
    return rows


def format_report(rows):
    """Formats `sparsity_report` rows as a text table with a total line."""
    header = f"{'layer':<28} {'weight':<18} {'shape':<16} {'params':>9} " \
             f"{'zeros':>9} {'sparsity':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['layer'][:28]:<28} {r['weight'][:18]:<18} "
            f"{str(r['shape']):<16} {r['params']:>9} {r['zeros']:>9} "
            f"{r['sparsity']:>8.4f}"
        )
    params = sum(r["params"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<28} {'':<18} {'':<16} {params:>9} {zeros:>9} "
        f"{zeros / params if params else 0:>8.4f}"
    )
    return "\n".join(lines)
