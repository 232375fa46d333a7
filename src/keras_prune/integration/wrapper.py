"""`PruneLowMagnitude`: the Keras layer that holds a layer's pruning state.

A thin Keras layer: its variables (`build`: a bool mask and a float32
threshold per pruned weight, an int32 `pruning_step` and `nonfinite_count`,
non-trainable, threaded through compiled steps like BatchNormalization's
statistics), its masked call (the layer runs with each pruned weight read
as `w * mask`: pruned weights get zero gradients and are never written in
the forward pass), saving (stored weights are exactly sparse) and its
config. The rest lives with its owner: `spec.py` (arguments, validated and
serialised), `layer_call.py` (call signature and arguments, the call with
weight overrides), `controller.py` (per-step control: schedule, who
updates, NaN/Inf count, step), `updater.py` (the mask math), `groups.py`
(global/ERK budgets, linked from the model), `host_updates.py` (the
forward pass while `UpdatePruningStep` updates masks from the host).
"""

import inspect
import warnings

import keras
from keras import ops
from keras.src.utils import tracking

from keras_prune.integration import controller
from keras_prune.integration import distribution
from keras_prune.integration import groups
from keras_prune.integration import layer_call
from keras_prune.integration import loading
from keras_prune.integration import registry
from keras_prune.integration import spec as _spec
from keras_prune.integration import stored_sparse
from keras_prune.integration import updater

# The value of a variable, without mixed-precision autocast.
_raw_value = updater.read_raw

