"""Making schedules and sparsity visible: event lists, tables and plots.

These answer the questions users ask: at which steps are masks recomputed,
to what sparsity, and how sparse is each layer now.
"""

import collections
import textwrap

import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.core import schedules as schedules_lib


def _check_stop(stop):
    """`stop` as an int in [0, 2**62] (far past any int32 step, and no
    int64 overflow in the step arithmetic), or None."""
    if stop is None:
        return None
    if isinstance(stop, (bool, np.bool_)) or not isinstance(
        stop, (int, np.integer)
    ):
        raise TypeError(
            f"stop must be None or an integer step, got {stop!r} of type "
            f"{type(stop).__name__}."
        )
    if not 0 <= stop <= 1 << 62:
        raise ValueError(f"stop must be in [0, 2**62], got {stop}.")
    return int(stop)


def default_horizon(schedule):
    """A step range that shows the whole schedule: past its last update."""
    begin = getattr(schedule, "begin_step", 0)
    end = getattr(schedule, "end_step", -1)
    frequency = getattr(schedule, "frequency", 100)
    if end is not None and end >= 0:
        return end + 2 * frequency
    return begin + 10 * frequency


# The one schedule scan lives with the schedules.
sparsity_curve = schedules_lib.evaluate_steps
_update_steps = schedules_lib.update_steps

# Steps evaluated at once when scanning a schedule step by step.
_CHUNK = 1 << 16


def _events_at(schedule, steps):
    steps = np.asarray(steps, dtype=np.int64)
    should_prune, sparsity = sparsity_curve(schedule, steps)
    return [
        (int(st), round(float(v), 6))
        for st, v, p in zip(steps, sparsity, should_prune)
        if p
    ]


def _scan(schedule, start, stop):
    """Yields the update events of `[start, stop)`, a chunk at a time."""
    for lo in range(int(start), int(stop), _CHUNK):
        yield from _events_at(
            schedule, np.arange(lo, min(lo + _CHUNK, int(stop)))
        )


def event_summary(schedule, stop=None, start=0, head=6, tail=6):
    """Counts the mask updates in `[start, stop)`; lists the first and last.

    Memory does not grow with the number of steps or updates; time is
    constant for built-in schedules (their updates are computed, not
    searched) and linear in `stop - start` for custom ones.

    Returns:
        `(count, first_events, last_events)`: the first `head` and the last
        `tail` `(step, sparsity)` pairs (overlapping when `count` is small).
    """
    stop = default_horizon(schedule) if stop is None else stop
    rule = _update_steps(schedule, start, stop)
    if rule is not None:
        first, frequency, count = rule
        k_head = np.arange(min(head, count), dtype=np.int64)
        k_tail = np.arange(max(count - tail, 0), count, dtype=np.int64)
        return (
            count,
            _events_at(schedule, first + frequency * k_head),
            _events_at(schedule, first + frequency * k_tail),
        )
    count, first_events = 0, []
    last_events = collections.deque(maxlen=max(int(tail), 0))
    for event in _scan(schedule, start, stop):
        count += 1
        if len(first_events) < head:
            first_events.append(event)
        if tail > 0:
            last_events.append(event)
    return count, first_events, list(last_events)


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
    schedule = schedules_lib.get(schedule)  # a string or config too
    stop = default_horizon(schedule) if stop is None else stop
    rule = _update_steps(schedule, start, stop)
    if rule is not None:  # memory in the number of updates, not of steps
        first, frequency, count = rule
        return _events_at(
            schedule, first + frequency * np.arange(count, dtype=np.int64)
        )
    return list(_scan(schedule, start, stop))


