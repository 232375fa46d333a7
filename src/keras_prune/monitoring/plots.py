"""Plots of pruning results: per-weight sparsity, and sparsity over training.

Needs matplotlib (`pip install 'keras-prune[plot]'`). With `path=...` the
figure is drawn off-screen (no pyplot, no GUI backend needed) and saved as
PNG; without, it is a pyplot figure, shown inline in notebooks.
"""

import json
import os
import textwrap

import numpy as np

from keras_prune import _files
from keras_prune.core import schedules as schedules_lib
from keras_prune.monitoring import events
from keras_prune.monitoring import explain
from keras_prune.monitoring import stats


def check_plot_path(path):
    """Refuses a plot destination matplotlib would misuse, before drawing.

    A folder (`savefig('.')` wrote a hidden `..png` next to it), a file in
    a missing folder, a path that is neither str nor os.PathLike, or an
    extension matplotlib cannot write. A name without extension gets
    matplotlib's default (`.png`).

    Raises:
        TypeError, ValueError, FileNotFoundError: naming `path` and the fix.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(
            "a plot path must be a str or os.PathLike, got "
            f"{type(path).__name__}: {path!r:.80}."
        )
    text = os.fsdecode(os.fspath(path))
    if not text or os.path.isdir(text):
        raise ValueError(
            f"plot path {text!r} is a folder (or empty); give a file name "
            f"such as {os.path.join(text, 'plot.png')!r}."
        )
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            2,
            f"the folder {folder!r} of the plot does not exist; create "
            "it first",
            text,
        )
    ext = os.path.splitext(text)[1].lower().lstrip(".")
    if ext:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if ext not in formats:
            raise ValueError(
                f"plot path {text!r}: matplotlib cannot write {ext!r} "
                f"files; use one of {sorted(formats)} (e.g. .png)."
            )


def save_figure(fig, path):
    """`fig.savefig(path)`, atomically (`_files.atomic_output`).

    A name without extension gets matplotlib's default format and its
    extension, as `savefig` gives it (`"plot"` writes `plot.png`).

    Args:
        fig: A matplotlib `Figure`.
        path: A destination checked by `check_plot_path`.
    """
    path = os.fsdecode(os.fspath(path))
    if not os.path.splitext(path)[1]:
        import matplotlib

        path += "." + matplotlib.rcParams["savefig.format"]
    with _files.atomic_output(path) as tmp:
        fig.savefig(tmp)


def _new_figure(path, figsize, ncols=1):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "keras_prune.monitoring.plots needs matplotlib: "
            "pip install 'keras-prune[plot]'"
        ) from None
    if path is not None:
        check_plot_path(path)
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, dpi=110)
        axes = fig.subplots(1, ncols)
    else:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, ncols, figsize=figsize, dpi=110)
    return fig, axes


def _is_path(x):
    return isinstance(x, (str, os.PathLike))


# ------------------------------------------------------------ per weight


def layer_sparsity_rows(model_or_rows):
    """Rows for `plot_layer_sparsity`, from whatever it was given.

    Args:
        model_or_rows: A pruned model (each pruned weight, measured now), a
            stripped or plain model (every weight of rank >= 2, as
            `keras_prune.sparsity_report`), a `PruningSummaries` log
            directory (the last logged values), or a list of row dicts
            (`pruned_weight_stats`, `sparsity_report`) with at least
            `sparsity` and `tag` or `layer` + `weight`.

    Returns:
        List of dicts with `tag`, `sparsity`, and when known `params`,
        `zeros`, `target_sparsity`.
    """
    if _is_path(model_or_rows):
        scalars = events.read_scalars(model_or_rows)
        rows = stats.weight_rows_from_logs(
            scalars, events.read_config(model_or_rows)
        )
        if not rows:
            raise ValueError(
                f"No per-weight pruning scalars under {model_or_rows!r} "
                "(written by keras_prune.PruningSummaries)."
            )
    elif hasattr(model_or_rows, "_flatten_layers"):
        from keras_prune.integration.state import pruning_wrappers

        if pruning_wrappers(model_or_rows):
            rows = stats.pruned_weight_stats(model_or_rows)
        else:
            rows = explain.sparsity_report(model_or_rows)
    else:
        rows = [dict(r) for r in model_or_rows]
        if any(r.get("pruned") for r in rows):
            rows = [r for r in rows if r.get("pruned")]
    out = []
    for r in rows:
        r = dict(r)
        r.setdefault("tag", f"{r.get('layer')}/{r.get('weight')}")
        out.append(r)
    return out


def plot_layer_sparsity(model_or_rows, path=None, ax=None, title=None):
    """Bar chart of the sparsity of each pruned weight.

    Each bar is the fraction of zeros of a weight (of `weight * mask` for a
    pruned model); a black tick marks the schedule's target where known.

    Args:
        model_or_rows: A model (pruned or stripped), a `PruningSummaries`
            log directory, or rows (see `layer_sparsity_rows`).
        path: Optional PNG path to write.
        ax: Optional matplotlib Axes to draw into.
        title: Optional title.

    Returns:
        The matplotlib Figure.

    Example:

    ```python
    keras_prune.monitoring.plots.plot_layer_sparsity(pruned_model, "layers.png")
    ```
    """
    rows = layer_sparsity_rows(model_or_rows)
    n = len(rows)
    if ax is None:
        fig, ax = _new_figure(path, (7, 1.4 + 0.34 * max(n, 3)))
    else:
        fig = ax.figure
    y = np.arange(n)
    values = np.array([r["sparsity"] for r in rows], dtype=float)
    ax.barh(y, values, color="C0", height=0.6, label="sparsity (zeros)")
    targets = [
        (i, r["target_sparsity"])
        for i, r in enumerate(rows)
        if r.get("target_sparsity") is not None
    ]
    if targets:
        ax.plot(
            [t for _, t in targets],
            [i for i, _ in targets],
            "|",
            color="k",
            ms=14,
            mew=2,
            label="schedule target",
        )
    for i, r in enumerate(rows):
        text = f"{r['sparsity']:.2%}"
        if r.get("zeros") is not None and r.get("params"):
            text += f"  {r['zeros']:,}/{r['params']:,}"
        elif r.get("params"):
            text += f"  of {r['params']:,}"
        ax.text(
            min(r["sparsity"], 1.0) + 0.015, i, text, va="center", fontsize=7
        )
    ax.set_yticks(y)
    ax.set_yticklabels(
        [textwrap.shorten(r["tag"], 38, placeholder="...") for r in rows],
        fontsize=7,
    )
    ax.set_ylim(max(n, 3) - 0.5, -0.5)  # first weight on top
    ax.set_xlim(0, 1.32)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("sparsity (fraction of weights = 0)")
    ax.grid(axis="x", alpha=0.3)
    if n:
        ax.legend(
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=2,
            fontsize=7,
            frameon=False,
        )
    ax.set_title(title or "Sparsity per pruned weight", fontsize=9, loc="left")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ------------------------------------------------------- over training


def _measured_from_history(history, steps_per_epoch):
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or "sparsity" not in logs:
        raise ValueError(
            "No 'sparsity' in the training history: pass "
            "callbacks=[keras_prune.UpdatePruningStep()] to fit, or give a "
            "PruningSummaries log directory."
        )
    values = np.asarray(logs["sparsity"], dtype=float)
    if steps_per_epoch is None:
        steps_per_epoch = (getattr(history, "params", None) or {}).get("steps")
    if not steps_per_epoch:
        raise ValueError(
            "The number of batches per epoch is unknown: pass "
            "steps_per_epoch=..."
        )
    epochs = getattr(history, "epoch", None) or range(len(values))
    steps = (np.asarray(list(epochs)[: len(values)]) + 1) * steps_per_epoch
    return steps, values


def _schedule_from_config(config):
    """The one schedule of a logged config, or None (several / unknown)."""
    if not config:
        return None
    found = {
        json.dumps(w["schedule"], sort_keys=True): w["schedule"]
        for w in config["weights"].values()
    }
    if len(found) != 1:
        return None
    try:
        return schedules_lib.get(next(iter(found.values())))
    except Exception:  # noqa: BLE001 - custom schedule not registered here
        return None


def plot_training_sparsity(
    schedule,
    history_or_logdir,
    path=None,
    steps_per_epoch=None,
    ax=None,
    title=None,
):
    """The schedule, with the model sparsity measured during training on top.

    Args:
        schedule: A `PruningSchedule` (or a string/config for
            `keras_prune.core.schedules.get`). `None` with a log directory: the
            schedule logged by `PruningSummaries` when all weights share one,
            else the logged `model/target_sparsity`.
        history_or_logdir: The `History` returned by `fit` with
            `keras_prune.UpdatePruningStep()` (its per-epoch `sparsity`,
            placed at the step that ends each epoch), or a `PruningSummaries`
            log directory (its `model/sparsity`, at optimizer iterations).
        path: Optional PNG path to write.
        steps_per_epoch: Batches per epoch, for a History whose `params`
            lack `steps` (a dataset of unknown length).
        ax: Optional matplotlib Axes to draw into.
        title: Optional title.

    Returns:
        The matplotlib Figure.

    Example:

    ```python
    history = model.fit(x, y, epochs=10,
                        callbacks=[keras_prune.UpdatePruningStep()])
    from keras_prune.monitoring import plots
    plots.plot_training_sparsity(schedule, history, "train.png")
    ```
    """
    target = None
    if _is_path(history_or_logdir):
        scalars = events.read_scalars(history_or_logdir)
        if "model/sparsity" not in scalars:
            raise ValueError(
                f"No 'model/sparsity' under {history_or_logdir!r} (written "
                "by keras_prune.PruningSummaries)."
            )
        points = scalars["model/sparsity"]
        steps = np.array([s for s, _ in points])
        values = np.array([v for _, v in points])
        if schedule is None:
            schedule = _schedule_from_config(
                events.read_config(history_or_logdir)
            )
            target = scalars.get("model/target_sparsity")
    else:
        steps, values = _measured_from_history(
            history_or_logdir, steps_per_epoch
        )
    if ax is None:
        fig, ax = _new_figure(path, (7, 3.6))
    else:
        fig = ax.figure
    last = int(steps.max()) if steps.size else 0
    if schedule is not None:
        schedule = schedules_lib.get(schedule)
        stop = max(explain.default_horizon(schedule), last)
        explain.plot_schedule(
            schedule, stop=stop, ax=ax, actual=(steps, values), title=title
        )
        if steps.size <= 60:
            ax.plot(steps, values, "o", color="C2", ms=3)
    else:
        _plot_logged_target(ax, target, steps, values, last, title)
    if path is not None:
        save_figure(fig, path)
    return fig


def _plot_logged_target(ax, target, steps, values, last, title):
    if target:
        t_steps = [0] + [s for s, _ in target]
        t_values = [0.0] + [v for _, v in target]
        ax.step(
            t_steps,
            t_values,
            where="post",
            color="C0",
            lw=2,
            label="target (logged model/target_sparsity)",
        )
    ax.plot(
        steps,
        values,
        "o-",
        color="C2",
        lw=1.5,
        ms=3,
        label="measured during training",
    )
    ax.set_xlabel("training step (batches completed)")
    ax.set_ylabel("sparsity (fraction of weights = 0)")
    ax.set_ylim(-0.02, 1.0)
    ax.set_xlim(0, max(last, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Model sparsity over training", fontsize=8)
    ax.figure.tight_layout()


# ----------------------------------------------------------------- report


def plot_report(log_dir, path=None, scalars=None, config=None):
    """Both plots of a `PruningSummaries` run side by side (`report`'s PNG).

    Args:
        log_dir: The run's log directory.
        path: Optional PNG path to write.
        scalars, config: Already read `read_scalars` / `read_config` values.

    Returns:
        The matplotlib Figure.
    """
    scalars = events.read_scalars(log_dir) if scalars is None else scalars
    config = events.read_config(log_dir) if config is None else config
    rows = stats.weight_rows_from_logs(scalars, config)
    fig, (left, right) = _new_figure(
        path, (13, max(4.0, 1.3 + 0.34 * len(rows))), ncols=2
    )
    if "model/sparsity" in scalars:
        plot_training_sparsity(None, log_dir, ax=left)
    else:
        left.text(0.5, 0.5, "no model/sparsity logged", ha="center")
        left.set_axis_off()
    if rows:
        plot_layer_sparsity(rows, ax=right)
    else:
        right.text(0.5, 0.5, "no per-weight sparsity logged", ha="center")
        right.set_axis_off()
    fig.suptitle(f"keras-prune: {os.fspath(log_dir)}", fontsize=9)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
