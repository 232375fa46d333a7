"""`PruneLowMagnitude`: the layer wrapper that holds masks and prunes.

How it works, on every backend:

- State lives in non-trainable variables of the wrapper: one bool mask and
  one float32 threshold per pruned weight, and an int32 `pruning_step`. They
  thread through jit-compiled steps like BatchNormalization's statistics.
- In a training call, the first time the wrapper runs in a forward pass, it
  evaluates the schedule at `pruning_step` and, when the schedule says so,
  recomputes the masks with `magnitude_mask` math from `|w * mask|`; then it
  increments the step. A layer used twice in one forward pass advances once.
- The forward pass never writes to the kernel (on JAX such writes are
  dropped): the inner layer runs inside a nested `keras.StatelessScope` that
  maps each pruned variable to `w * mask`. Gradients of pruned weights are
  therefore exactly zero.
- Stored kernels are made exactly sparse (`w = w * mask`) at every eager
  point: when the model is saved, and by `strip_pruning`.
- Within `fit` with `UpdatePruningStep`, the wrapper does none of this but
  count steps: the callback updates masks between steps and the train step
  zeroes pruned weights after the optimizer (`host_updates`).
"""

import inspect
import weakref

import keras
import numpy as np
from keras import ops
from keras import tree
from keras.src.backend import get_stateless_scope
from keras.src.backend.common import global_state
from keras.src.utils import tracking

from keras_prune import _backend
from keras_prune.core import masks
from keras_prune.core import schedules
from keras_prune.integration import distribution
from keras_prune.integration import groups
from keras_prune.integration import registry
from keras_prune.integration import spec as _spec
from keras_prune.integration import updater

