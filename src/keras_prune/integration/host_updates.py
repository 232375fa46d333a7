"""Mask updates driven from the host during `fit` (by `UpdatePruningStep`).

Without the callback, every training step carries the mask update (a
conditional on the schedule) and multiplies each pruned weight by its mask
in the forward pass. With it, `fit` trains pruned layers as cheaply as dense
ones:

- the callback evaluates the schedules on the host before each batch and,
  only at the steps where one says so, runs a compiled update that
  recomputes the masks (the same `magnitude_mask` math, same bits) and
  writes `w * mask` into the weights;
- the train step, Keras' own, holds no update: the forward pass reads the
  weights as they are and advances the step counters, and after the
  optimizer's update Keras applies each pruned weight's constraint,
  `ZeroPruned` (`w = where(mask, w, 0)`, one pass over the pruned
  weights).

Pruned weights are therefore zero in every forward pass, as with in-step
updates, and the masks are identical bit for bit. The mode only applies
within a `fit` whose `steps_per_execution` is 1 (the callback sees every
batch begin), without a distribution strategy, and with an optimizer that
updates each weight from its own gradient (`elementwise_optimizer`: not
with gradient clipping by norm); otherwise the in-step updates run as
usual.

The mode is entered only when Keras' own `fit` of the model calls the
callback (`driven_by_fit`): a custom loop that calls the callback's hooks by
hand, as tfmot's guide does, always keeps in-step updates, whatever
`model.optimizer` holds. Within the mode, the wrappers skip their mask work
only while the train function `fit` calls runs (`_guarded_train_function`,
set as Keras' public `model.train_function`; `train_step` is never
replaced), and it only runs as such when the callback announced the batch
(`HostUpdates.arm`): called any other way (by a later `fit` after one that
raised before `on_train_end`) it first switches the model back to in-step
updates, and a train step called by hand runs in-step updates. No path can
train with the masks frozen.
"""

import functools
import inspect
import sys

import keras

from keras_prune import _backend
from keras_prune.core import schedules
from keras_prune.integration import controller
from keras_prune.integration import groups
from keras_prune.integration import layer_call
from keras_prune.integration import state
from keras_prune.integration import strip
from keras_prune.integration.controller import nonfinite_message

_PLAN_STEPS = 256  # schedule steps evaluated at once


# Optimizers whose update of a weight reads only that weight's gradient and
# state. In host mode the forward pass reads the zeroed weights unmasked, so
# pruned weights get nonzero gradients (zero under in-step masking); the
# zeroing after the step discards their updates, and only these optimizers
# leave the kept weights exactly as in-step updates would. Norm-based ones
# (gradient clipping by norm, Lamb, Adafactor, Muon) keep in-step updates.
_ELEMENTWISE_OPTIMIZERS = (
    keras.optimizers.SGD,
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.Adamax,
    keras.optimizers.Nadam,
    keras.optimizers.RMSprop,
    keras.optimizers.Adagrad,
    keras.optimizers.Adadelta,
    keras.optimizers.Ftrl,
    keras.optimizers.Lion,
)


