"""Calling a wrapped layer through its wrapper, as Keras would call it.

`PruneLowMagnitude` stands where its layer stood in a model: Keras must
see the layer's call arguments, the layer must be built from every tensor
it is given, and the layer must run with some of its variables replaced by
tensors (`w * mask`) without writing to them. This module holds that
plumbing; the wrapper only decides what to replace.

- `mirror_signature`: the wrapper declares its layer's call parameters.
- `first_argument_positional`, `layer_kwargs`: the arguments the layer
  takes, in the form its `call` takes them.
- `build_from_inputs`: builds a layer that takes several tensors.
- `call_with_weights`: runs the layer in a nested `keras.StatelessScope`.
- `call_context`, `outer_training`: the call context Keras opened.
"""

import inspect
import weakref

import keras
import numpy as np
from keras import tree
from keras.src.backend import get_stateless_scope
from keras.src.backend.common import global_state


def call_context():
    """The call context the outermost layer opened (Keras' `CallContext`:
    `entry_layer`, `training`), or None outside any layer call."""
    return global_state.get_global_attribute("current_call_ctx")


def stateless_scope():
    """The current `keras.StatelessScope` (JAX's `stateless_call`), or None."""
    return get_stateless_scope()


def outer_training():
    """`training` as Keras resolves it for a call that does not pass it:
    the outer call's."""
    return getattr(call_context(), "training", None)


def stand_in(wrapper, layer):
    """Makes `wrapper` take `layer`'s place in calls (from its `__init__`).

    The wrapper takes the layer's input shape (as in tfmot: a Sequential
    starting with it is built), its variable scope when it is swapped into
    a built model (`<model>/<wrapper>/...`), its activity regularizer (the
    wrapper runs `layer.call`, so its own `__call__` records the loss), its
    masking support and its call signature (`mirror_signature`); it keeps
    the layer's call parameters as `wrapper._call_params`.

    Args:
        wrapper: The wrapping layer, just initialised.
        layer: The wrapped layer.
    """
    if (
        getattr(wrapper, "_input_shape_arg", None) is None
        and getattr(layer, "_input_shape_arg", None) is not None
    ):
        wrapper._input_shape_arg = layer._input_shape_arg
    if getattr(layer, "_parent_path", None) is not None:
        wrapper._parent_path = layer._parent_path
    wrapper.activity_regularizer = layer.activity_regularizer
    wrapper._call_params = inspect.signature(layer.call).parameters
    mirror_signature(wrapper, wrapper._call_params)
    wrapper.supports_masking = getattr(layer, "supports_masking", False)


