"""Callbacks: `UpdatePruningStep` (tfmot's name) for `fit`."""

import warnings

import keras

from keras_prune._keywords import keywords_checked
from keras_prune.core import schedules
from keras_prune.integration import host_updates
from keras_prune.integration import state
from keras_prune.integration.state import model_sparsity
from keras_prune.integration.state import pruning_step


class UpdatePruningStep(keras.callbacks.Callback):
    """Runs pruning's mask updates between the steps of `fit`.

    keras-prune prunes without it (the train step then updates the masks
    itself and multiplies each pruned weight by its mask), but with it `fit`
    trains a pruned model about as fast as a dense one:

    - before each batch it evaluates the schedules on the host and, only at
      the steps where one says so, recomputes the masks (the same masks,
      bit for bit) and writes `w * mask` into the weights; the train step
      keeps pruned weights at zero after each optimizer update and carries
      no mask update or masking (`keras_prune.integration.host_updates`);
    - it raises `FloatingPointError` when a mask update meets NaN or Inf
      weights (naming the layer), instead of training on;
    - it adds `sparsity` (fraction of zeros over all pruned weights) to the
      epoch logs, so it shows in `History` and the progress bar.

    It has no batch-end hook, so Keras keeps dispatching steps
    asynchronously, and it reads the model (on JAX, syncs its state) only at
    update steps. With `steps_per_execution > 1`, under a distribution, or
    with an optimizer that couples weights (clipping by norm, Lamb,
    Adafactor, Muon: see `host_updates.elementwise_optimizer`), the updates
    stay inside the train step; the callback checks and reports them and
    sets the pruned weights to exactly zero when `fit` ends (and at each
    epoch end, as tfmot's does, when the optimizer is elementwise).

    **Custom training loops.** tfmot's idiom of calling the hooks by hand
    works unchanged (`set_model`, `on_train_begin()`,
    `on_train_batch_begin(batch=-1)`, `on_epoch_end(batch=-1)`, with or
    without `model.optimizer` set). Called by hand, the hooks never change
    the step or the masks (the forward pass with `training=True` updates
    them, as without the callback): `on_epoch_end` sets the pruned weights
    to exactly zero (as tfmot's does), checks for NaN/Inf at mask updates
    and reports `sparsity` in `logs`; the other hooks only check. Host
    updates only run when Keras' own `fit` calls the callback.

    Example:

    ```python
    model.fit(x, y, callbacks=[keras_prune.UpdatePruningStep()])
    ```
    """

    @keywords_checked
    def __init__(self):
        super().__init__()
        self._step = None
        self._epoch_start = None
        self._sparsity = None
        self._host = None
        self._wrappers = []
        self._by_fit = False
        self._hand_batches = 0
        self._warned_stale = False
        self._fit_start = None
        self._start_steps = []

    def on_train_begin(self, logs=None):
        model = self.model
        self._wrappers = state.pruning_wrappers(model)
        self._stop_host()
        stale = host_updates.active(model)
        if stale is not None:  # a `fit` that raised never reached stop()
            stale.stop()
        self._by_fit = host_updates.driven_by_fit(model)
        state.check_finite(model)
        self._step = pruning_step(model) or 0
        self._epoch_start = self._step
        self._hand_batches = 0
        # Only under `fit`: called by hand, a bad value raises in the step.
        self._collect_schedule_errors(self._by_fit)
        if self._by_fit and host_updates.eligible(model):
            self._host = host_updates.HostUpdates(model, self._step)
            self._host.start()
        self._sparsity = model_sparsity(model)
        # After the first train step of `fit`, check that it reached the
        # wrappers (`_check_training_reached`).
        self._fit_start = self._step if self._by_fit else None
        self._start_steps = state.wrapper_steps(self._wrappers)

    def _check_training_reached(self):
        """Raises if the first train step left every wrapper's step as it
        was: the model's call never tells its layers that they train (a
        silent no-op otherwise). Warns for some wrappers left behind."""
        self._fit_start = None
        model = self.model  # syncs JAX state
        now = state.wrapper_steps(w for w, _ in self._start_steps)
        stuck = [
            w
            for (w, before), (_, step) in zip(self._start_steps, now)
            if step == before
        ]
        if stuck and len(stuck) == len(self._start_steps):
            raise ValueError(state.training_message(model, stuck))
        if stuck:
            names = [w.layer.name for w in stuck]
            warnings.warn(
                f"The pruned layers {names} of model {model.name!r} were not "
                "called with training=True in the first train step (not "
                "used in the forward pass, or `training` not passed on to "
                "them): they do not prune while the others do.",
                state.TrainingNotPassedWarning,
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch=None, logs=None):
        if self._by_fit and self._step is not None:
            self._follow_loaded_state()
        self._epoch_start = self._step

    def _follow_loaded_state(self):
        """Takes the model's step again if something assigned it since.

        Under `fit` the step of each batch is counted here (no read per
        batch), from the step read at train begin or epoch end. A callback
        listed after this one may load another state in between:
        `BackupAndRestore` (and any callback calling `load_weights`) does it
        in its `on_train_begin`. The host updates then ran the schedule at
        the old steps while the wrappers counted from the loaded one: other
        masks than the run that was backed up, silently. One read of the
        step per epoch (already synced at epoch begin on JAX).
        """
        model = self.model
        step = pruning_step(model) or 0
        if step == self._step:
            return
        self._step = step
        if self._fit_start is not None:
            self._fit_start = step
            self._start_steps = state.wrapper_steps(self._wrappers)
        if self._host is not None:
            # Each layer's step offset and the planned schedule values are
            # those of the old steps: plan again from the loaded state (and
            # zero the pruned weights of the loaded masks).
            self._host.stop()
            self._host = host_updates.HostUpdates(model, step)
            self._host.start()

    def _catch_up(self, done, model=None):
        """Checks the model if masks changed at a step in `[step, done)`."""
        if self._updated_between(self._step, done):
            model = model or self.model  # syncs JAX state
            state.check_finite(model)
            self._sparsity = model_sparsity(model)
        self._step = done

    def _updated_between(self, first, last):
        """Whether any schedule updates masks at a step in `[first, last)`."""
        schedules_seen = {
            id(w.pruning_schedule): w.pruning_schedule for w in self._wrappers
        }
        return any(
            schedules.last_update(s, last - 1, first) is not None
            for s in schedules_seen.values()
        )

    def _collect_schedule_errors(self, on):
        """Collects invalid schedule values met inside the train step.

        On JAX and TensorFlow a `ValueError` raised by a host schedule
        inside the compiled step would surface as the backend's runtime
        error; while this callback runs under `fit`, the wrappers record it
        instead and skip that update (`controller.evaluate_on_host`),
        and `_raise_schedule_errors` raises it here. Torch raises in the
        step.
        """
        collect = on and keras.backend.backend() != "torch"
        for wrapper in self._wrappers:
            object.__setattr__(
                wrapper, "_schedule_errors", [] if collect else None
            )

    def _raise_schedule_errors(self):
        for wrapper in self._wrappers:
            if getattr(wrapper, "_schedule_errors", None):
                raise wrapper._schedule_errors[0]

    def on_train_batch_begin(self, batch=None, logs=None):
        if self._step is None or not self._by_fit:
            # Called by hand (tfmot's custom-loop idiom, any `batch`): the
            # forward pass updates the step and the masks; nothing to do.
            self._hand_batches += 1
            return
        try:
            self._raise_schedule_errors()
            step = self._epoch_start + batch
            if self._fit_start is not None and step > self._fit_start:
                self._check_training_reached()
            if (
                self._host is not None
                and host_updates.active(self._model) is not self._host
            ):
                # The model left host mode (a train step ran outside this
                # callback's batches): the train step updates the masks.
                self._host = None
            if self._host is None:
                self._catch_up(step)
                return
            self._step = step
            self._host.arm()
            due = self._host.due(step)  # ValueError: a bad schedule value
            if due:
                _ = self.model  # syncs JAX state: the updates read weights
                self._host.update(due)
                self._sparsity = None  # read at epoch end
        except (ValueError, FloatingPointError):
            # `fit` stops here without calling on_train_end.
            self._collect_schedule_errors(False)
            self._stop_host()
            raise

    def on_epoch_end(self, epoch=None, logs=None, *, batch=None):
        """End of an epoch (`batch` is tfmot's name for `epoch`; unused)."""
        model = self.model  # syncs JAX state
        if not self._by_fit:
            # By hand: make the stored weights exactly sparse, as tfmot's
            # `on_epoch_end` does; the masks and the step stay as they are.
            state.check_finite(model)
            step = pruning_step(model)
            if (
                step is not None
                and self._step is not None
                and step == self._step
                and self._hand_batches
            ):
                self._warn_stale(self._hand_batches)
            self._apply_masks(model)
            self._step = step or 0
            self._hand_batches = 0
            self._sparsity = model_sparsity(model)
        else:
            try:
                self._raise_schedule_errors()
                if self._host is None:
                    self._catch_up(pruning_step(model) or 0, model)
            except (ValueError, FloatingPointError):
                self._collect_schedule_errors(False)
                self._stop_host()
                raise
            if self._host is not None:
                self._step = pruning_step(model) or 0
                if self._sparsity is None:
                    self._sparsity = model_sparsity(model)
            elif host_updates.elementwise_optimizer(
                getattr(model, "optimizer", None)
            ):
                # In-step updates (`steps_per_execution > 1`, a
                # distribution): the train step only masks the forward
                # pass, so the stored pruned weights keep their values.
                # Zero them at each epoch end, as tfmot's callback does
                # (the kept weights' updates never read them with such an
                # optimizer); `on_train_end` does it for the others.
                self._apply_masks(model)
        if logs is not None and self._sparsity is not None:
            logs["sparsity"] = self._sparsity

    @staticmethod
    def _apply_masks(model):
        """Sets every pruned weight of `model` to `weight * mask`."""
        for wrapper in state.pruning_wrappers(model):
            if wrapper.built:
                wrapper.apply_masks()

    def _warn_stale(self, batches):
        if self._warned_stale:
            return
        self._warned_stale = True
        warnings.warn(
            f"UpdatePruningStep.on_epoch_end: {batches} batches began since "
            "the last epoch end, but the model's pruning step did not "
            f"advance (still {self._step}): the masks only change in a "
            "forward pass with training=True, and on JAX only once the "
            "loop's state (stateless_call's non-trainable values) is "
            "written back into the model's variables. Write it back before "
            "on_epoch_end (see docs/custom-training-loops.md); masks and "
            "weights read now are stale.",
            stacklevel=2,
        )

    def on_train_end(self, logs=None):
        try:
            if self._step is not None and self._by_fit:
                _ = self.model  # syncs JAX state
                self._raise_schedule_errors()
                if self._host is not None:
                    self._host.finish()
                else:
                    # In-step updates: make the kernels read after `fit`
                    # exactly sparse, as in the host mode. (Not at each
                    # epoch end with an optimizer that reads the weights
                    # themselves, like Lamb: zeroing would change the kept
                    # weights' next updates.)
                    self._apply_masks(self.model)
        finally:
            self._collect_schedule_errors(False)
            self._stop_host()
            self._by_fit = False

    def _stop_host(self):
        if self._host is not None:
            self._host.stop()
            self._host = None