def elementwise_optimizer(optimizer):
    """Whether pruned weights' gradients cannot change `optimizer`'s update
    of the other weights (see `_ELEMENTWISE_OPTIMIZERS`)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    if not isinstance(optimizer, _ELEMENTWISE_OPTIMIZERS):
        return False
    # A user's subclass may change the update: it keeps in-step updates.
    # Only the public class itself qualifies, or the class Keras' backend
    # puts in its place when it is created (torch: `torch_adam.Adam`).
    public = next(c for c in type(optimizer).__mro__ if c in _PUBLIC)
    if type(optimizer) is not public and type(optimizer) is not (
        _backend_class(public)
    ):
        return False
    return optimizer.clipnorm is None and optimizer.global_clipnorm is None


_PUBLIC = frozenset(_ELEMENTWISE_OPTIMIZERS)
_BACKEND_CLASSES = {}


def _backend_class(cls):
    """The class of the object `cls(...)` creates on this backend (torch's
    `__new__` swaps in its own subclass of most optimizers)."""
    if cls not in _BACKEND_CLASSES:
        # `__new__` alone: no `__init__`, no variables created.
        _BACKEND_CLASSES[cls] = type(cls.__new__(cls))
    return _BACKEND_CLASSES[cls]


def driven_by_fit(model, methods=("fit",)):
    """Whether Keras' own `fit` of `model` is running (on the call stack).

    `UpdatePruningStep` only switches to host updates when `fit` calls it:
    then every batch begins with the callback and runs `model.train_function`
    once. Hooks called by hand from a custom loop (tfmot's idiom) must not
    change how the model trains, so they keep in-step updates. Neither
    `model.optimizer` (tfmot's guide sets it by hand) nor the callback's
    `params` (a hand-made `CallbackList` may pass `epochs` and `steps`) tell
    the two apart; the running `fit` does. A `fit` a subclass rewrites
    without calling Keras' counts as a custom loop (in-step updates: correct,
    only slower).

    Args:
        model: The model.
        methods: Names of Keras' `Trainer` methods to look for (`fit`, and
            for `stored_sparse` also `train_on_batch`).
    """
    codes = set()
    for cls in type(model).__mro__:
        for name in methods:
            fit = cls.__dict__.get(name)
            if fit is not None and cls.__module__.startswith("keras."):
                codes.add(inspect.unwrap(fit).__code__)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in codes and frame.f_locals.get("self") is model:
            return True
        frame = frame.f_back
    return False


def active(model):
    """The `HostUpdates` running `model`'s mask updates, or None."""
    return getattr(model, "_keras_prune_host_updates", None)


def eligible(model):
    """Whether `fit` on `model` can run its mask updates from the host."""
    if getattr(model, "steps_per_execution", 1) != 1:
        return False
    if not elementwise_optimizer(getattr(model, "optimizer", None)):
        return False
    if keras.distribution.distribution() is not None:
        return False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return False
    wrappers = strip.pruning_wrappers(model)
    return bool(wrappers) and all(w.built for w in wrappers)


class Owner:
    """The masks one compiled update recomputes: a layer's or a group's.

    Args:
        wrapper: A `PruneLowMagnitude`; with global or ERK allocation, the
            first member of its group (the update covers the whole group).
        step_offset: This wrapper's `pruning_step` minus the model's.
    """

    def __init__(self, wrapper, step_offset):
        self.wrapper = wrapper
        self.group = wrapper._group
        self.step_offset = step_offset
        members = [wrapper] if self.group is None else self.group.members
        self.triples = [t for m in members for t in m.pruning_vars]
        self.variables = [v for t in self.triples for v in t]

    @property
    def mask_update(self):
        """The `updater.MaskUpdate` of this owner's masks."""
        if self.group is None:
            return self.wrapper.mask_update()
        return self.group.mask_update()

    def update(self, sparsity):
        """Recomputes the masks to `sparsity` and zeroes the pruned weights.

        `MaskUpdate.update_now` chooses how: single weights by magnitude of
        one layer with NumPy on the host (`masks.host_mask`: nothing to
        compile); block, N:M, channel and users' patterns and scores, and
        global/ERK groups with their compiled math.

        Raises:
            FloatingPointError: a pruned weight is NaN or Inf (the masks are
                then left as they were).
        """
        n_bad = self.mask_update.update_now(
            sparsity, zero_weights=True, stream=False
        )
        if n_bad:
            raise FloatingPointError(nonfinite_message(self.wrapper))