def mirror_signature(wrapper, params):
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

    Args:
        wrapper: The wrapping layer (its Keras call attributes are set).
        params: `inspect.signature(layer.call).parameters`.
    """
    params = list(params.values())
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
    wrapper._call_signature = inspect.Signature(params)
    wrapper.call_signature_parameters = [p.name for p in params]
    wrapper._call_has_training_arg = True
    wrapper._call_has_mask_arg = "mask" in wrapper.call_signature_parameters
    wrapper._call_has_context_arg = {
        arg: arg in wrapper.call_signature_parameters
        for arg in wrapper._call_context_args
    }


def first_argument_positional(params, args, kwargs):
    """Passes the layer's first call argument positionally.

    A layer called with keywords only (`mha(query=x, value=x)`) is called
    the same way through the wrapper, whose `call` takes the first
    argument as `inputs`.

    Args:
        params: The layer's call parameters.
        args: Positional call arguments.
        kwargs: Keyword call arguments.

    Returns:
        `(args, kwargs)`.
    """
    if args or not kwargs:
        return args, kwargs
    first = next(iter(params), None)
    if first is None or first not in kwargs:
        return args, kwargs
    kwargs = dict(kwargs)
    return (kwargs.pop(first),), kwargs


def layer_kwargs(params, kwargs, training=None, mask=None):
    """`kwargs` plus `training` and `mask` where the layer takes them.

    Args:
        params: The layer's call parameters.
        kwargs: Keyword arguments for the layer.
        training: The call's `training`.
        mask: The call's Keras mask, or None.

    Returns:
        A new dict.
    """
    kwargs = dict(kwargs)
    if "training" in params:
        kwargs["training"] = training
    if "mask" in params and mask is not None:
        kwargs["mask"] = mask
    return kwargs


def _is_tensor(x):
    return isinstance(x, (keras.KerasTensor, np.ndarray)) or (
        keras.ops.is_tensor(x)
    )


def build_from_inputs(layer, args, kwargs):
    """Builds a layer that takes several tensors (MultiHeadAttention).

    Keras only gives `build()` the shape of the first input, so a layer
    called with more tensors is built by calling it once on symbolic
    tensors of the same shapes. Nothing happens when the call has one
    tensor.

    Args:
        layer: The unbuilt layer.
        args: Positional call arguments.
        kwargs: Keyword call arguments.
    """
    if not any(_is_tensor(x) for x in tree.flatten((args[1:], kwargs))):
        return

    def spec(x):
        if not _is_tensor(x):
            return x
        return keras.KerasTensor(
            x.shape, dtype=keras.backend.standardize_dtype(x.dtype)
        )

    sym_args, sym_kwargs = tree.map_structure(spec, (args, kwargs))
    layer(*sym_args, **sym_kwargs)


def call_with_weights(wrapper, args, overrides, kwargs):
    """Calls the wrapped layer with some variables replaced by tensors.

    The layer runs inside a nested `keras.StatelessScope` that maps each
    variable to its override (by `id`) or its value, so the variables are
    never written. Updates of the layer's non-trainable variables
    (BatchNormalization's statistics) are written back, and its losses are
    added to the wrapper.

    Args:
        wrapper: The wrapper; `wrapper.layer` is called.
        args: Positional call arguments.
        overrides: `{id(variable): tensor}`.
        kwargs: Keyword arguments for the layer (`layer_kwargs`).

    Returns:
        The layer's outputs.
    """
    layer = wrapper.layer
    outer = get_stateless_scope()
    collect_losses = bool(outer is not None and outer.collect_losses)
    mapping = [
        (v, overrides[id(v)] if id(v) in overrides else v.value)
        for v in layer.variables
    ]
    with keras.StatelessScope(
        state_mapping=mapping, collect_losses=collect_losses
    ) as scope:
        outputs = layer.call(*args, **kwargs)
    given = dict((id(v), value) for v, value in mapping)
    for v in layer.non_trainable_variables:
        new_value = scope.get_current_value(v)
        if new_value is not None and new_value is not given.get(id(v)):
            v.assign(new_value)
    for loss in scope.losses:
        wrapper.add_loss(loss)
    _regularize_overrides(wrapper, layer, overrides)
    return outputs


def _regularize_overrides(wrapper, layer, overrides):
    """Makes weight regularization see the overrides, as the call does.

    Keras adds `variable.regularizer(variable)` to the model's losses, from
    the stored value: for a pruned weight read as `w * mask`, that is the
    penalty of weights the forward pass never uses, and the loss `fit`
    reported was that much higher than with `UpdatePruningStep` (whose
    stored pruned weights are zero) or in tfmot. Once per forward pass the
    wrapper adds the difference:

    - for Keras' elementwise penalties (`L1`, `L2`, `L1L2`), minus the
      penalty of the pruned entries, `-regularizer(w - w * mask)`: its
      gradient is exactly zero on kept weights and cancels Keras' term on
      pruned ones, so training is that of stored zeros (bit for bit but
      for the order in which XLA sums gradients);
    - for any other regularizer, `regularizer(w * mask) - regularizer(w)`.
    """
    regularized = [
        v
        for v in layer.trainable_weights
        if v.regularizer is not None and id(v) in overrides
    ]
    if not regularized:
        return
    if not first_in_forward_pass(wrapper, "_regularized_in"):
        return  # a layer used twice: Keras counts its weights once
    for v in regularized:
        stored, used = v.value, overrides[id(v)]
        penalty = v.regularizer
        if type(penalty) in ELEMENTWISE_PENALTIES:
            correction = -penalty(stored - used)  # exact: the pruned entries
        else:
            correction = penalty(used) - penalty(stored)
        wrapper.add_loss(correction)


# Regularizers that are sums of one term per weight: the kept weights'
# gradients do not depend on the pruned weights' values.
ELEMENTWISE_PENALTIES = (
    keras.regularizers.L1,
    keras.regularizers.L2,
    keras.regularizers.L1L2,
)


def first_in_forward_pass(wrapper, slot):
    """Whether this call of `wrapper` is its first in the forward pass.

    The wrapper remembers, in its attribute `slot`, the forward pass it
    last answered True for (a weak reference: a traced step's scope is not
    kept alive), so each user of this (`slot`) gets one True per pass.

    Args:
        wrapper: The wrapper being called.
        slot: Name of the wrapper attribute that keeps the pass.
    """
    context = forward_pass()
    if context is None or getattr(context, "entry_layer", None) is wrapper:
        return True
    last = wrapper.__dict__.get(slot)
    if last is not None and last() is context:
        return False
    object.__setattr__(wrapper, slot, weakref.ref(context))
    return True


def forward_pass():
    """The object that identifies the current forward pass, or None.

    A forward pass is the stateless scope of `stateless_call` (JAX `fit`
    and custom loops run `model.call` directly, without an outer call
    context), or else the call context an outer layer opened (the model's
    `__call__` on TensorFlow and torch). None when a layer is called on
    its own: every call is then a forward pass.
    """
    context = stateless_scope()
    if context is None:
        context = call_context()
    return context
