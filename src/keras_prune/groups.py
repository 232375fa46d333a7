"""Pruning groups: wrappers that share one sparsity budget.

With `allocation="global"` or `"erk"`, the pruned weights of all wrapped
layers of a model form one group. The schedule's sparsity then applies to
the group's total: `global` keeps the largest magnitudes across all tensors
(one threshold), `erk` gives each tensor an Erdős–Rényi-Kernel budget; both
keep exactly `kept_count(N, s)` of the N weights. Each tensor's mask is then
its own exact top-k (`masks.mask_for_count`).

The first member called in a training forward pass recomputes (when the
schedule says so) the masks of every member; the others read them. Groups
are not saved as objects: every member's config holds the group's id, size
and its own index, and members created from configs (loading a model, or
`clone_model`) join the most recent group with that id that is not full.
"""

import weakref

import numpy as np

from keras import ops

from keras_prune import _backend
from keras_prune import allocation
from keras_prune import masks

ALLOCATIONS = ("layer", "global", "erk")

# id -> the newest group with that id that still misses members.
_OPEN = weakref.WeakValueDictionary()


def _kept_count(n, sparsity):
    """`masks.kept_count` of Python numbers, on the host."""
    one = np.float32(1.0)
    return int(max(np.round(np.float32(n) * (one - np.float32(sparsity))), 1))


class PruningGroup:
    """The wrappers of one model that share a sparsity budget.

    Args:
        group_id: A string unique to the pruned model.
        size: Number of wrappers in the group.
        allocation: `"global"` or `"erk"`.
    """

    def __init__(self, group_id, size, allocation):
        if allocation not in ("global", "erk"):
            raise ValueError(
                f"allocation={allocation!r}: a pruning group allocates "
                "'global' or 'erk' budgets."
            )
        self.id = group_id
        self.size = None if size is None else int(size)
        self.allocation = allocation
        self._members = {}  # index -> wrapper
        self._last_context = None

    @classmethod
    def join(cls, wrapper, config):
        """Adds `wrapper` to the open group of `config['id']`, or a new one.

        `config['size']` is None while `prune_low_magnitude` is still
        wrapping layers; it then calls `seal`.
        """
        group = _OPEN.get(config["id"])
        index = int(config["index"])
        if group is None or index in group._members:
            group = cls(config["id"], config["size"], config["allocation"])
            _OPEN[config["id"]] = group
        group._members[index] = wrapper
        if group.full:
            _OPEN.pop(config["id"], None)
        return group

    @classmethod
    def seal(cls, group_id):
        """Closes the open group `group_id`: its size is its member count."""
        group = _OPEN.pop(group_id, None)
        if group is not None:
            group.size = len(group._members)
        return group

    @property
    def full(self):
        return self.size is not None and len(self._members) == self.size

    def config_for(self, wrapper):
        index = next(i for i, w in self._members.items() if w is wrapper)
        return {
            "id": self.id,
            "size": self.size,
            "index": index,
            "allocation": self.allocation,
        }

    @property
    def members(self):
        if not self.full:
            raise ValueError(
                f"Pruning group {self.id!r} ({self.allocation} allocation) "
                f"has {len(self._members)} of its {self.size} layers. A model "
                "pruned with allocation='global' or 'erk' must be trained "
                "whole: do not remove or copy single pruned layers out of it."
            )
        return [self._members[i] for i in sorted(self._members)]

    def claim(self, context):
        """True once per forward pass `context` (a weakly held object)."""
        last = self._last_context
        if last is not None and last() is context:
            return False
        self._last_context = weakref.ref(context)
        return True

    # ------------------------------------------------------------- masks

    def _entries(self):
        """`(wrapper, weight, mask, threshold, max_s, min_s)` per tensor."""
        out = []
        for w in self.members:
            for weight, mask, threshold in w.pruning_vars:
                out.append(
                    (w, weight, mask, threshold, w.max_sparsity, w.min_sparsity)
                )
        return out

    def recompute(self, sparsity, old):
        """New masks of every member at the group's `sparsity`.

        Args:
            sparsity: float32 scalar.
            old: List of `(mask, threshold)` tensors, one per tensor, in
                `_entries` order.

        Returns:
            `(new, n_bad)`: list of `(mask, threshold)` and the number of
            NaN/Inf weights (when non-zero, `new` is `old`).
        """
        entries = self._entries()
        bits = [
            ops.where(
                ops.reshape(old_mask, (-1,)),
                masks.magnitude_bits(w._read(weight)),
                0,
            )
            for (w, weight, *_), (old_mask, _) in zip(entries, old)
        ]
        sizes = [int(b.shape[0]) for b in bits]
        total = sum(sizes)
        k_total = masks.kept_count(total, sparsity)
        if self.allocation == "erk":
            counts = allocation.erk_counts(
                [tuple(e[1].shape) for e in entries], sparsity
            )
        else:
            k_min = [
                0 if e[4] is None else _kept_count(n, e[4])
                for e, n in zip(entries, sizes)
            ]
            k_max = [
                n if e[5] is None else _kept_count(n, e[5])
                for e, n in zip(entries, sizes)
            ]
            counts, _ = allocation.global_counts(
                bits,
                k_total,
                ops.convert_to_tensor(k_min, "int32"),
                ops.convert_to_tensor(k_max, "int32"),
            )
        new, n_bad = [], ops.convert_to_tensor(0, "int32")
        for i, (b, entry) in enumerate(zip(bits, entries)):
            k = counts[i]
            mask, threshold, bad = masks.mask_for_count(b, k, entry[1].shape)
            mask = ops.logical_and(mask, ops.greater(k, 0))
            new.append((mask, threshold))
            n_bad = n_bad + bad
        ok = ops.equal(n_bad, 0)
        new = [
            (ops.where(ok, m, om), ops.where(ok, t, ot))
            for (m, t), (om, ot) in zip(new, old)
        ]
        return new, n_bad

    def update(self, should_prune, sparsity):
        """Recomputes every member's masks when `should_prune` (in a step)."""
        entries = self._entries()
        old = [
            (ops.convert_to_tensor(e[2]), e[0]._read(e[3])) for e in entries
        ]

        def recompute():
            return self.recompute(sparsity, old)

        def keep():
            return old, ops.convert_to_tensor(0, "int32")

        new, n_bad = _backend.cond(should_prune, recompute, keep)
        for e, (m, t), (om, _) in zip(entries, new, old):
            if m is not om:  # torch skips the writes between updates
                e[2].assign(m)
                e[3].assign(t)
        return n_bad
