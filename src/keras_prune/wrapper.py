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
"""

import inspect

import keras
import numpy as np
from keras import ops
from keras.src.backend import AutocastScope
from keras.src.backend import StatelessScope
from keras.src.backend import get_stateless_scope
from keras.src.backend.common import global_state
from keras.src.utils import tracking

from keras_prune import _backend
from keras_prune import masks
from keras_prune import registry
from keras_prune import schedules

_POOLING_TYPES = ("AVG", "MAX")


def _default_schedule():
    return schedules.ConstantSparsity(0.5, 0)


def _tuple_of_two_ints(value, name):
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if (
        items is None
        or len(items) != 2
        or not all(isinstance(i, (int, np.integer)) for i in items)
    ):
        raise ValueError(
            f"`{name}` must be a pair of two integers, got {value!r}."
        )
    return tuple(int(i) for i in items)


def _raw_value(variable):
    """The float32 value of a variable, without mixed-precision autocast."""
    with AutocastScope(None):
        return variable.value


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
        block_size: `(1, 1)` only; block sparsity is not implemented yet.
        block_pooling_type: `'AVG'` or `'MAX'` (used with `block_size`).
        sparsity_m_by_n: `None` only; N:M sparsity is not implemented yet.
        skip_unsupported: Leave unknown sublayers dense instead of raising.
        **kwargs: Passed to `keras.layers.Wrapper` (e.g. `input_shape`).

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
        skip_unsupported=False,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "PruneLowMagnitude wraps a keras.layers.Layer, got "
                f"{layer!r} of type {type(layer).__name__}. Pass a layer or "
                "a model to keras_prune.prune_low_magnitude."
            )
        kwargs["name"] = kwargs.get("name") or f"prune_low_magnitude_{layer.name}"
        super().__init__(layer, **kwargs)
        self.pruning_schedule = schedules.get(
            _default_schedule() if pruning_schedule is None else pruning_schedule
        )
        self.block_size = _tuple_of_two_ints(block_size, "block_size")
        if block_pooling_type not in _POOLING_TYPES:
            raise ValueError(
                f"Unsupported pooling type '{block_pooling_type}'. Should be "
                "'AVG' or 'MAX'."
            )
        self.block_pooling_type = block_pooling_type
        if sparsity_m_by_n is not None:
            sparsity_m_by_n = _tuple_of_two_ints(
                sparsity_m_by_n, "sparsity_m_by_n"
            )
        if self.block_size != (1, 1) or sparsity_m_by_n is not None:
            raise NotImplementedError(
                f"Layer {layer.name!r}: block_size={self.block_size} and "
                f"sparsity_m_by_n={sparsity_m_by_n} are not implemented yet "
                "in keras-prune; only unstructured pruning "
                "(block_size=(1, 1), sparsity_m_by_n=None) is available."
            )
        self.sparsity_m_by_n = sparsity_m_by_n
        self.skip_unsupported = skip_unsupported
        if not skip_unsupported:
            registry.find_unsupported(layer)
        self._call_params = inspect.signature(layer.call).parameters
        self.supports_masking = getattr(layer, "supports_masking", False)
        self._last_call_context = None

    # ----------------------------------------------------------------- build

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        weights = registry.prunable_weights(self.layer, self.skip_unsupported)
        if not weights:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has "
                "no weights to prune. Leave it unwrapped (prune_low_magnitude "
                "on a whole model does this for you)."
            )
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
        )
        masks_, thresholds = [], []
        for w in weights:
            masks_.append(
                self.add_weight(
                    name=f"{w.name}_mask",
                    shape=w.shape,
                    dtype="bool",
                    initializer="ones",
                    trainable=False,
                )
            )
            thresholds.append(
                self.add_weight(
                    name=f"{w.name}_threshold",
                    shape=(),
                    dtype="float32",
                    initializer="zeros",
                    trainable=False,
                )
            )
        self.nonfinite_count = self.add_weight(
            name="nonfinite_count",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
        )
        with tracking.DotNotTrackScope():
            self.pruned_weights = weights
            self.masks = masks_
            self.thresholds = thresholds
        self.built = True

    @property
    def pruning_vars(self):
        """List of `(weight, mask, threshold)` variables, as in tfmot."""
        return list(zip(self.pruned_weights, self.masks, self.thresholds))

    # ------------------------------------------------------------------ call

    def _first_call_in_forward_pass(self):
        context = global_state.get_global_attribute("current_call_ctx")
        if context is not None and context is self._last_call_context:
            return False
        object.__setattr__(self, "_last_call_context", context)
        return True

    def _schedule_at(self, step):
        schedule = self.pruning_schedule
        if schedule.in_graph:
            should_prune, sparsity = schedule(step)
            return ops.cast(should_prune, "bool"), ops.cast(sparsity, "float32")
        return _backend.host_call(
            lambda s: schedules.evaluate(schedule, s), step
        )

    def _update_masks(self):
        step = ops.convert_to_tensor(self.pruning_step)
        should_prune, sparsity = self._schedule_at(step)
        n_bad_total = ops.convert_to_tensor(self.nonfinite_count)
        for weight, mask, threshold in self.pruning_vars:
            old_mask = ops.convert_to_tensor(mask)
            old_threshold = ops.convert_to_tensor(threshold)

            def recompute(weight=weight, old_mask=old_mask):
                bits = ops.where(
                    ops.reshape(old_mask, (-1,)),
                    masks.magnitude_bits(_raw_value(weight)),
                    0,
                )
                new_mask, new_threshold, n_bad = masks.mask_from_bits(
                    bits, sparsity, weight.shape
                )
                return new_mask, new_threshold, n_bad

            def keep(old_mask=old_mask, old_threshold=old_threshold):
                return old_mask, old_threshold, ops.convert_to_tensor(0, "int32")

            new_mask, new_threshold, n_bad = _backend.cond(
                should_prune, recompute, keep
            )
            self._raise_if_eager_nonfinite(n_bad, weight)
            ok = ops.equal(n_bad, 0)
            mask.assign(ops.where(ok, new_mask, old_mask))
            threshold.assign(ops.where(ok, new_threshold, old_threshold))
            n_bad_total = n_bad_total + ops.cast(n_bad, "int32")
        self.nonfinite_count.assign(n_bad_total)
        self.pruning_step.assign(step + 1)

    def _raise_if_eager_nonfinite(self, n_bad, weight):
        if not masks._is_eager(n_bad):
            return  # Inside a compiled step: UpdatePruningStep reports it.
        if int(ops.convert_to_numpy(n_bad)):
            raise FloatingPointError(nonfinite_message(self, weight))

    def call(self, inputs, training=None, mask=None, **kwargs):
        if training is True and self._first_call_in_forward_pass():
            self._update_masks()
        overrides = {
            id(w): ops.multiply(_raw_value(w), ops.cast(m, w.dtype))
            for w, m in zip(self.pruned_weights, self.masks)
        }
        if "training" in self._call_params:
            kwargs["training"] = training
        if "mask" in self._call_params and mask is not None:
            kwargs["mask"] = mask
        return self._call_with_weights(inputs, overrides, kwargs)

    def _call_with_weights(self, inputs, overrides, kwargs):
        """Calls the wrapped layer with some variables replaced by tensors."""
        outer = get_stateless_scope()
        collect_losses = bool(outer is not None and outer.collect_losses)
        inner_vars = self.layer.variables
        mapping = [
            (v, overrides[id(v)] if id(v) in overrides else v.value)
            for v in inner_vars
        ]
        with StatelessScope(
            state_mapping=mapping, collect_losses=collect_losses
        ) as scope:
            outputs = self.layer.call(inputs, **kwargs)
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
            value = ops.convert_to_numpy(weight)
            keep = ops.convert_to_numpy(mask)
            n_changed += int(np.count_nonzero(value[~keep]))
            weight.assign(np.where(keep, value, np.zeros_like(value)))
        return n_changed

    def save_own_variables(self, store):
        # Saved files always hold exactly sparse weights: the wrapped layer is
        # saved right after this, so bake the masks into it first.
        self.apply_masks()
        super().save_own_variables(store)

    # --------------------------------------------------------------- config

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(
                    self.pruning_schedule
                ),
                "block_size": self.block_size,
                "block_pooling_type": self.block_pooling_type,
                "sparsity_m_by_n": self.sparsity_m_by_n,
                "skip_unsupported": self.skip_unsupported,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["pruning_schedule"] = keras.saving.deserialize_keras_object(
            config["pruning_schedule"], custom_objects=custom_objects
        )
        return super().from_config(config, custom_objects=custom_objects)


def nonfinite_message(wrapper, weight):
    return (
        f"Layer {wrapper.layer.name!r}: weight {weight.path!r} holds NaN or "
        "Inf values at a mask update, so its mask was left unchanged. "
        "Training has diverged: lower the learning rate, clip gradients, or "
        "restore a checkpoint."
    )