@keywords_checked
def describe_schedule(schedule, stop=None, max_rows=12):
    """A text table of the mask updates of `schedule`, condensed when long.

    Args:
        schedule: A `PruningSchedule`.
        stop: First step not shown (default: past the last update).
        max_rows: Show at most this many updates (first and last halves);
            a positive int.

    Returns:
        str.
    """
    schedule = schedules_lib.get(schedule)  # a string or config too
    if (
        isinstance(max_rows, bool)
        or not isinstance(max_rows, (int, np.integer))
        or max_rows < 1
    ):
        raise ValueError(
            f"max_rows must be a positive integer, got {max_rows!r}."
        )
    stop = _check_stop(stop)
    head, tail = (max_rows + 1) // 2, max_rows // 2
    count, first_events, last_events = event_summary(
        schedule, stop, head=max_rows + 1, tail=max(tail, 1)
    )
    lines = [f"{schedule!r}", ""]
    if not count:
        lines.append(
            "No mask update before step %d."
            % (default_horizon(schedule) if stop is None else stop)
        )
        return "\n".join(lines)
    lines.append(
        f"{count} mask updates; sparsity = fraction of each "
        "pruned tensor set to zero"
    )
    lines.append(f"{'step':>10}  {'sparsity':>9}  {'kept of 1000':>12}")
    shown = first_events
    if count > max_rows:
        shown = (
            first_events[:head]
            + [None]
            + (last_events[len(last_events) - tail :] if tail else [])
        )
    from keras_prune.core.masks import kept_count

    for event in shown:
        if event is None:
            lines.append(f"{'...':>10}  ({count - head - tail} more)")
            continue
        step, s = event
        kept = int(np.asarray(kept_count(1000, np.float32(s))))
        lines.append(f"{step:>10}  {s:>9.6f}  {kept:>12}")
    last_step, last_s = (last_events or first_events)[-1]
    end = getattr(schedule, "end_step", -1)
    if end is not None and end >= 0:
        lines.append(
            f"After step {last_step} the masks stay fixed at sparsity "
            f"{last_s:.6f}."
        )
    return "\n".join(lines)