# The wrapper's own state: never read from (or written to) its layer, even
# before `build` creates it.
_STATE_NAMES = (
    "pruning_spec",
    "pruning_vars",
    "masks",
    "thresholds",
    "pruned_weights",
    "pruning_step",
    "nonfinite_count",
)
_WRAPPER_STATE = frozenset(("layer",) + _STATE_NAMES)


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
            unknown keyword raises `TypeError`. The wrapper is trainable
            only if its layer is; `trainable=False` freezes the layer too.

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

    def __getattr__(self, name):
        """The wrapped layer's public attributes, read through the wrapper.

        Code that holds the layer uses more than its call: Keras-Hub's
        `Gemma3nTextModel.token_embedding(x, reverse=True)` reads
        `self.embed_tokens.embedding.embeddings`, and its embedding processor
        calls the text model's `embed_tokens` and methods. Once the layer is
        swapped for its wrapper there, those reads find the layer's
        attributes (sublayers, variables, methods, settings). A variable
        read this way is the stored weight: `prune_once` and fit with
        `UpdatePruningStep` store pruned weights as zeros.
        """
        parent = getattr(super(), "__getattr__", None)  # torch: nn.Module
        if parent is not None:
            try:
                return parent(name)
            except AttributeError:
                pass
        if name.startswith("_") or name in _WRAPPER_STATE:
            # The wrapper's own state (`masks` before `build`) is never the
            # layer's attribute of the same name.
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            )
        try:
            layer = self.layer  # torch: found by nn.Module's __getattr__
        except AttributeError:
            layer = None
        if layer is None or not hasattr(layer, name):
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
                + (
                    f" (nor has its layer {layer.name!r})"
                    if layer is not None
                    else ""
                )
            )
        return getattr(layer, name)

    def __setattr__(self, name, value):
        """Writes of the layer's attributes go to the layer.

        What `__getattr__` reads from the layer is written there too, so a
        read after a write sees it and the layer's call uses it
        (`wrapper.activation = relu` was kept by the wrapper alone, and the
        layer still ran its old activation). The wrapper's own attributes,
        and names neither has, stay the wrapper's.
        """
        if not name.startswith("_") and name not in _WRAPPER_STATE:
            layer = self._forwarded_to(name)
            if layer is not None:
                setattr(layer, name, value)
                return
        super().__setattr__(name, value)

    def _forwarded_to(self, name):
        """The layer, if reading `name` from the wrapper reads the layer's
        attribute; else None."""
        if name in self.__dict__ or hasattr(type(self), name):
            return None
        parent = getattr(super(), "__getattr__", None)  # torch: nn.Module
        if parent is not None:
            try:
                parent(name)
                return None
            except AttributeError:
                pass
        try:
            layer = self.layer
        except AttributeError:  # in `__init__`, before the layer is set
            return None
        if layer is None or not hasattr(layer, name):
            return None
        return layer

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
        kwargs = _spec.wrapper_keywords(
            layer, kwargs, inspect.signature(PruneLowMagnitude.__init__)
        )
        super().__init__(layer, **kwargs)
        if self.trainable != layer.trainable:
            # `trainable=False` freezes the layer too, as setting it on the
            # wrapper later does (`Layer.__init__` sets only its own flag).
            keras.layers.Layer.trainable.fset(self, self.trainable)
        layer_call.stand_in(self, layer)
        spec = _spec.for_wrapper(
            layer,
            pruning_group,
            pruning_schedule=pruning_schedule,
            block_size=block_size,
            block_pooling_type=block_pooling_type,
            sparsity_m_by_n=sparsity_m_by_n,
            pattern=pattern,
            skip_unsupported=skip_unsupported,
            allocation=allocation,
            max_sparsity=max_sparsity,
            min_sparsity=min_sparsity,
            score=score,
        )
        with tracking.DotNotTrackScope():
            self.pruning_spec = spec
        groups.attach(self, pruning_group)
        _warn_hidden_attributes(layer)
        if not controller.compiles_with_xla(self.pruning_schedule):
            self.supports_jit = False  # `jit_compile=True` falls back
        if not self.skip_unsupported:
            registry.find_unsupported(layer)
        # Control state: see `controller` (first call in a forward pass,
        # the schedule error sink) and `host_updates` (the `HostUpdates`
        # while its train function runs, and from its start to its stop).
        self._last_call_context = None
        self._schedule_errors = None
        self._host_updates = None
        self._host_attached = None

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

    @property
    def _group(self):
        """The `groups.PruningGroup` sharing this layer's budget, or None
        (`allocation='layer'`); see `groups.of`."""
        return groups.of(self)

    def _set_group(self, group):
        groups.set_group(self, group)

    # ----------------------------------------------------------------- build

    def build(self, input_shape=None):
        if not self.layer.built:
            # Variable paths stay those of the unwrapped layer, so that a
            # LayoutMap written for the unpruned model still applies.
            distribution.keep_unwrapped_path(self.layer, self)
            self.layer.build(input_shape)
        weights = registry.weights_to_wrap(self.layer, self.skip_unsupported)
        owners = [registry.owner_of(self.layer, w) for w in weights]
        registry.check_masks_apply(self.layer.name, weights, owners)
        self.pruning_spec.check_fits(self.layer.name, weights, owners)
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
                    # Not cast by a mixed-precision policy: on torch, an
                    # `assign` inside the layer's autocast scope wrote a
                    # bfloat16 copy and left the threshold at 0.0.
                    autocast=False,
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
            self._weight_owners = owners
            self.masks = masks_
            self.thresholds = thresholds
        registry.answer_prunable_weights(self.layer, weights)
        self.built = True

    @property
    def pruning_vars(self):
        """List of `(weight, mask, threshold)` variables, as in tfmot.

        Empty until the wrapper is built.
        """
        if not self.built or getattr(self, "masks", None) is None:
            return []
        return list(zip(self.pruned_weights, self.masks, self.thresholds))

    # ------------------------------------------------------------------ call

    def __call__(self, *args, **kwargs):
        args, kwargs = layer_call.first_argument_positional(
            self._call_params, args, kwargs
        )
        if self._group_config is not None and self._linked_group is None:
            groups.link_from_call(self)
        self.check_masks_apply()  # quantized or LoRA since it was wrapped
        if self._host_updates:
            return self._host_updates.run_layer(self, args, kwargs)
        if not self.built and not self.layer.built:
            layer_call.build_from_inputs(self.layer, args, kwargs)
        return super().__call__(*args, **kwargs)

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        kwargs = layer_call.layer_kwargs(
            self._call_params, kwargs, training, mask
        )
        if self._host_updates:
            return self._host_updates.call_layer(
                self, (inputs,) + args, kwargs, training
            )
        if training is True:
            controller.training_call(self)  # may update masks and step
        unmasked = stored_sparse.unmasked(self, training)  # torch, eager
        overrides = {
            id(w): ops.multiply(_raw_value(w), ops.cast(m, w.dtype))
            for w, m in zip(self.pruned_weights, self.masks)
            if id(w) not in unmasked
        }
        if not overrides:  # every pruned weight is stored exactly sparse
            return self.layer.call(inputs, *args, **kwargs)
        return layer_call.call_with_weights(
            self, (inputs,) + args, overrides, kwargs
        )

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return self.layer.compute_output_shape(input_shape, *args, **kwargs)

    def compute_output_spec(self, *args, training=None, mask=None, **kwargs):
        # The wrapped layer sees all of its inputs (not only the first).
        kwargs = layer_call.layer_kwargs(
            self._call_params, kwargs, training, mask
        )
        params = inspect.signature(self.layer.compute_output_spec).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            # Its own `compute_output_spec` may take fewer arguments than
            # its `call` (keras-hub's SAM3TextEncoder: no `training`).
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    _read = staticmethod(_raw_value)

    def check_masks_apply(self):
        """Raises `ValueError` if the wrapped layer was quantized or given
        LoRA after it was wrapped (`registry.check_masks_apply`)."""
        if self.built:
            registry.check_masks_apply(
                self.layer.name, self.pruned_weights, self._weight_owners
            )

    # ------------------------------------------------------------- updates

    def mask_update(self):
        """The `updater.MaskUpdate` of this wrapper's own masks (built)."""
        return controller.own_update(self)

    def update_masks_now(self, sparsity):
        """Eagerly recomputes the masks to `sparsity` (no step change).

        With global or ERK allocation, the masks of the whole group are
        recomputed. Used by `keras_prune.prune_once`.

        Args:
            sparsity: Fraction to prune, in `[0, 1]`.
        """
        controller.update_masks_now(self, sparsity)

    # ------------------------------------------------------------ eager API

    def apply_masks(self):
        """Eagerly sets every pruned weight to `weight * mask` (exact zeros).

        Returns:
            Number of weights set to zero by this call.
        """
        return updater.apply_masks(zip(self.pruned_weights, self.masks))

    def save_own_variables(self, store):
        # Saved files always hold exactly sparse weights: the wrapped layer is
        # saved right after this, so bake the masks into it first (a wrapper
        # not built yet has no masks, and saves no variables).
        if self.built:
            self.apply_masks()
        super().save_own_variables(store)
        if self.built:
            # A mask set by hand off the pattern is saved, marked, with a
            # warning: refusing here would leave the user's file truncated.
            loading.mark_masks_off_pattern(self, store)

    def load_own_variables(self, store):
        # A step, mask or count that `assign` would cast into another value
        # (a mask of 0.5, a step of 2**32 + 3) is refused by name.
        super().load_own_variables(loading.checked_state(self, store))

    @property
    def weights(self):
        # Keras' legacy `.h5` loader assigns each variable itself, without
        # `load_own_variables`: it gets variables that check the values.
        return loading.legacy_h5_variables(self, super().weights)

    # --------------------------------------------------------------- config

    def settings_config(self):
        """This wrapper's config without its layer's.

        What a model pruned in place saves for each wrapper (`inplace`): the
        model's own config rebuilds the layer, so the layer's `get_config()`
        is never called (keras-hub 0.32's `LlamaTransformerDecoder` has a
        broken one, yet `LlamaCausalLM` saves).

        Returns:
            `get_config()` without `"layer"`.
        """
        config = keras.layers.Layer.get_config(self)
        config.pop("activity_regularizer", None)  # in the layer's config
        config.update(
            _spec.wrapper_config(self.pruning_spec, self._group_config)
        )
        return config

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)  # in the layer's config
        config.update(
            _spec.wrapper_config(self.pruning_spec, self._group_config)
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["pruning_schedule"] = saved_schedule(config, custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


def saved_schedule(config, custom_objects=None):
    """The schedule of a saved wrapper config (`get_config()`'s form).

    `get_config` always writes the schedule, so a config without one was
    changed or damaged: loading it with the default schedule would train
    with another schedule than the one saved, silently.

    Args:
        config: The wrapper's saved config.
        custom_objects: As for `keras.saving.deserialize_keras_object`.

    Returns:
        The schedule (`_spec.schedule_from_config`).

    Raises:
        ValueError: the config holds no schedule (missing or null).
    """
    if config.get("pruning_schedule") is None:
        raise ValueError(
            f"The saved config of pruning wrapper {config.get('name')!r} "
            "has no 'pruning_schedule': the file was changed or damaged. "
            "Save the model again, or set 'pruning_schedule' to a "
            "schedule's config (e.g. keras.saving.serialize_keras_object("
            "keras_prune.ConstantSparsity(0.5, 0)))."
        )
    return _spec.schedule_from_config(
        config["pruning_schedule"], custom_objects
    )


# The wrapper's own public names that a wrapped layer may have too: its
# settings, its state and its methods.
_OWN_NAMES = (
    _spec.LAYER_FIELDS
    + _STATE_NAMES
    + (
        "mask_update",
        "update_masks_now",
        "apply_masks",
        "check_masks_apply",
        "settings_config",
    )
)


def _warn_hidden_attributes(layer):
    """Warns when the wrapper hides attributes of its layer.

    Reads through the wrapper find the layer's attributes, except those the
    wrapper has itself: code holding the wrapper in place of the layer
    (a model pruned in place) would read the wrapper's `score` or `pattern`
    instead of the layer's, silently.
    """
    hidden = []
    for name in _OWN_NAMES:
        try:
            if hasattr(layer, name):
                hidden.append(name)
        except Exception:  # a property that fails unbuilt
            pass
    if hidden:
        warnings.warn(
            f"Layer {layer.name!r} has attributes {hidden} that its "
            "PruneLowMagnitude wrapper has too: read through the wrapper "
            "they are the wrapper's (pruning state and settings), not the "
            "layer's. Read them from `wrapper.layer`, or rename them in "
            "the layer.",
            stacklevel=3,
        )


# Importable from here, as before `spec` and `controller` held them.
NotPrunableError = _spec.NotPrunableError
nonfinite_message = controller.nonfinite_message