def _finalize_writes(optimizer):
    """Whether `optimizer.finalize_variable_values` (the last thing `fit`
    does to the weights) may write values: True unless it is Keras' own
    method, which only writes with `use_ema=True` (a loss-scale optimizer
    defers to its inner one; any other override may write)."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    own = keras.optimizers.Optimizer.finalize_variable_values
    if getattr(type(optimizer), "finalize_variable_values", None) is not own:
        return True
    return bool(getattr(optimizer, "use_ema", False))


class ZeroPruned(keras.constraints.Constraint):
    """The constraint host mode gives each pruned weight: `where(mask, w, 0)`.

    Keras applies a variable's `constraint` after every optimizer update, on
    every backend (`BaseOptimizer.apply`, which JAX's `stateless_apply`
    runs inside its stateless scope), so pruned weights are zero again
    after each step without touching the train step. A constraint the
    weight already had runs first.

    On TensorFlow and torch the constraint reads the mask variable in the
    step. JAX's `stateless_apply` maps only the trainable and optimizer
    variables: there the mask comes from the forward pass of the same step
    (`HostUpdates.forward` records its value), so that the compiled
    step reads the mask from its state and sees every host update.

    Args:
        mask: The weight's bool mask variable.
        inner: The weight's own constraint, or None.
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner
        self.traced_mask = None
        # Says why no training forward pass ran (set by `HostUpdates`).
        self.explain_untrained = lambda: "A pruned weight was not trained."

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        mask, self.traced_mask = self.traced_mask, None
        if mask is None:
            if _backend.stateless_optimizer():
                # No training forward pass of this wrapper ran in the step
                # (`HostUpdates.forward` records the mask), so the mask is
                # not in the step's state.
                raise ValueError(self.explain_untrained())
            mask = self.mask.value
        return _backend.zero_pruned(w, mask)


