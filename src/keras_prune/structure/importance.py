"""Group importance: one score per removable unit (channel, head, FFN unit).

A unit's score adds up the scores of its producer entries (the kernel
columns, biases and attention projections that create it). The built-in
scores are `'l2'` (sum of squares, ranks as the L2 norm does) and `'l1'`
(sum of absolute values); any callable `fn(values, axis)` returning one
score per index along `axis` plugs in.
"""

import numbers

import keras
import numpy as np

from keras_prune.structure.graph import PRODUCER


def _l2(values, axis):
    other = tuple(i for i in range(values.ndim) if i != axis)
    return np.sum(np.square(values, dtype=np.float64), axis=other)


def _l1(values, axis):
    other = tuple(i for i in range(values.ndim) if i != axis)
    return np.sum(np.abs(values).astype(np.float64), axis=other)


_BUILTIN = {"l2": _l2, "l1": _l1}


def get_importance(importance):
    """The scoring function named or given by `importance`.

    Args:
        importance: `'l2'`, `'l1'` or a callable `fn(values, axis)` returning
            a 1-D array with one score per index along `axis`.

    Returns:
        The callable.
    """
    if callable(importance):
        return importance
    if importance in _BUILTIN:
        return _BUILTIN[importance]
    raise ValueError(
        f"Unknown importance {importance!r}: use 'l2', 'l1' or a callable "
        "fn(values, axis) -> one score per index along axis."
    )


def unit_scores(graph, importance="l2"):
    """Score of every unit of `graph` from the current weights.

    Args:
        graph: A `DependencyGraph`.
        importance: See `get_importance`.

    Returns:
        Float64 array indexed by element id; entries of units (root ids)
        hold the unit's summed producer score.

    Raises:
        ValueError: a score is NaN or Inf (naming the variable), or of the
            wrong shape.
    """
    fn = get_importance(importance)
    scores = np.zeros(len(graph.roots), dtype=np.float64)
    for slices in graph.slices.values():
        for s in slices:
            if s.role != PRODUCER:
                continue
            values = keras.ops.convert_to_numpy(s.variable)
            per_index = np.asarray(fn(values, s.axis), dtype=np.float64)
            if per_index.shape != (len(s.ids),):
                raise ValueError(
                    f"importance returned shape {per_index.shape} for "
                    f"{s.variable.path} (axis {s.axis}); expected "
                    f"({len(s.ids)},): one score per index along the axis."
                )
            if not np.isfinite(per_index).all():
                # NaN scores sorted last: a diverged layer's NaN channels
                # were kept and its finite ones removed, silently.
                raise ValueError(
                    f"importance of {s.variable.path} holds "
                    f"{int((~np.isfinite(per_index)).sum())} NaN or Inf "
                    "score(s) (its weights hold NaN or Inf, or the scoring "
                    "function overflowed); channels cannot be ranked. Fix "
                    "the training divergence or restore a checkpoint first."
                )
            np.add.at(scores, graph.roots[s.ids], per_index)
    return scores


def select_units(graph, ratio, importance="l2", scores=None):
    """The units to remove: `ratio` of each prunable group, lowest first.

    Each group loses `floor(ratio * size)` units (at most `size - 1`); ties
    go to the earlier unit.

    Args:
        graph: A `DependencyGraph`.
        ratio: Fraction in [0, 1) of every group's units to remove.
        importance: See `get_importance`.
        scores: Precomputed `unit_scores` (optional).

    Returns:
        Sorted int64 array of removed unit ids.
    """
    if isinstance(ratio, (bool, np.bool_)) or not isinstance(
        ratio, (numbers.Real, np.floating, np.integer)
    ):
        # float("0.5") passed before, and True was read as 1.0.
        raise TypeError(
            "ratio must be a number in [0, 1) (the fraction of each group's "
            f"channels to remove), got {ratio!r} of type "
            f"{type(ratio).__name__}."
        )
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(
            f"ratio must be in [0, 1) (the fraction of each group's channels "
            f"to remove); got {ratio}."
        )
    if scores is None:
        scores = unit_scores(graph, importance)
    removed = []
    for group in graph.prunable_groups():
        n = min(int(np.floor(ratio * group.size + 1e-9)), group.size - 1)
        if n <= 0:
            continue
        order = np.lexsort((group.units, scores[group.units]))
        removed.extend(group.units[order[:n]].tolist())
    return np.array(sorted(removed), dtype=np.int64)
