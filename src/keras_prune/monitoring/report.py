"""`report`: a text table (and optional plots) of a run's pruning logs."""

import os

from keras_prune.monitoring.events import _SUFFIXES
from keras_prune.monitoring.events import event_files
from keras_prune.monitoring.events import read_logs
from keras_prune.monitoring.stats import last_values
from keras_prune.monitoring.stats import weight_rows_from_logs


def report(log_dir, plot=None):
    """A text report of a run's pruning logs; optionally both plots as PNG.

    Args:
        log_dir: The `log_dir` given to `PruningSummaries`.
        plot: Optional PNG path: the training curve (schedule and measured
            model sparsity) next to the per-weight sparsity bars.

    Returns:
        str: a table of the last value of each pruning scalar per weight,
        the model totals, and the last value of every other scalar.

    Raises:
        FileNotFoundError: no event file under `log_dir`.
    """
    if not event_files(log_dir):
        raise FileNotFoundError(
            f"No TensorBoard event files under {os.fspath(log_dir)!r}."
        )
    log_dir = os.fsdecode(os.fspath(log_dir))  # bytes paths are printed
    if plot is not None:
        from keras_prune.monitoring import plots

        plots.check_plot_path(plot)  # before reading the logs
    scalars, config = read_logs(log_dir)
    rows = weight_rows_from_logs(scalars, config)
    last = last_values(scalars)
    lines = [f"log dir: {os.fspath(log_dir)}"]
    if rows:
        header = (
            f"{'weight':<40} {'params':>9} {'sparsity':>8} "
            f"{'target':>8} {'threshold':>11} {'step':>8}"
        )
        lines += ["", header, "-" * len(header)]
        for r in rows:
            lines.append(
                f"{r['tag'][:40]:<40} {r.get('params', ''):>9} "
                f"{r['sparsity']:>8.4f} "
                f"{_fmt(r.get('target_sparsity'), '.4f'):>8} "
                f"{_fmt(r.get('threshold'), '.5g'):>11} {r['step']:>8}"
            )
        lines.append("-" * len(header))
        if "model/sparsity" in last:
            step, value = last["model/sparsity"]
            target = last.get("model/target_sparsity", (None, None))[1]
            total = sum(r.get("params", 0) for r in rows) or ""
            lines.append(
                f"{'model (all pruned weights)':<40} {total:>9} "
                f"{value:>8.4f} {_fmt(target, '.4f'):>8} {'':>11} {step:>8}"
            )
    else:
        lines += ["", "No keras-prune pruning scalars found."]
    pruning = {f"{r['tag']}{s}" for r in rows for s in _SUFFIXES}
    pruning |= {"model/sparsity", "model/target_sparsity"}
    others = sorted(t for t in last if t not in pruning)
    if others:
        lines += ["", "other scalars (last value):"]
        width = min(max(len(t) for t in others), 40)
        for tag in others:
            step, value = last[tag]
            lines.append(f"  {tag:<{width}}  step {step:>8}  {value:.6g}")
    if plot is not None:
        from keras_prune.monitoring import plots

        plots.plot_report(log_dir, path=plot, scalars=scalars, config=config)
        lines += ["", f"wrote {os.fspath(plot)}"]
    return "\n".join(lines)


def _fmt(value, spec):
    return "" if value is None else format(value, spec)