class HostUpdates:
    """Runs a model's mask updates from the host while `fit` trains it.

    Args:
        model: The model `fit` trains; `eligible(model)` must be True.
        step: The model's `pruning_step` when `fit` starts.
    """

    def __init__(self, model, step):
        self.model = model
        groups.link(model)
        self.wrappers = strip.pruning_wrappers(model)
        self.owners, seen = [], set()
        for wrapper, own in state.wrapper_steps(self.wrappers):
            key = id(wrapper if wrapper._group is None else wrapper._group)
            if key in seen:
                continue
            seen.add(key)
            self.owners.append(Owner(wrapper, own - step))
        self._in_step_train_function = None
        self._constraints = []
        self._planned = (0, 0)
        self._events = {}
        self._armed = None

    def start(self):
        """Enters host mode: zeroes pruned weights, constrains them, and
        gives `fit` a train function that runs the wrappers in host mode.

        The train step itself is Keras' own: Keras applies `ZeroPruned`
        after each optimizer update, and the wrappers, while the train
        function runs (`_guarded_train_function`), skip masking and mask
        updates and only count the step (`forward`).
        """
        model = self.model
        previous = active(model)
        if previous is not None:  # a `fit` that raised never reached stop()
            previous.stop()
        model._keras_prune_host_updates = self
        for wrapper in self.wrappers:
            wrapper.apply_masks()
            object.__setattr__(wrapper, "_host_attached", self)
        trainable = {id(v) for v in model.trainable_variables}
        self._constraints = []
        for wrapper in self.wrappers:
            for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
                if id(weight) not in trainable:
                    continue
                own = weight.constraint
                constraint = ZeroPruned(mask, own)
                constraint.explain_untrained = functools.partial(
                    state.training_message, model, [wrapper]
                )
                self._constraints.append((weight, own, constraint))
                weight.constraint = constraint
        in_step = self._in_step_train_function = model.train_function
        cached = getattr(model, "_keras_prune_host_train", None)
        if cached is not None and cached[0] is in_step:
            compiled = cached[1]
        else:
            # Keras' own train step, traced in host mode when first called
            # (inside `_guarded_train_function`), apart from the in-step
            # traces.
            compiled = _backend.separate_train_function(model)
            model._keras_prune_host_train = (in_step, compiled)
        model.train_function = _guarded_train_function(self, compiled)
        self._armed = None

    def arm(self):
        """Announces that `fit` runs one train step next (batch begin)."""
        self._armed = _fit_token(self.model)

    def run_layer(self, wrapper, args, kwargs):
        """`wrapper.__call__` in host mode: calls its layer as it is.

        During `fit` with host updates the weights are exactly sparse: the
        layer runs as it is and Keras' call handling runs once, not twice
        (~30 us per call on torch).

        Args:
            wrapper: A `PruneLowMagnitude` of this model.
            args: The call's positional arguments.
            kwargs: The call's keyword arguments (a dict of the wrapper's
                call, consumed).

        Returns:
            The layer's outputs.
        """
        training = kwargs.pop("training", None)
        if training is None:  # as Keras resolves it: the outer call's
            training = layer_call.outer_training()
        mask = kwargs.pop("mask", None)
        self.forward(wrapper, training)
        kwargs = layer_call.layer_kwargs(
            wrapper._call_params, kwargs, training, mask
        )
        params = wrapper._call_params
        if (
            training is not None
            and "training" not in params
            and not any(p.kind is p.VAR_KEYWORD for p in params.values())
        ):
            # A layer whose call takes no `training` still passes it on to
            # the layers it calls, as Keras' `__call__` (skipped here)
            # would: Keras drops the argument and keeps it in the call
            # context. Otherwise a wrapper inside it (a token embedding
            # held by `TokenAndPositionEmbedding` and `MaskedLMHead`) never
            # saw `training=True` on JAX, whose `fit` opens no context.
            kwargs["training"] = training
        return wrapper.layer(*args, **kwargs)

    def call_layer(self, wrapper, args, kwargs, training):
        """`wrapper.call` in host mode: the weights are exactly sparse and
        Keras zeroes pruned weights after each update (`ZeroPruned`), so
        no masking and no update; the step is counted.

        Args:
            wrapper: A `PruneLowMagnitude` of this model.
            args: The layer's positional arguments.
            kwargs: The layer's keyword arguments (`layer_call.layer_kwargs`).
            training: The call's `training`.

        Returns:
            The layer's outputs.
        """
        self.forward(wrapper, training)
        return wrapper.layer.call(*args, **kwargs)

    def forward(self, wrapper, training):
        """A host-mode forward pass of `wrapper` (from its `__call__`).

        Counts the step once per training forward pass, as the in-step
        update does, and on JAX records the masks' values in the step for
        `ZeroPruned` (see there): traced under `jit`, concrete with
        `run_eagerly=True` (the step's state either way).
        """
        if training is not True or not controller.first_call_in_forward_pass(
            wrapper
        ):
            return
        _backend.count_step(wrapper.pruning_step)
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            constraint = weight.constraint
            if isinstance(constraint, ZeroPruned):
                if _backend.stateless_optimizer():
                    # Traced in a compiled step; a value under
                    # `run_eagerly=True`, whose step is not compiled.
                    constraint.traced_mask = mask.value

    def _set_wrappers(self, on):
        for wrapper in self.wrappers:
            object.__setattr__(wrapper, "_host_updates", self if on else None)
        if not on:
            for _, _, constraint in self._constraints:
                constraint.traced_mask = None

    def stop(self):
        """Back to in-step updates (for custom loops and other `fit`s)."""
        model = self.model
        if active(model) is not self:
            return
        model._keras_prune_host_updates = None
        self._set_wrappers(False)
        for wrapper in self.wrappers:
            object.__setattr__(wrapper, "_host_attached", None)
        for weight, own, constraint in self._constraints:
            if weight.constraint is constraint:
                weight.constraint = own
        self._constraints = []
        model.train_function = self._in_step_train_function

    def finish(self):
        """Zeroes the pruned weights once more at the end of `fit`.

        Host mode keeps the stored pruned weights at zero after every step,
        but `fit` ends with `optimizer.finalize_variable_values`, which may
        write other values (`use_ema=True` swaps in the moving averages,
        nonzero where weights were pruned), just before `on_train_end`.
        The model state must be synced (JAX). Skipped where that call
        writes nothing (`_finalize_writes`): reading every pruned weight
        back cost ResNet50 0.12 s per `fit` on TensorFlow.
        """
        if active(self.model) is self and _finalize_writes(
            self.model.optimizer
        ):
            for wrapper in self.wrappers:
                if wrapper.built:
                    wrapper.apply_masks()

    def due(self, step):
        """The owners whose schedule updates masks at `step`, with sparsity."""
        first, stop = self._planned
        if not first <= step < stop:
            self._plan(step, _PLAN_STEPS)
        return self._events.get(step, [])

    def _plan(self, first, count):
        """Evaluates the schedules for steps `[first, first + count)`."""
        self._events, tables = {}, {}
        # A table stops before a step with an invalid schedule value
        # (`schedules.evaluate_range`): plan up to there, and the next plan,
        # from that step, raises the schedule's ValueError.
        keys = []
        if not all(
            schedules.is_builtin(owner.wrapper.pruning_schedule)
            for owner in self.owners
        ):
            # A user's schedule is Python called once per step, as in-step
            # updates call it (planning ahead saves nothing there: ~4 us a
            # step either way). Its value may depend on state that changes
            # during `fit` (a target a callback raises at epoch end): a value
            # planned 256 steps ahead was stale.
            count = 1
        for owner in self.owners:
            schedule = owner.wrapper.pruning_schedule
            key = (id(schedule), owner.step_offset)
            if key not in tables:  # layers usually share one schedule
                tables[key] = schedules.evaluate_range(
                    schedule, first + owner.step_offset, count
                )
                count = min(count, len(tables[key]))
            keys.append(key)
        for owner, key in zip(self.owners, keys):
            for i, (should_prune, sparsity) in enumerate(tables[key][:count]):
                if should_prune:
                    self._events.setdefault(first + i, []).append(
                        (owner, float(sparsity))
                    )
        self._planned = (first, first + count)

    def update(self, due):
        """Runs the updates `due` returned (the model state must be synced)."""
        for owner, sparsity in due:
            owner.update(sparsity)


