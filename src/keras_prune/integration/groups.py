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
and its own index. `prune_low_magnitude` fills the group of the wrappers it
creates (`join` and `seal`). Members created from configs (loading a model,
or `clone_model`) are linked from the model that holds them (`link`):
within that model, by group id and index, whatever the order in which
models were loaded or cloned. `link` runs when the model is called (its
first call, e.g. the symbolic build of `fit`, or any call on TensorFlow and
torch), by `UpdatePruningStep`, `prune_once` and the reports.
"""

import weakref

import keras
import numpy as np
from keras import ops

from keras_prune.core import allocation
from keras_prune.core import allocation as _allocation
from keras_prune.core import masks
from keras_prune.integration import layer_call

ALLOCATIONS = ("layer", "global", "erk")

# id -> the group a running `prune_low_magnitude` call is filling; emptied
# by its `seal` (in a `finally`), so nothing outlives the call.
_FILLING = {}

# Elements per chunk of the eager (streaming) group update (4 MiB of
# float32), and per block of its NumPy form (`updater.MaskUpdate.stream`).
STREAM_CHUNK = 1 << 20
STREAM_BLOCK = 1 << 18


def link(model):
    """Gives the wrappers of `model` that have no group yet their groups.

    Wrappers created from configs (a loaded or cloned model) hold their
    group's id and size and their own index. Within `model`, in its layer
    order, each joins the first group with its id that lacks its index, so
    two models loaded or cloned in any order keep separate groups; and a
    model holding two copies of a pruned model gets two groups. Only
    complete groups are linked; wrappers that already have a group keep
    it.

    Args:
        model: A model (or layer) holding pruning wrappers.
    """
    from keras_prune.integration import state

    _link(state.pruning_wrappers(model))


def of(wrapper):
    """The `PruningGroup` sharing `wrapper`'s budget, or None
    (`allocation='layer'`).

    A wrapper made from a config links its group on first need: from the
    model its call runs in (`link_from_call`), else from its graph
    (`link_graph`); a wrapper out of reach of its group gets `unlinked`.

    Args:
        wrapper: A `PruneLowMagnitude`.
    """
    if wrapper._group_config is None:
        return None
    if wrapper._linked_group is None:
        link_from_call(wrapper)
        if wrapper._linked_group is None:
            link_graph(wrapper)
        if wrapper._linked_group is None:
            return unlinked(wrapper)
    return wrapper._linked_group


def link_from_call(wrapper):
    """Links the groups of the model `wrapper`'s call runs in (`link`): the
    outermost layer called, as Keras records it.

    Args:
        wrapper: A `PruneLowMagnitude`.
    """
    entry = getattr(layer_call.call_context(), "entry_layer", None)
    if entry is not None and entry is not wrapper:
        link(entry)


def attach(wrapper, pruning_group):
    """Gives a new wrapper its `pruning_group` argument and, while
    `prune_low_magnitude` fills the group, the group (`PruningGroup.join`).

    Args:
        wrapper: A `PruneLowMagnitude`, in its `__init__`.
        pruning_group: `{'id', 'size', 'index', 'allocation'}`, or None
            (`allocation='layer'`). A wrapper made from its config gets
            its group from its model later (`of`).
    """
    config = None if pruning_group is None else dict(pruning_group)
    # Outside Keras' attribute tracking (not a tracked dict).
    object.__setattr__(wrapper, "_group_config", config)
    set_group(wrapper, PruningGroup.join(wrapper, config))


def set_group(wrapper, group):
    """Gives `wrapper` its group (outside Keras' attribute tracking)."""
    object.__setattr__(wrapper, "_linked_group", group)


def link_graph(wrapper):
    """Links the groups of the graph `wrapper` was called in.

    A model loaded or cloned from a config has not been called yet, but its
    Functional graph exists: the wrappers connected to this one through the
    graph's nodes are its model's. Used when a wrapper needs its group
    before the model's first call (`update_masks_now`, reports). Where the
    graph holds two copies of one group (a model built from two copies of
    one pruned model), nothing is linked here: the model's own call links
    them in its layer order (`link`).

    Args:
        wrapper: A `PruneLowMagnitude` created from a config.
    """
    seen = {id(wrapper): wrapper}
    stack = [wrapper]
    while stack:
        operation = stack.pop()
        nodes = list(getattr(operation, "_inbound_nodes", ()))
        nodes += list(getattr(operation, "_outbound_nodes", ()))
        for node in nodes:
            neighbours = [node.operation]
            neighbours += [p.operation for p in node.parent_nodes]
            for other in neighbours:
                if id(other) not in seen:
                    seen[id(other)] = other
                    stack.append(other)
    config = wrapper._group_config
    members = [
        op
        for op in seen.values()
        if getattr(op, "_group_config", None) is not None
        and op._group_config["id"] == config["id"]
    ]
    if len(members) == int(config["size"]):
        _link(members)


def _link(wrappers):
    filling = {}
    for wrapper in wrappers:
        config = getattr(wrapper, "_group_config", None)
        if config is None or wrapper._linked_group is not None:
            continue
        index = int(config["index"])
        candidates = filling.setdefault(config["id"], [])
        group = next((g for g in candidates if index not in g._members), None)
        if group is None:
            group = PruningGroup(
                config["id"], config["size"], config["allocation"]
            )
            candidates.append(group)
        group._members[index] = wrapper
    for candidates in filling.values():
        for group in candidates:
            # A model holding part of a group (a nested model called on its
            # own while the outer one is built) links nothing of it.
            if group.full:
                for wrapper in group._members.values():
                    set_group(wrapper, group)


def unlinked(wrapper):
    """The group of a wrapper that `link` has not reached: the wrapper
    alone (not kept), so that whatever needs the group's other members
    raises `members`' error (a layer taken out of its pruned model)."""
    config = wrapper._group_config
    group = PruningGroup(config["id"], config["size"], config["allocation"])
    group._members[int(config["index"])] = wrapper
    return group


class PruningGroup:
    """The wrappers of one model that share a sparsity budget.

    Args:
        group_id: A string unique to the pruned model.
        size: Number of wrappers in the group.
        allocation: `"global"` or `"erk"`.
    """

    def __init__(self, group_id, size, allocation):
        if isinstance(allocation, dict):  # a user's Allocation, saved
            allocation = keras.saving.deserialize_keras_object(allocation)
        if allocation not in ("global", "erk") and not (
            isinstance(allocation, _allocation.Allocation) and allocation.shared
        ):
            raise ValueError(
                f"allocation={allocation!r}: a pruning group allocates "
                "'global' or 'erk' budgets, or a shared keras_prune."
                "Allocation."
            )
        self.id = group_id
        self.size = None if size is None else int(size)
        self.allocation = allocation
        self._members = {}  # index -> wrapper
        self._last_context = None
        self._update = None

    @classmethod
    def join(cls, wrapper, config):
        """The group `wrapper` belongs to when it is created, or None.

        `config['size']` is None while `prune_low_magnitude` is wrapping
        layers: the wrapper joins the group that call fills (it then calls
        `seal`). A wrapper created from a saved config (loading, cloning)
        joins nothing here: `link` gives it its group from its model. A
        `config` of None (`allocation='layer'`) joins nothing.
        """
        if config is None or config["size"] is not None:
            return None
        group = _FILLING.get(config["id"])
        if group is None:
            group = _FILLING[config["id"]] = cls(
                config["id"], None, config["allocation"]
            )
        group._members[int(config["index"])] = wrapper
        return group

    @classmethod
    def seal(cls, group_id):
        """Closes the group `group_id` that `prune_low_magnitude` filled:
        its size is its member count."""
        group = _FILLING.pop(group_id, None)
        if group is not None:
            group.size = len(group._members)
            for wrapper in group._members.values():
                wrapper._group_config["size"] = group.size
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
            "allocation": self.allocation
            if isinstance(self.allocation, str)
            else keras.saving.serialize_keras_object(self.allocation),
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

    def guarded(self):
        """`(layer name, weight name, kept, floor)` of every tensor held at
        the default guard's floor (`allocation.guard_floor`): a global
        threshold alone would have pruned it further, possibly whole."""
        if self.allocation != "global":
            return []
        targets = self.mask_update().targets
        out = []
        for t, floor in zip(targets, allocation.guard_floors(targets)):
            if floor is None:
                continue
            kept = int(np.count_nonzero(ops.convert_to_numpy(t.mask)))
            if kept <= floor:
                name = t.weight.path or t.weight.name
                out.append((t.wrapper.layer.name, name, kept, floor))
        return out

    def warn_guarded(self):
        """Warns once per tensor newly held at the guard's floor."""
        import warnings

        seen = self.__dict__.setdefault("_warned", set())
        for layer, weight, kept, _floor in self.guarded():
            if (layer, weight) in seen:
                continue
            seen.add((layer, weight))
            warnings.warn(
                f"allocation='global': layer {layer!r} weight {weight!r} "
                f"would be pruned (almost) whole by the global threshold; "
                f"it keeps {kept} weights, the guard's floor (one per output "
                "channel). Pass max_sparsity={" + repr(layer) + ": 1.0} to "
                "allow pruning it whole, or a lower cap to keep more.",
                stacklevel=4,
            )

    def _entries(self):
        """`(wrapper, weight, mask, threshold, max_s, min_s)` per tensor."""
        out = []
        for w in self.members:
            for weight, mask, threshold in w.pruning_vars:
                out.append(
                    (w, weight, mask, threshold, w.max_sparsity, w.min_sparsity)
                )
        return out

    def mask_update(self):
        """The group's `updater.MaskUpdate` (one for its members)."""
        from keras_prune.integration import updater

        members = self.members
        key = tuple(id(m) for m in members)
        if self._update is None or self._update[0] != key:
            part = allocation.get(self.allocation)
            self._update = (
                key,
                updater.MaskUpdate.for_wrappers(
                    members,
                    part,
                    chunks=lambda: (STREAM_CHUNK, STREAM_BLOCK),
                ),
            )
        return self._update[1]

    def recompute(self, sparsity, old):
        """New masks of every member at the group's `sparsity`
        (`MaskUpdate.recompute`; pure, whole tensors).

        Args:
            sparsity: float32 scalar.
            old: List of `(mask, threshold)` tensors, one per tensor, in
                `_entries` order.

        Returns:
            `(new, n_bad)`: list of `(mask, threshold)` and the number of
            NaN/Inf weights (when non-zero, `new` is `old`).
        """
        return self.mask_update().recompute(sparsity, old)

    def update(self, should_prune, sparsity):
        """Recomputes every member's masks when `should_prune` (in a step).

        Eagerly (`should_prune` has a value), the masks are streamed
        (`update_streaming`: never a whole tensor's temporaries); in a
        compiled step, `recompute` (whole tensors, fused by XLA). Both give
        the same masks and thresholds, bit for bit.
        """
        n_bad = self.mask_update().update(should_prune, sparsity)
        if (
            self.allocation == "global"
            and masks._is_eager(should_prune)
            and bool(ops.convert_to_numpy(should_prune))
        ):
            self.warn_guarded()
        return n_bad

    def update_streaming(self, sparsity, chunk=None):
        """Eager `update` in bounded memory (`MaskUpdate.stream`).

        Args:
            sparsity: float32 scalar with a value.
            chunk: Elements per chunk (default `STREAM_CHUNK`, and
                `STREAM_BLOCK` in NumPy).

        Returns:
            int32 scalar: the number of NaN/Inf weights (when non-zero, no
            mask or threshold is changed).
        """
        return self.mask_update().stream(sparsity, chunk)

    def _update_with_ops(self, sparsity, chunk=None):
        """`update_streaming` with backend operations (accelerators)."""
        return self.mask_update()._stream_with_ops(
            sparsity, STREAM_CHUNK if chunk is None else chunk
        )