# The value of a variable, without mixed-precision autocast.
_raw_value = updater.read_raw


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Prunes the weights of a layer to a schedule, during training.

    Usually created by `keras_prune.prune_low_magnitude`. Which weights are
    pruned depends on the layer: kernels of Dense, EinsumDense and all
    convolutions, embeddings, both kernels of recurrent cells (also inside
    RNN, Bidirectional, TimeDistributed), the four kernels of
    MultiHeadAttention, or whatever `get_prunable_weights()` returns.

    Args:
        layer: The layer to prune.
        pruning_schedule: A `PruningSchedule`; default
            `ConstantSparsity(0.5, 0)`.
        block_size: `(rows, cols)`: prune whole blocks over the last two
            axes of each weight, scored by `block_pooling_type` of `|w|`.
            Sparsity is then a fraction of blocks. `(1, 1)`: unstructured.
        block_pooling_type: `'AVG'` or `'MAX'` (used with `block_size`).
        sparsity_m_by_n: `(m, n)`, e.g. `(2, 4)`: `m` zeros in every `n`
            consecutive weights along the input-channel axis. The schedule's
            sparsity `s` makes a fraction `s / (m / n)` of the groups N:M
            (all of them once `s >= m / n`), recomputed at every update.
        pattern: `None` (weights) or `'channel'`: prune whole output
            channels (last axis; axis -2 of conv-transpose kernels) with the
            smallest L2 norms; sparsity is a fraction of channels. Or a
            `keras_prune.Pattern` (`Block`, `NM`, `Channel`, or your own).
        skip_unsupported: Leave unknown sublayers dense instead of raising.
        allocation: `'layer'` (each weight reaches the schedule's sparsity),
            or `'global'` / `'erk'` with `pruning_group` (set by
            `prune_low_magnitude`).
        pruning_group: Internal: `{'id', 'size', 'index', 'allocation'}` of
            the group sharing the budget.
        max_sparsity: With `'global'`: this layer's weights are never pruned
            beyond this sparsity (the total stays exact).
        min_sparsity: With `'global'`: this layer's weights are pruned at
            least this much.
        score: A `keras_prune.Score` (default `Magnitude()`, `|w|`).
        **kwargs: Passed to `keras.layers.Wrapper` (e.g. `name`); an
            unknown keyword raises `TypeError`.

    The arguments are validated by `keras_prune.PruningSpec`, held as
    `pruning_spec` (also readable as attributes, e.g. `wrapper.block_size`).

    Call arguments:
        inputs: Inputs of the wrapped layer.
        training: Masks and the step only change when `True`.
        mask: Keras mask, forwarded when the wrapped layer takes one.
        **kwargs: Forwarded to the wrapped layer.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((64,)),
        keras_prune.prune_low_magnitude(keras.layers.Dense(32)),
        keras.layers.Dense(10),
    ])
    ```
    """

    _is_prune_wrapper = True

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        pattern=None,
        skip_unsupported=False,
        allocation="layer",
        pruning_group=None,
        max_sparsity=None,
        min_sparsity=None,
        score=None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise NotPrunableError(
                "PruneLowMagnitude wraps a keras.layers.Layer, got "
                f"{layer!r} of type {type(layer).__name__}. Pass a layer or "
                "a model to keras_prune.prune_low_magnitude."
            )
        _spec.check_keywords(
            "PruneLowMagnitude",
            kwargs,
            _spec.layer_keywords()
            | set(inspect.signature(PruneLowMagnitude.__init__).parameters),
        )
        kwargs["name"] = (
            kwargs.get("name") or f"prune_low_magnitude_{layer.name}"
        )
        kwargs.pop("activity_regularizer", None)  # the wrapped layer's
        super().__init__(layer, **kwargs)
        if (
            getattr(self, "_input_shape_arg", None) is None
            and getattr(layer, "_input_shape_arg", None) is not None
        ):
            # As in tfmot, the input shape given to the wrapped layer belongs
            # to the wrapper: a Sequential starting with it is built.
            self._input_shape_arg = layer._input_shape_arg
        if getattr(layer, "_parent_path", None) is not None:
            # Swapped into a built model: the wrapper's variables live in
            # the scope its layer was built in (`<model>/<wrapper>/...`).
            self._parent_path = layer._parent_path
        # The wrapper runs `layer.call`, so its own `__call__` records the
        # layer's activity regularization loss.
        self.activity_regularizer = layer.activity_regularizer
        spec = _spec.PruningSpec(
            pruning_schedule=pruning_schedule,
            block_size=block_size,
            block_pooling_type=block_pooling_type,
            sparsity_m_by_n=sparsity_m_by_n,
            pattern=pattern,
            skip_unsupported=skip_unsupported,
            allocation=allocation,
            max_sparsity=max_sparsity,
            min_sparsity=min_sparsity,
            layer_name=layer.name,
            score=score,
        )
        if spec.per_layer:  # a `{name or regex: value}` mapping
            params = spec.for_layer(layer)
            if params is None:
                raise ValueError(
                    "No schedule in `pruning_schedule` matches layer "
                    f"{layer.name!r}."
                )
            spec = _spec.PruningSpec(**params, layer_name=layer.name)
        if (spec.allocation == "layer") != (pruning_group is None):
            raise ValueError(
                f"allocation={allocation!r} on a single layer: global and ERK "
                "budgets are shared by the layers of a model, so pass the "
                "model to keras_prune.prune_low_magnitude(model, "
                f"allocation={allocation!r})."
            )
        with tracking.DotNotTrackScope():
            self.pruning_spec = spec
        if (
            not schedules.is_builtin(self.pruning_schedule)
            and keras.backend.backend() == "tensorflow"
        ):
            # A host schedule runs through tf.numpy_function (a user's
            # in-graph schedule too, to report an invalid value), which XLA
            # cannot compile: Keras then trains this model without XLA
            # (`jit_compile=True` falls back with a warning).
            self.supports_jit = False
        with tracking.DotNotTrackScope():
            # The group's `{'id', 'size', 'index', 'allocation'}`; the group
            # itself comes from `prune_low_magnitude` or, for a wrapper made
            # from its config, from its model (`groups.link`).
            self._group_config = (
                None if pruning_group is None else dict(pruning_group)
            )
            self._linked_group = (
                None
                if pruning_group is None
                else groups.PruningGroup.join(self, self._group_config)
            )
        if not self.skip_unsupported:
            registry.find_unsupported(layer)
        self._call_params = inspect.signature(layer.call).parameters
        self._mirror_call_signature()
        self.supports_masking = getattr(layer, "supports_masking", False)
        self._last_call_context = None
        # The `host_updates.HostUpdates` while its train function runs the
        # mask updates from the host (`UpdatePruningStep` in `fit`): the
        # weights then hold `w * mask`. None otherwise.
        self._host_updates = None
        # The `HostUpdates` from its start to its stop (host mode on).
        self._host_attached = None
        # A list while `UpdatePruningStep` collects invalid schedule values
        # (see `_evaluate_on_host`).
        self._schedule_errors = None

    # The pruning arguments, as validated by `self.pruning_spec` (read-only).
    pruning_schedule = property(lambda self: self.pruning_spec.pruning_schedule)
    block_size = property(lambda self: self.pruning_spec.block_size)
    block_pooling_type = property(
        lambda self: self.pruning_spec.block_pooling_type
    )
    sparsity_m_by_n = property(lambda self: self.pruning_spec.sparsity_m_by_n)
    pattern = property(lambda self: self.pruning_spec.pattern)
    skip_unsupported = property(lambda self: self.pruning_spec.skip_unsupported)
    allocation = property(lambda self: self.pruning_spec.allocation)
    max_sparsity = property(lambda self: self.pruning_spec.max_sparsity)
    min_sparsity = property(lambda self: self.pruning_spec.min_sparsity)
    score = property(lambda self: self.pruning_spec.score)

    def _mirror_call_signature(self):
        """Makes Keras see the wrapped layer's call arguments as the wrapper's.

        Keras inspects the call signature to sort arguments (tensors, masks,
        `training`): the wrapper's own `call(inputs, *args, **kwargs)` would
        put every keyword in one `kwargs` argument, and Keras refuses one
        argument mixing tensors and other values (a Keras-Hub decoder's
        `self_attention_cache=tensor, self_attention_cache_update_index=0`).
        So the wrapper declares its layer's parameters, plus `training`.
        Keras records `mask=None` in the graph of a Functional model for a
        layer whose `call` takes a mask: the wrapper takes a mask only when
        its layer does, so that `strip_pruning` never hands the layer an
        argument it does not take.
        """
        params = list(self._call_params.values())
        names = [p.name for p in params]
        if "training" not in names:
            training = inspect.Parameter(
                "training", inspect.Parameter.KEYWORD_ONLY, default=None
            )
            var_kw = [
                i
                for i, p in enumerate(params)
                if p.kind is inspect.Parameter.VAR_KEYWORD
            ]
            params.insert(var_kw[0] if var_kw else len(params), training)
        self._call_signature = inspect.Signature(params)
        self.call_signature_parameters = [p.name for p in params]
        self._call_has_training_arg = True
        self._call_has_mask_arg = "mask" in self.call_signature_parameters
        self._call_has_context_arg = {
            arg: arg in self.call_signature_parameters
            for arg in self._call_context_args
        }

    @property
    def _group(self):
        """The `groups.PruningGroup` sharing this layer's budget, or None
        (`allocation='layer'`)."""
        if self._group_config is None:
            return None
        if self._linked_group is None:
            self._link_from_call()
            if self._linked_group is None:
                groups.link_graph(self)
            if self._linked_group is None:
                return groups.unlinked(self)
        return self._linked_group

    def _set_group(self, group):
        object.__setattr__(self, "_linked_group", group)

    def _link_from_call(self):
        """Links the groups of the model this call runs in (`groups.link`):
        the outermost layer called, as Keras records it."""
        context = global_state.get_global_attribute("current_call_ctx")
        entry = getattr(context, "entry_layer", None)
        if entry is not None and entry is not self:
            groups.link(entry)

    # ----------------------------------------------------------------- build

    def __call__(self, *args, **kwargs):
        args, kwargs = self._first_argument_positional(args, kwargs)
        if self._group_config is not None and self._linked_group is None:
            self._link_from_call()
        if self._host_updates:
            # During `fit` with host updates the weights are exactly sparse:
            # the layer runs as it is and Keras' call handling runs once,
            # not twice (~30 us per call on torch).
            training = kwargs.pop("training", None)
            if training is None:  # as Keras resolves it: the outer call's
                context = global_state.get_global_attribute("current_call_ctx")
                training = getattr(context, "training", None)
            mask = kwargs.pop("mask", None)
            self._host_updates.forward(self, training)
            return self.layer(
                *args, **self._layer_kwargs(kwargs, training, mask)
            )
        if not self.built and not self.layer.built:
            self._build_layer_from_inputs(args, kwargs)
        return super().__call__(*args, **kwargs)

    def _first_argument_positional(self, args, kwargs):
        """Passes the layer's first call argument positionally.

        A layer called with keywords only (`mha(query=x, value=x)`) is
        called the same way through the wrapper, whose `call` takes the
        first argument as `inputs`.
        """
        if args or not kwargs:
            return args, kwargs
        first = next(iter(self._call_params), None)
        if first is None or first not in kwargs:
            return args, kwargs
        kwargs = dict(kwargs)
        return (kwargs.pop(first),), kwargs

    def _build_layer_from_inputs(self, args, kwargs):
        """Builds a layer that takes several tensors (MultiHeadAttention).

        Keras only gives `build()` the shape of the first input, so a layer
        called with more tensors is built by calling it once on symbolic
        tensors of the same shapes.
        """

        def is_tensor(x):
            return isinstance(x, (keras.KerasTensor, np.ndarray)) or (
                keras.ops.is_tensor(x)
            )

        if not any(is_tensor(x) for x in tree.flatten((args[1:], kwargs))):
            return

        def spec(x):
            if not is_tensor(x):
                return x
            return keras.KerasTensor(
                x.shape, dtype=keras.backend.standardize_dtype(x.dtype)
            )

        sym_args, sym_kwargs = tree.map_structure(spec, (args, kwargs))
        self.layer(*sym_args, **sym_kwargs)

    def build(self, input_shape=None):
        if not self.layer.built:
            # Variable paths stay those of the unwrapped layer, so that a
            # LayoutMap written for the unpruned model still applies.
            distribution.keep_unwrapped_path(self.layer, self)
            self.layer.build(input_shape)
        weights = registry.prunable_weights(self.layer, self.skip_unsupported)
        if not weights:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has "
                "no weights to prune. Leave it unwrapped (prune_low_magnitude "
                "on a whole model does this for you)."
            )
        self.pruning_spec.check_fits(
            self.layer.name,
            weights,
            [registry.owner_of(self.layer, w) for w in weights],
        )
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            dtype="int32",
            initializer=distribution.state_initializer(0),
            trainable=False,
        )
        masks_, thresholds = [], []
        for w in weights:
            masks_.append(
                distribution.add_state_weight(  # sharded like `w`
                    self,
                    like=w,
                    name=f"{w.name}_mask",
                    shape=w.shape,
                    dtype="bool",
                    initializer=distribution.state_initializer(True),
                    trainable=False,
                )
            )
            thresholds.append(
                distribution.add_state_weight(  # replicated
                    self,
                    name=f"{w.name}_threshold",
                    shape=(),
                    dtype="float32",
                    initializer=distribution.state_initializer(0.0),
                    trainable=False,
                )
            )
        self.nonfinite_count = self.add_weight(
            name="nonfinite_count",
            shape=(),
            dtype="int32",
            initializer=distribution.state_initializer(0),
            trainable=False,
        )
        with tracking.DotNotTrackScope():
            self.pruned_weights = weights
            self.masks = masks_
            self.thresholds = thresholds
        if getattr(self.layer, "get_prunable_weights", None) is None:
            # tfmot's wrapper gives a built-in layer this method: the
            # wrapped layer answers which of its weights are pruned.
            pruned = list(weights)

            def get_prunable_weights():
                return list(pruned)

            # Marked so that `registry` still decides by the layer's kind.
            get_prunable_weights.added_by_keras_prune = True
            object.__setattr__(
                self.layer, "get_prunable_weights", get_prunable_weights
            )
        self.built = True

    @property
    def pruning_vars(self):
        """List of `(weight, mask, threshold)` variables, as in tfmot.

        Empty until the wrapper is built.
        """
        if getattr(self, "masks", None) is None:
            return []
        return list(zip(self.pruned_weights, self.masks, self.thresholds))

    # ------------------------------------------------------------------ call

    @staticmethod
    def _forward_pass():
        """The object that identifies the current forward pass, or None.

        A forward pass is the stateless scope of `stateless_call` (JAX `fit`
        and custom loops run `model.call` directly, without an outer call
        context), or else the call context an outer layer opened (the
        model's `__call__` on TensorFlow and torch). None when this layer is
        called on its own: every call is then a forward pass.
        """
        context = get_stateless_scope()
        if context is None:
            context = global_state.get_global_attribute("current_call_ctx")
        return context

    def _first_call_in_forward_pass(self):
        context = self._forward_pass()
        if context is None or getattr(context, "entry_layer", None) is self:
            return True
        last = self._last_call_context
        if last is not None and last() is context:
            return False
        # A weak reference: do not keep a traced step's tensors alive.
        object.__setattr__(self, "_last_call_context", weakref.ref(context))
        return True

    _read = staticmethod(_raw_value)

    def _schedule_at(self, step):
        schedule = self.pruning_schedule
        if schedule.in_graph:
            should_prune, sparsity = schedule(step)
            should_prune = ops.cast(should_prune, "bool")
            sparsity = ops.cast(sparsity, "float32")
            if schedules.is_builtin(schedule):
                return should_prune, sparsity  # valid by construction
            # A user's in-graph schedule: an invalid value (NaN fails both
            # comparisons) re-evaluates it on the host, where the check
            # raises; valid values cost one comparison.
            valid = ops.logical_and(
                ops.greater_equal(sparsity, 0.0), ops.less_equal(sparsity, 1.0)
            )
            return _backend.cond(
                valid,
                lambda: (should_prune, sparsity),
                lambda: _backend.host_call(self._evaluate_on_host, step),
            )
        return _backend.host_call(self._evaluate_on_host, step)

    def _evaluate_on_host(self, step):
        """`schedules.evaluate` at `step`, run from inside the train step.

        An invalid value (`schedules.check_value`) raises `ValueError`. A
        Python exception inside `jax.pure_callback` or `tf.numpy_function`
        reaches the caller as the backend's runtime error (with the same
        message), so while `UpdatePruningStep` watches this wrapper
        (`_schedule_errors` is a list) on JAX and TensorFlow, the error is
        recorded instead, this step does not update the masks, and the
        callback raises the `ValueError` at its next hook.
        """
        try:
            return schedules.evaluate(self.pruning_schedule, step)
        except ValueError as error:
            sink = self._schedule_errors
            if sink is None:
                raise
            sink.append(error)
            return False, np.float32(0.0)

    def mask_update(self):
        """The `updater.MaskUpdate` of this wrapper's own masks (built)."""
        cached = self.__dict__.get("_mask_update")
        if cached is None:
            cached = updater.MaskUpdate.for_wrappers([self])
            object.__setattr__(self, "_mask_update", cached)
        return cached

    def _update_own_masks(self, should_prune, sparsity):
        """Recomputes this wrapper's masks when `should_prune`.

        Returns:
            int32 count of NaN/Inf weights met (masks then unchanged).
        """
        return self.mask_update().update(should_prune, sparsity)

    def _update_masks(self):
        step = ops.convert_to_tensor(self.pruning_step)
        should_prune, sparsity = self._schedule_at(step)
        if self._group is None:
            n_bad = self._update_own_masks(should_prune, sparsity)
        else:
            context = self._forward_pass()
            if context is None or self._group.claim(context):
                n_bad = self._group.update(should_prune, sparsity)
            else:
                n_bad = None  # another member updated the group's masks
        if n_bad is not None:
            self._raise_if_eager_nonfinite(n_bad)
            self.nonfinite_count.assign(
                ops.convert_to_tensor(self.nonfinite_count)
                + ops.cast(n_bad, "int32")
            )
        self.pruning_step.assign(step + 1)

    def update_masks_now(self, sparsity):
        """Eagerly recomputes the masks to `sparsity` (no step change).

        With global or ERK allocation, the masks of the whole group are
        recomputed. Used by `keras_prune.prune_once`.

        Args:
            sparsity: Fraction to prune, in `[0, 1]`.
        """
        sparsity = _spec.fraction(float(sparsity), "sparsity")
        if self._group is None:
            # NumPy for single weights by magnitude; otherwise compiled per
            # (shape, pattern) class, not per layer.
            n_bad = self.mask_update().update_now(sparsity)
        else:
            n_bad = self._group.update(
                ops.convert_to_tensor(True),
                ops.convert_to_tensor(sparsity, "float32"),
            )
        self._raise_if_eager_nonfinite(n_bad)

    def _raise_if_eager_nonfinite(self, n_bad):
        if not masks._is_eager(n_bad):
            return  # Inside a compiled step: UpdatePruningStep reports it.
        if int(ops.convert_to_numpy(n_bad)):
            raise FloatingPointError(nonfinite_message(self))

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if self._host_updates:
            # The weights are exactly sparse and Keras zeroes pruned weights
            # after each update (`host_updates`): no masking, no update
            # here; the step is counted.
            self._host_updates.forward(self, training)
            kwargs = self._layer_kwargs(kwargs, training, mask)
            return self.layer.call(inputs, *args, **kwargs)
        if training is True and self._host_attached is not None:
            # A training call outside host mode's train function (a train
            # step called by hand after a `fit` that raised): back to
            # in-step updates for good (`host_updates.HostUpdates.stop`).
            self._host_attached.stop()
        if training is True and self._first_call_in_forward_pass():
            self._update_masks()
        overrides = {
            id(w): ops.multiply(_raw_value(w), ops.cast(m, w.dtype))
            for w, m in zip(self.pruned_weights, self.masks)
        }
        kwargs = self._layer_kwargs(kwargs, training, mask)
        return self._call_with_weights((inputs,) + args, overrides, kwargs)

    def _layer_kwargs(self, kwargs, training=None, mask=None):
        """`kwargs` plus `training` and `mask` where the layer takes them."""
        kwargs = dict(kwargs)
        if "training" in self._call_params:
            kwargs["training"] = training
        if "mask" in self._call_params and mask is not None:
            kwargs["mask"] = mask
        return kwargs

    def _call_with_weights(self, args, overrides, kwargs):
        """Calls the wrapped layer with some variables replaced by tensors."""
        outer = get_stateless_scope()
        collect_losses = bool(outer is not None and outer.collect_losses)
        inner_vars = self.layer.variables
        mapping = [
            (v, overrides[id(v)] if id(v) in overrides else v.value)
            for v in inner_vars
        ]
        with keras.StatelessScope(
            state_mapping=mapping, collect_losses=collect_losses
        ) as scope:
            outputs = self.layer.call(*args, **kwargs)
        given = dict((id(v), value) for v, value in mapping)
        for v in self.layer.non_trainable_variables:
            new_value = scope.get_current_value(v)
            if new_value is not None and new_value is not given.get(id(v)):
                v.assign(new_value)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return self.layer.compute_output_shape(input_shape, *args, **kwargs)

    def compute_output_spec(self, *args, training=None, mask=None, **kwargs):
        # The wrapped layer sees all of its inputs (not only the first).
        return self.layer.compute_output_spec(
            *args, **self._layer_kwargs(kwargs, training, mask)
        )

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # ------------------------------------------------------------ eager API

    def apply_masks(self):
        """Eagerly sets every pruned weight to `weight * mask` (exact zeros).

        Returns:
            Number of weights set to zero by this call.
        """
        n_changed = 0
        for weight, mask in zip(self.pruned_weights, self.masks):
            value = np.asarray(ops.convert_to_numpy(weight))
            masked = masks.zero_where_not(value, ops.convert_to_numpy(mask))
            # NaN counts as nonzero on both sides.
            n_changed += int(np.count_nonzero(value)) - int(
                np.count_nonzero(masked)
            )
            weight.assign(masked)
        return n_changed

    def save_own_variables(self, store):
        # Saved files always hold exactly sparse weights: the wrapped layer is
        # saved right after this, so bake the masks into it first.
        self.apply_masks()
        super().save_own_variables(store)

    # --------------------------------------------------------------- config

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)  # in the layer's config
        own = self.pruning_spec.get_config()
        own.pop("layer_name", None)
        own["pruning_group"] = (
            None if self._group_config is None else dict(self._group_config)
        )
        # Saved-config key order: pruning_group before max/min_sparsity.
        for key in ("max_sparsity", "min_sparsity"):
            own[key] = own.pop(key)
        config.update(own)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["pruning_schedule"] = keras.saving.deserialize_keras_object(
            config["pruning_schedule"], custom_objects=custom_objects
        )
        return super().from_config(config, custom_objects=custom_objects)


class NotPrunableError(ValueError, TypeError):
    """Raised when what is given to prune is not a layer or a model.

    A `ValueError`, as in tfmot, and a `TypeError` (keras-prune's earlier
    type), so that either `except` clause catches it.
    """


def nonfinite_message(wrapper):
    scope = (
        f"Layer {wrapper.layer.name!r}"
        if wrapper._group is None
        else f"A layer of the {wrapper.allocation!r} pruning group of "
        f"{wrapper.layer.name!r}"
    )
    return (
        f"{scope}: a pruned weight holds NaN or Inf values at a mask update, "
        "so the masks were left unchanged. "
        "Training has diverged: lower the learning rate, clip gradients, or "
        "restore a checkpoint."
    )