def _fit_token(model):
    """What identifies the running `fit`: the `History` it attached.

    Each `fit` sets a new `model.history` before it starts; an arm left over
    from a `fit` that raised between a batch begin and its train step does
    not match the next `fit`'s.
    """
    history = getattr(model, "history", None)
    return model if history is None else history


def _guarded_train_function(host, compiled):
    """`model.train_function` in host mode: runs only after `arm()`.

    `fit` with `UpdatePruningStep` calls the callback's batch begin (which
    arms it for this `fit`, `_fit_token`) and then this function, once per
    batch; the wrappers are in host mode only while it runs (on JAX and
    TensorFlow: while Keras' step is traced), so nothing else that calls
    the model meanwhile (validation, a callback's `predict`, a train step
    called by hand) skips masking or mask updates. Called without the arm
    (a later `fit` without the callback, after a `fit` that raised before
    `on_train_end`), it switches the model back to in-step updates and runs
    the in-step train function instead.

    This is the one thing host mode replaces on the model: Keras' public
    `train_function` attribute (which `make_train_function` sets), never
    `train_step`.
    """
    model = host.model

    def train_function(*args, **kwargs):
        if host._armed is not _fit_token(model) or active(model) is not host:
            host.stop()
            if model.train_function is None or model.train_function is (
                train_function
            ):
                model.make_train_function(force=True)
            return model.train_function(*args, **kwargs)
        host._armed = None
        host._set_wrappers(True)
        try:
            return compiled(*args, **kwargs)
        finally:
            host._set_wrappers(False)

    return train_function
