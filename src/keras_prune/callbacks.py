"""Callbacks: `UpdatePruningStep` (tfmot's name) for `fit`."""

import keras
import numpy as np

from keras_prune import schedules
from keras_prune import strip


def model_sparsity(model):
    """Fraction of zeros over all pruned weights of `model` (their masks).

    Args:
        model: A model holding pruning wrappers.

    Returns:
        float, or `None` when the model has nothing pruned.
    """
    pruned = total = 0
    for wrapper in strip.pruning_wrappers(model):
        for mask in wrapper.masks:
            m = keras.ops.convert_to_numpy(mask)
            total += m.size
            pruned += m.size - int(np.count_nonzero(m))
    return pruned / total if total else None


def pruning_step(model):
    """The number of training batches a pruned model has completed.

    Args:
        model: A model holding pruning wrappers.

    Returns:
        int, or `None` when the model has no built pruning wrapper.
    """
    for wrapper in strip.pruning_wrappers(model):
        if wrapper.built:
            return int(keras.ops.convert_to_numpy(wrapper.pruning_step))
    return None


class UpdatePruningStep(keras.callbacks.Callback):
    """Reports pruning during `fit`: NaN checks and `sparsity` in the logs.

    Kept under tfmot's name so tfmot code runs unchanged, but keras-prune does
    not need it to prune: the step and the masks are updated inside the
    compiled train step. With it, `fit` also:

    - raises `FloatingPointError` at the start of the batch after a step
      whose mask update met NaN or Inf weights (naming the layer), or at the
      end of the epoch, instead of training on;
    - adds `sparsity` (fraction of zeros over all pruned weights) to the
      epoch logs, so it shows in `History` and the progress bar.

    It only reads the model after steps at which the schedule updated masks
    (on JAX, reading the model syncs its state), and it has no batch-end
    hook, so Keras keeps dispatching steps asynchronously (a batch-end hook
    made JAX `fit` 1.28x slower on a small MLP).

    Example:

    ```python
    model.fit(x, y, callbacks=[keras_prune.UpdatePruningStep()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._step = None
        self._epoch_start = None
        self._sparsity = None

    def on_train_begin(self, logs=None):
        model = self.model
        self._wrappers = strip.pruning_wrappers(model)
        strip.check_finite(model)
        self._step = pruning_step(model) or 0
        self._sparsity = model_sparsity(model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step

    def _catch_up(self, done, model=None):
        """Checks the model if masks were updated at a step in `[step, done)`."""
        if self._updated_between(self._step, done):
            model = model or self.model  # syncs JAX state
            strip.check_finite(model)
            self._sparsity = model_sparsity(model)
        self._step = done

    def _updated_between(self, first, last):
        """Whether any schedule updates masks at a step in `[first, last)`."""
        seen = set()
        for wrapper in self._wrappers:
            schedule = wrapper.pruning_schedule
            if id(schedule) in seen:
                continue
            seen.add(id(schedule))
            for step in range(first, last):
                if schedules.evaluate(schedule, step)[0]:
                    return True
        return False

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is not None:
            self._catch_up(self._epoch_start + batch)

    def on_epoch_end(self, epoch, logs=None):
        if self._step is None:
            return
        model = self.model  # syncs JAX state
        self._catch_up(pruning_step(model) or 0, model)
        if logs is not None and self._sparsity is not None:
            logs["sparsity"] = self._sparsity
