"""`ChannelPruning`: prunes whole coupled channel groups during `fit`.

A pruned channel is more than one kernel column: it is the columns of every
producer in its coupled group (the convs joined by a residual `Add`), their
biases, the scale and offset of the BatchNormalization after them, and the
depthwise filters that follow it. A per-layer wrapper sees one kernel, so
this is a callback over the model's `DependencyGraph` instead: at the steps
the schedule says, it ranks every group's units by importance and marks
the schedule's fraction of each group as pruned; after every training step
it sets all producer and follower entries of pruned units to exactly zero.

Zero scale and zero offset make a BatchNormalization output exactly 0 for
any moving mean and variance, so every reader of the channel sees zeros and
`keras_prune.shrink(model)` removes it without changing the function.
The model stays a model of stock Keras layers: no wrapper, nothing to strip.
"""

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.structure.graph import CONSUMER
from keras_prune.structure.graph import DependencyGraph
from keras_prune.structure.importance import get_importance
from keras_prune.structure.importance import select_units
from keras_prune.structure.importance import unit_scores


class ChannelPruning(keras.callbacks.Callback):
    """Structured pruning of coupled channels, heads and FFN units in `fit`.

    Args:
        schedule: A `keras_prune.PruningSchedule` (e.g. `PolynomialDecay`);
            its sparsity is the fraction of each group's units pruned.
        importance: `'l2'` (default), `'l1'` or `fn(values, axis)` returning
            one score per index along `axis` (see `structure.importance`).

    Attributes:
        graph: The `DependencyGraph` (set when training starts).
        removed: Int array of the currently pruned unit ids.
        step: Training steps seen.

    Example:

    ```python
    pruning = keras_prune.ChannelPruning(
        keras_prune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=200,
                                    frequency=20))
    model.fit(x, y, epochs=4, callbacks=[pruning])
    small = keras_prune.shrink(model)   # same function, fewer channels
    ```
    """

    @keywords_checked
    def __init__(self, schedule, importance="l2"):
        super().__init__()
        from keras_prune.core.schedules import PruningSchedule

        if not isinstance(schedule, PruningSchedule):
            raise ValueError(
                "schedule must be a keras_prune.PruningSchedule such as "
                f"PolynomialDecay or ConstantSparsity; got {schedule!r}."
            )
        get_importance(importance)
        self.schedule = schedule
        self.importance = importance
        self.graph = None
        self.removed = np.zeros(0, dtype=np.int64)
        self.step = 0
        self._masks = []

    def attach(self, model):
        """Analyses `model` (done by `fit`; call it for eager use)."""
        if self.graph is None or self.graph.model is not model:
            self.graph = DependencyGraph(model)
            self._set_masks(self.removed)

    def set_model(self, model):
        super().set_model(model)
        self.attach(model)

    def prune_to(self, sparsity):
        """Eagerly prunes `sparsity` of every group and zeroes the weights.

        Args:
            sparsity: Fraction in [0, 1) of each group's units.

        Returns:
            Int array of the pruned unit ids.
        """
        scores = unit_scores(self.graph, self.importance)
        scores[self.removed] = -1.0  # pruned units stay pruned
        self.removed = select_units(
            self.graph, sparsity, self.importance, scores=scores
        )
        self._set_masks(self.removed)
        self.apply_masks()
        return self.removed

    def _set_masks(self, removed):
        per_var = {}
        for slices in self.graph.slices.values():
            for s in slices:
                if s.role == CONSUMER:
                    continue
                keep = self.graph.keep_of(s.ids, removed)
                if keep.all():
                    continue
                shape = [1] * len(s.variable.shape)
                shape[s.axis] = len(keep)
                mask = keep.reshape(shape)
                key = id(s.variable)
                if key in per_var:
                    per_var[key] = (s.variable, per_var[key][1] & mask)
                else:
                    per_var[key] = (s.variable, mask)
        self._masks = [
            (v, keras.ops.convert_to_tensor(np.broadcast_to(m, v.shape)))
            for v, m in per_var.values()
        ]

    def apply_masks(self):
        """Sets every pruned entry to exactly zero."""
        for variable, mask in self._masks:
            value = variable.value
            variable.assign(
                keras.ops.where(mask, value, keras.ops.zeros_like(value))
            )

    def _sync(self):
        # On JAX, `fit` holds the variables' values outside the Variable
        # objects; reading `self.model` syncs them (and makes `fit` re-read
        # them before the next step).
        return self.model

    def on_train_begin(self, logs=None):
        n = int(getattr(self._sync(), "steps_per_execution", 1) or 1)
        if n > 1:
            raise ValueError(
                f"ChannelPruning needs steps_per_execution=1 (got {n}): it "
                "zeroes pruned channels after every step. Compile the model "
                "with steps_per_execution=1."
            )

    def on_train_batch_begin(self, batch, logs=None):
        self._sync()
        should_prune, sparsity = self.schedule(np.int64(self.step))
        if bool(should_prune):
            self.prune_to(float(sparsity))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self._sync()
        self.apply_masks()

    def on_train_end(self, logs=None):
        self._sync()
        self.apply_masks()