@keywords_checked
def plot_schedule(
    schedule, path=None, stop=None, ax=None, actual=None, title=None
):
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
    schedule = schedules_lib.get(schedule)  # a string or config too
    try:
        import matplotlib

        if path is not None and ax is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_schedule needs matplotlib: pip install 'keras-prune[plot]'"
        ) from None
    if path is not None:
        from keras_prune.monitoring import plots

        plots.check_plot_path(path)
    stop = _check_stop(stop)
    stop = default_horizon(schedule) if stop is None else stop
    steps = np.linspace(0, stop, num=min(stop + 1, 2000)).astype(np.int64)
    _, target = sparsity_curve(schedule, steps)
    rule = _update_steps(schedule, 0, stop + 1)
    if rule is not None and rule[2] > 5000:
        # Too many updates to draw one by one: 5000 of them, evenly spread.
        first, frequency, count = rule
        k = np.unique(np.linspace(0, count - 1, 5000).astype(np.int64))
        events = _events_at(schedule, first + frequency * k)
    else:
        events = schedule_events(schedule, stop + 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    else:
        fig = ax.figure
    ax.plot(
        steps,
        target,
        color="0.6",
        lw=1.2,
        ls="--",
        label="schedule target (what schedule(step) returns)",
    )
    if events:
        ev_steps = np.array([e[0] for e in events])
        ev_values = np.array([e[1] for e in events])
        # Effective sparsity: holds the last update's value until the next.
        eff_x = np.concatenate([[0], ev_steps, [stop]])
        eff_y = np.concatenate([[0.0], ev_values, [ev_values[-1]]])
        ax.step(
            eff_x,
            eff_y,
            where="post",
            color="C0",
            lw=2,
            label="masks in effect",
        )
        ax.plot(
            ev_steps,
            ev_values,
            "o",
            color="C3",
            ms=4,
            label=f"mask update ({len(events)})",
        )
        first_step, first_value = events[0]
        ax.annotate(
            f"first update, step {first_step}:\n"
            f"{first_value:.0%} of each tensor pruned",
            xy=(first_step, first_value),
            xytext=(0.04, 0.78),
            textcoords="axes fraction",
            arrowprops=dict(arrowstyle="->", color="0.3"),
            fontsize=8,
        )
    if actual is not None:
        ax.plot(
            actual[0],
            actual[1],
            color="C2",
            lw=1.5,
            label="measured during training",
        )
    ax.set_xlabel("training step (batches completed)")
    ax.set_ylabel("sparsity (fraction of weights = 0)")
    ax.set_ylim(-0.02, 1.0)
    ax.set_xlim(0, stop)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(textwrap.fill(title or repr(schedule), 80), fontsize=8)
    fig.tight_layout()
    if path is not None:
        from keras_prune.monitoring import plots

        plots.save_figure(fig, path)
    return fig


_BLOCK_SHAPES = sorted(
    [(r, c) for r in (1, 2, 4, 8, 16) for c in (1, 2, 4, 8, 16) if r * c > 1],
    key=lambda b: (-b[0] * b[1], b),
)


def _padded_groups(nonzero, axis_len, size):
    groups = -(-axis_len // size)
    padded = np.zeros(nonzero.shape[:-1] + (groups * size,), dtype=bool)
    padded[..., :axis_len] = nonzero
    return padded.reshape(nonzero.shape[:-1] + (groups, size))


def weight_pattern(value, axis=None):
    """The sparsity pattern of a weight tensor, as a short string.

    Checked in this order (first match wins):

    - `'dense'`: no zeros; `'all zero'`: nothing but zeros;
    - `'channel k/C'`: every zero lies in one of `k` whole output channels
      (last axis) that are entirely zero;
    - `'N:M'`: along the input axis (axis -2 of a rank >= 2 kernel, as
      Dense `(in, out)` and Conv `(..., in, out)`), every group of `M`
      consecutive weights holds at most `N < M` non-zeros, and almost all
      (99%) hold exactly `N` (so random sparsity is not mistaken for N:M);
      `M` in 2, 4, 8, 16, smallest first;
      `axis` (an int, or a tuple flattened in C order;
      `patterns.contracted_axes`) replaces axis -2;
    - `'block RxC'`: over the last two axes, cut into `R x C` blocks (edge
      blocks padded), every block is all zero or free of zeros; the largest
      block area wins;
    - `'unstructured'`.

    Args:
        value: NumPy array (or anything `np.asarray` accepts).
        axis: The N:M grouping axes (default -2).

    Returns:
        str.
    """
    value = np.asarray(value)
    nonzero = value != 0
    nnz = int(np.count_nonzero(nonzero))
    if nnz == value.size:
        return "dense"
    if nnz == 0:
        return "all zero"
    if value.ndim < 2:
        return "unstructured"
    channels = nonzero.reshape(-1, value.shape[-1])
    live = channels.any(axis=0)
    if not live.all() and channels[:, live].all():
        return f"channel {int((~live).sum())}/{live.size}"
    axes = (
        (-2,)
        if axis is None
        else ((axis,) if isinstance(axis, (int, np.integer)) else tuple(axis))
    )
    axes = tuple(sorted({int(a) % value.ndim for a in axes}))
    rest = tuple(i for i in range(value.ndim) if i not in axes)
    by_input = np.transpose(nonzero, rest + axes)
    by_input = by_input.reshape(by_input.shape[: len(rest)] + (-1,))
    length = by_input.shape[-1]
    for m in (2, 4, 8, 16):
        if length < m:
            break
        groups = _padded_groups(by_input, length, m)
        counts = groups.sum(axis=-1)
        n = int(counts.max())
        if n < m and int(np.count_nonzero(counts == n)) >= 0.99 * counts.size:
            return f"{n}:{m}"
    rows, cols = value.shape[-2], value.shape[-1]
    lead = value.shape[:-2]
    for br, bc in _BLOCK_SHAPES:
        if br > rows or bc > cols:
            continue
        nr, nc = -(-rows // br), -(-cols // bc)
        padded = np.ones(lead + (nr * br, nc * bc), dtype=bool)
        padded[..., :rows, :cols] = nonzero
        blocks = padded.reshape(lead + (nr, br, nc, bc))
        axes = (len(lead) + 1, len(lead) + 3)
        full = blocks.all(axis=axes)
        empty = ~blocks.any(axis=axes)
        # Edge blocks are padded with ones: an edge block counts as empty
        # when its valid part is all zero.
        valid = np.zeros((nr * br, nc * bc), dtype=bool)
        valid[:rows, :cols] = True
        valid = valid.reshape(nr, br, nc, bc)
        empty = ~(blocks & valid).any(axis=axes)
        if empty.any() and (full | empty).all():
            return f"block {br}x{bc}"
    return "unstructured"


def _tensor_sizes(value):
    import gzip

    from keras_prune.export._format import compress_array

    raw = np.ascontiguousarray(value).tobytes()
    return dict(
        dense_bytes=len(raw),
        gzip_bytes=len(gzip.compress(raw, compresslevel=9, mtime=0)),
        compressed_bytes=len(compress_array(value)),
    )


def _check_model(model, name):
    import keras

    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"{name} expects a keras.Model (or layer), got {model!r:.80} of "
            f"type {type(model).__name__}."
        )


@keywords_checked
def sparsity_report(model, sizes=False, pattern=True):
    """Per-weight sparsity of a model: pruned or stripped, any backend.

    Covers every pruned weight and every other weight of rank >= 2
    (kernels, embeddings), with the masks of a model still being pruned
    applied.

    Args:
        model: A Keras model.
        sizes: Also measure each tensor's size: `dense_bytes` (as stored
            uncompressed), `gzip_bytes` (`gzip -9` of those bytes) and
            `compressed_bytes` (`keras_prune.compress_array`). Takes about a
            second per million weights.
        pattern: Add `pattern` (see `weight_pattern`: `'unstructured'`,
            `'2:4'`, `'block 4x4'`, `'channel 3/64'`, ...).

    Returns:
        List of dicts with keys `layer`, `weight`, `shape`, `dtype`,
        `params`, `zeros`, `sparsity`, `pruned` (whether a mask covers the
        weight), then `pattern` and the size keys when asked for. The rows
        work with `pandas.DataFrame(rows)`.
    """
    _check_model(model, "sparsity_report")
    import keras

    from keras_prune.integration.state import pruning_wrappers

    masked = {}
    for wrapper in pruning_wrappers(model):
        for w, m in zip(wrapper.pruned_weights, wrapper.masks):
            masked[id(w)] = (wrapper.layer.name, m)
    rows, seen = [], set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for v in layer._trainable_variables + layer._non_trainable_variables:
            if id(v) in seen:
                # Tracked by two layers (`SpectralNormalization` holds its
                # layer's kernel as its own): one row, not two.
                continue
            seen.add(id(v))
            if v.name.endswith(("_mask", "_threshold")) or v.dtype == "bool":
                continue
            if v.name in (
                "pruning_step",
                "nonfinite_count",
                "seed_generator_state",
            ):
                continue
            if len(v.shape) < 2 and id(v) not in masked:
                continue
            value = np.asarray(keras.ops.convert_to_numpy(v))
            if id(v) in masked:
                keep = np.asarray(keras.ops.convert_to_numpy(masked[id(v)][1]))
                value = np.where(keep, value, 0)
            zeros = int(value.size - np.count_nonzero(value))
            row = dict(
                layer=layer.name,
                weight=v.name,
                shape=tuple(v.shape),
                dtype=str(value.dtype),
                params=int(value.size),
                zeros=zeros,
                sparsity=zeros / value.size if value.size else 0.0,
                pruned=id(v) in masked,
            )
            if pattern:
                from keras_prune.core import patterns

                row["pattern"] = weight_pattern(
                    value,
                    axis=patterns.contracted_axes(layer, v)
                    if value.ndim >= 2
                    else None,
                )
            if sizes:
                row.update(_tensor_sizes(value))
            rows.append(row)
    return rows


def report_totals(rows):
    """Sums of `params`, `zeros` (and sizes, when present) over `rows`."""
    params = sum(r["params"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    total = dict(
        layer="total",
        params=params,
        zeros=zeros,
        sparsity=zeros / params if params else 0.0,
    )
    for key in ("dense_bytes", "gzip_bytes", "compressed_bytes"):
        if rows and all(key in r for r in rows):
            total[key] = sum(r[key] for r in rows)
    return total


def format_report(rows):
    """Formats `sparsity_report` rows as a text table with a total line.

    Columns for `pattern` and the sizes appear when the rows have them.

    Args:
        rows: What `sparsity_report` returns (a list of dicts).

    Returns:
        str.

    Raises:
        TypeError: `rows` is not a list of such dicts (it ended in
            "'NoneType' object is not iterable").
    """
    needed = {"layer", "weight", "shape", "params", "zeros", "sparsity"}
    if not isinstance(rows, (list, tuple)) or not all(
        isinstance(r, dict) and needed <= r.keys() for r in rows
    ):
        raise TypeError(
            "format_report takes the rows `sparsity_report(model)` returns "
            f"(a list of dicts with keys {sorted(needed)}), got "
            f"{type(rows).__name__}: {str(rows)[:100]}"
        )
    has_pattern = bool(rows) and all("pattern" in r for r in rows)
    size_keys = [
        k
        for k in ("dense_bytes", "gzip_bytes", "compressed_bytes")
        if rows and all(k in r for r in rows)
    ]
    size_titles = {
        "dense_bytes": "dense B",
        "gzip_bytes": "gzip B",
        "compressed_bytes": "ours B",
    }
    header = (
        f"{'layer':<28} {'weight':<18} {'shape':<16} {'params':>9} "
        f"{'zeros':>9} {'sparsity':>8}"
    )
    if has_pattern:
        header += f"  {'pattern':<14}"
    for k in size_keys:
        header += f" {size_titles[k]:>10}"
    lines = [header, "-" * len(header)]

    def tail(r, total=False):
        out = ""
        if has_pattern:
            out += f"  {'' if total else r['pattern'][:14]:<14}"
        for k in size_keys:
            out += f" {r[k]:>10}"
        return out

    for r in rows:
        lines.append(
            f"{r['layer'][:28]:<28} {r['weight'][:18]:<18} "
            f"{str(r['shape']):<16} {r['params']:>9} {r['zeros']:>9} "
            f"{r['sparsity']:>8.4f}" + tail(r)
        )
    total = report_totals(rows)
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<28} {'':<18} {'':<16} {total['params']:>9} "
        f"{total['zeros']:>9} {total['sparsity']:>8.4f}" + tail(total, True)
    )
    return "\n".join(lines)


@keywords_checked
def pruning_plan(model, skip_unsupported=True):
    """Every weight of a model: pruned or not, and why.

    For a model pruned with `prune_low_magnitude` (or `prune_once`), a
    weight is pruned when a mask covers it; for an unpruned model, when
    `prune_low_magnitude(model)` with its defaults would prune it. Skipped
    weights say why: rank < 2 (biases, normalization scales and offsets,
    layer scales, class tokens), a layer left dense by default (keras-hub's
    `PositionEmbedding`), a layer `layers=` or the schedule left out, an
    unknown layer (with `skip_unsupported`). Pruned weights say what they
    are (kernel, embedding table, tied token embedding, untied LM head),
    and warn when N:M cannot prune them or when `allocation='global'` holds
    them at its guard's floor.

    Args:
        model: A Keras model or layer, pruned or not.
        skip_unsupported: With False, an unknown layer holding a weight of
            rank >= 2 raises `UnsupportedLayerError`, as pruning does.

    Returns:
        List of dicts with keys `layer` (the layer holding the weight),
        `weight`, `shape`, `pruned` (bool) and `reason`, one per float
        variable, in model order.

    Example:

    ```python
    print(keras_prune.format_pruning_plan(keras_prune.pruning_plan(pruned)))
    ```
    """
    _check_model(model, "pruning_plan")
    from keras_prune.core import patterns
    from keras_prune.integration import groups
    from keras_prune.integration import registry
    from keras_prune.integration.state import pruning_wrappers

    groups.link(model)
    wrappers = pruning_wrappers(model)
    wrapper_of = {}
    for wrapper in wrappers:
        for v in wrapper.pruned_weights:
            wrapper_of[id(v)] = wrapper
    guarded = {}
    for wrapper in wrappers:
        group = getattr(wrapper, "_group", None)
        if group is not None and group.allocation == "global":
            for _layer, weight, kept, floor in group.guarded():
                guarded[weight] = (kept, floor)
    rows = []
    for owner, v, would_prune, reason in registry.weight_decisions(
        model, skip_unsupported
    ):
        if "float" not in str(v.dtype):
            continue
        wrapper = wrapper_of.get(id(v))
        pruned = would_prune if not wrappers else wrapper is not None
        if wrappers and would_prune and wrapper is None:
            reason = (
                "not selected: left out by `layers=`, the schedule mapping "
                "or the pruning policy, or never called by the model (a "
                "layer of a model it holds but uses only in part, as "
                "BASNet's ResNet stem)"
            )
        elif wrapper is not None and not would_prune:
            reason = "get_prunable_weights()"
        if wrapper is not None and wrapper.sparsity_m_by_n is not None:
            why = patterns.m_by_n_inapplicable(
                owner, v, wrapper.sparsity_m_by_n
            )
            if why is not None:
                reason += f"; WARNING: {why} (stays dense)"
            else:
                axis = patterns.contracted_axes(owner, v)
                reason += (
                    f"; {wrapper.sparsity_m_by_n[0]}:"
                    f"{wrapper.sparsity_m_by_n[1]} along axes {axis}"
                )
                if _is_depthwise_kernel(owner, v):
                    reason += (
                        " (the channels, as tfmot; a depthwise kernel "
                        "sums only over its window, so N:M sparse matrix "
                        "hardware cannot use this pattern)"
                    )
        path = v.path or v.name
        if path in guarded:
            kept, floor = guarded[path]
            reason += (
                f"; held at the global guard's floor ({kept} kept, one per "
                "output channel; max_sparsity=1.0 lifts it)"
            )
        rows.append(
            dict(
                layer=owner.name,
                weight=v.name,
                shape=tuple(int(d) for d in v.shape),
                pruned=bool(pruned),
                reason=reason,
            )
        )
    return rows


def _is_depthwise_kernel(layer, weight):
    """Whether `weight` is a depthwise kernel `(..., channels, multiplier)`:
    its product sums over the window only, never across channels."""
    import keras

    name = weight.name
    if name == "depthwise_kernel":
        return True
    return name == "kernel" and isinstance(
        layer,
        (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D),
    )


def format_pruning_plan(rows):
    """Formats `pruning_plan` rows as a text table, pruned weights first.

    Args:
        rows: What `pruning_plan` returns (a list of dicts).

    Returns:
        str.
    """
    if not isinstance(rows, (list, tuple)) or not all(
        isinstance(r, dict) and {"layer", "weight", "pruned"} <= r.keys()
        for r in rows
    ):
        raise TypeError(
            "format_pruning_plan takes the rows `pruning_plan(model)` "
            f"returns (a list of dicts), got {type(rows).__name__}: "
            f"{rows!r:.80}."
        )
    header = f"{'layer':<30} {'weight':<20} {'shape':<16} {'pruned':<6}  reason"
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: not r["pruned"]):
        lines.append(
            f"{r['layer'][:30]:<30} {r['weight'][:20]:<20} "
            f"{str(r['shape']):<16} {'yes' if r['pruned'] else 'no':<6}  "
            f"{r['reason']}"
        )
    n = sum(r["pruned"] for r in rows)
    lines.append("-" * len(header))
    lines.append(f"{n} weights pruned, {len(rows) - n} skipped")
    return "\n".join(lines)
