"""Which weights of a layer are pruned.

Built-in layers are matched with `isinstance`, so subclasses work (tfmot
matches exact classes only). Container layers (RNN, Bidirectional,
TimeDistributed, MultiHeadAttention, nested models, custom layers holding
sublayers) are searched recursively. A custom layer chooses its own weights by
subclassing `PrunableLayer` or defining `get_prunable_weights()`.

Defaults for layers keras-prune does not know (keras-hub's, applications'):

- weights with fewer than two axes longer than 1 (biases, normalization
  scales and offsets, layer scales, class tokens `(1, 1, d)`) are never
  pruned and never block; nor do normalization layers (classes named
  `*Normalization`, `*LayerNorm`, `*Norm`);
- keras-hub's `PositionEmbedding` is left dense (`DENSE_BY_DEFAULT`);
  `register_prunable_weights("PositionEmbedding", ["embeddings"])` prunes
  it; so are, in other layers keras-prune does not know, weights named as
  learned tokens, position or relative embeddings, or biases
  (`DENSE_BY_NAME`: DINOv2's position embeddings and register tokens,
  BLIP-2's query tokens, DeBERTa's relative embedding, Swin's relative
  position bias table);
- keras-hub's `MaskedLMHead`: its untied `output_kernel` (ESM's masked
  LM head) is pruned (`PRUNED_BY_CLASS_NAME`);
- mixture-of-experts banks (classes named `*Experts` or `*MoEBlock`,
  keras-hub's Mixtral, Qwen-MoE, Qwen3-MoE, GPT-OSS experts, Gemma4's
  MoE block): their `(experts, in, out)`
  kernels are pruned;
- token embeddings are pruned like every `Embedding` (tfmot's default),
  keras-hub's `ReversibleEmbedding` included: tied to the output, one mask
  serves both uses; untied, its `reverse_embeddings` (the LM head) is
  pruned too. `layers=lambda l: l.name != "token_embedding"` keeps them
  dense;
- any other layer holding a weight of rank >= 2 raises
  `UnsupportedLayerError`, naming the layer and the fixes.

`weight_decisions` (and `keras_prune.pruning_plan`) list every weight with
the reason it is pruned or skipped.
"""

import warnings

import keras
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv
from keras.src.layers.rnn.conv_lstm import ConvLSTMCell

_L = keras.layers

# Order matters only for readability: classes do not overlap.
PRUNED_WEIGHTS = (
    ((_L.Dense, _L.EinsumDense, BaseConv, BaseConvTranspose), ("kernel",)),
    # Keras 3 names the depthwise kernel of DepthwiseConv1D/2D "kernel".
    ((BaseDepthwiseConv,), ("kernel", "depthwise_kernel")),
    ((BaseSeparableConv,), ("depthwise_kernel", "pointwise_kernel")),
    # `reverse_embeddings`: the untied output projection (LM head) of
    # keras-hub's ReversibleEmbedding, an Embedding subclass.
    ((_L.Embedding,), ("embeddings", "reverse_embeddings")),
    (
        (_L.SimpleRNNCell, _L.LSTMCell, _L.GRUCell, ConvLSTMCell),
        ("kernel", "recurrent_kernel"),
    ),
)

# Layers whose weights are known and deliberately never pruned.
NEVER_PRUNED = tuple(
    cls
    for cls in (
        getattr(_L, name, None)
        for name in (
            "BatchNormalization",
            "LayerNormalization",
            "GroupNormalization",
            "RMSNormalization",
            "UnitNormalization",
            "Normalization",
            "PReLU",
        )
    )
    if cls is not None
)


# Layer classes (matched by class name, so that keras-hub stays optional)
# whose weights are deliberately left dense by default, with the reason.
# `register_prunable_weights` overrides these.
DENSE_BY_DEFAULT = {
    "PositionEmbedding": (
        "position embedding: left dense by default (a small table every "
        "token reads); prune it with keras_prune.register_prunable_weights("
        "'PositionEmbedding', ['embeddings'])"
    ),
    # Recurrent mixers whose projections are `Dense` sublayers (pruned as
    # such); their own weights are small per-channel parameters.
    "Qwen3_5GatedDeltaNet": (
        "gated delta-net mixer's own weights (its causal depthwise "
        "convolution kernel and decay parameters): left dense by default; "
        "its projections are Dense layers and are pruned; prune them with "
        "keras_prune.register_prunable_weights('Qwen3_5GatedDeltaNet', "
        "['conv1d_kernel'])"
    ),
    "RWKV7TimeMix": (
        "RWKV-7 time-mix's own weights (low-rank decay, gate and value "
        "adapters, per-head bonus): left dense by default; its receptance, "
        "key, value and output projections are Dense layers and are pruned; "
        "prune them with keras_prune.register_prunable_weights("
        "'RWKV7TimeMix', [<weight name>])"
    ),
}

# Weights of layers keras-prune does not know, left dense by default by their
# name (lower-cased), with the reason: learned tables that every token or
# position reads, as keras-hub's `PositionEmbedding` (DINOv2's, DeiT's and
# ViTDet's position embeddings, DeBERTa's and T5's relative embeddings,
# XLNet's segment encoding, BLIP-2's query tokens, DINOv2/v3's register
# tokens, Swin's relative position bias table).
# `register_prunable_weights` overrides these. A weight matching none of
# them, of rank >= 2, still blocks (`UnsupportedLayerError`).
DENSE_BY_NAME = (
    (
        lambda name: name.endswith("bias") or "bias_table" in name,
        "bias (or a relative position bias table): never pruned",
    ),
    (
        lambda name: "token" in name,
        "learned tokens (class, register, query or mask tokens): left dense "
        "by default; prune them with keras_prune.register_prunable_weights("
        "<layer class>, [<weight name>])",
    ),
    (
        lambda name: any(
            part in name
            for part in ("position", "embed", "encoding", "rel_pos")
        ),
        "position or relative embedding table: left dense by default (as "
        "keras-hub's PositionEmbedding); prune it with "
        "keras_prune.register_prunable_weights(<layer class>, [<weight "
        "name>])",
    ),
)

# Layers keras-prune knows by class name (so that keras-hub stays
# optional): their weights of these names are pruned, where the layer has
# them. Keras-Hub's `MaskedLMHead` holds an `output_kernel` `(hidden,
# vocab)`, the untied output projection of ESM's masked language model
# (tied heads call the token embedding instead and hold none).
# `register_prunable_weights` overrides these.
PRUNED_BY_CLASS_NAME = {
    "MaskedLMHead": ("output_kernel",),
}

# Layers (matched by class name) that hold a mixture-of-experts bank of
# kernels, each weight `(experts, in, out)` used as one batched matmul over
# its `in` axis (keras-hub's `MixtralMoeExperts`, `QwenMoeExperts`,
# `Qwen3MoeExperts`, `Qwen3_5MoeExperts`, `GptOssExperts`, and Gemma4's
# `Gemma4MoEBlock`, which holds its bank itself): their rank-3 weights are
# pruned (one mask per weight, over all experts; N:M along `in`), their
# per-expert biases `(experts, out)` and scales `(experts,)` are not.
EXPERT_CLASS_SUFFIXES = ("Experts", "MoEBlock", "MoeBlock")

# Extra prunable weights registered by users: class or class name -> names.
_REGISTERED = {}


def register_prunable_weights(layer_class, weight_names):
    """Makes keras-prune prune these weights of a layer class it does not know.

    Also overrides the default of a layer left dense deliberately
    (`DENSE_BY_DEFAULT`, e.g. keras-hub's `PositionEmbedding`). Registration
    is per process: register again before loading a pruned model.

    Args:
        layer_class: A layer class (matched with `isinstance`) or a class
            name (matched against the class and its bases).
        weight_names: Names of the variables to prune (`variable.name`);
            an empty list declares the layer's weights deliberately dense.

    Example:

    ```python
    keras_prune.register_prunable_weights("PositionEmbedding", ["embeddings"])
    pruned = keras_prune.prune_low_magnitude(gpt2_backbone)
    ```
    """
    if not isinstance(layer_class, (type, str)):
        raise TypeError(
            "register_prunable_weights(layer_class, ...) needs a layer class "
            f"or a class name, got {layer_class!r}."
        )
    if not isinstance(weight_names, str):
        try:
            # A generator would be used up by the check below, leaving ()
            # registered: the layer declared dense, silently.
            weight_names = tuple(weight_names)
        except TypeError:
            pass
    if (
        isinstance(weight_names, str)
        or not isinstance(weight_names, tuple)
        or not all(isinstance(n, str) for n in weight_names)
    ):
        raise TypeError(
            "register_prunable_weights(..., weight_names) needs a list of "
            f"variable names, e.g. ['embeddings'], got {weight_names!r}."
        )
    _REGISTERED[layer_class] = tuple(weight_names)


def _class_names(layer):
    return {c.__name__ for c in type(layer).__mro__}


def _registered_names(layer):
    names = _class_names(layer)
    for key, weights in _REGISTERED.items():
        if (isinstance(key, str) and key in names) or (
            isinstance(key, type) and isinstance(layer, key)
        ):
            return weights
    return None


def _check_registered_names(layer, names, own):
    """A name given to `register_prunable_weights` must name a weight.

    None of them naming a weight of a built layer (a misspelling) raises:
    the layer would be left silently unpruned. Some of them naming none
    (a layer built without its bias, say) warns.
    """
    have = [v.name for v in own]
    missing = [n for n in names if n not in have]
    if not missing:
        return
    message = (
        f"register_prunable_weights({type(layer).__name__!r}, "
        f"{list(names)!r}): {missing!r} names no weight of layer "
        f"{layer.name!r}, whose weights are {have!r}"
    )
    if len(missing) == len(names):
        raise ValueError(
            f"{message}: nothing of it would be pruned. Register the "
            f"names of the weights to prune (`variable.name`)."
        )
    warnings.warn(f"{message}; the others are pruned.", stacklevel=4)


def _effective_rank(variable):
    """Number of axes longer than 1: a class token (1, 1, d) counts as 1."""
    return sum(1 for d in variable.shape if d is None or int(d) > 1)


class PrunableLayer:
    """Mixin for custom layers that choose which of their weights are pruned.

    Implement `get_prunable_weights()` returning the layer's variables to
    prune (after `build`). Any layer with such a method is accepted, whether or
    not it subclasses this class (tfmot's duck typing).

    Example:

    ```python
    class MyDense(keras.layers.Dense, keras_prune.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]   # prunes the bias too
    ```
    """

    def get_prunable_weights(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_prunable_weights()."
        )


class UnsupportedLayerError(ValueError):
    """A layer has weights keras-prune does not know how to prune."""


def _own_variables(layer):
    # Operations called in a Functional model (`keras.ops.add(x, 1)`) are
    # not Layers and hold no variables.
    return list(getattr(layer, "_trainable_variables", ())) + list(
        getattr(layer, "_non_trainable_variables", ())
    )


def _is_expert_bank(layer):
    return any(n.endswith(EXPERT_CLASS_SUFFIXES) for n in _class_names(layer))


def _known_names(layer):
    registered = _registered_names(layer)
    if registered is not None:
        return registered
    for classes, names in PRUNED_WEIGHTS:
        if isinstance(layer, classes):
            return names
    for cls_name in _class_names(layer):
        names = PRUNED_BY_CLASS_NAME.get(cls_name)
        if names is None:
            continue
        own = _own_variables(layer)
        if own:  # built: only the names it has (a tied head has none)
            names = tuple(v.name for v in own if v.name in names)
        return names or None
    if _is_expert_bank(layer):
        return tuple(
            v.name
            for v in getattr(layer, "_trainable_variables", ())
            if len(v.shape) == 3
        )
    return None


def _dense_by_name(variable):
    """Why a weight of an unknown layer is left dense by its name, or None."""
    name = variable.name.lower()
    if "kernel" in name:
        # A projection, whatever it mixes (`token_mixing_kernel`,
        # `position_wise_kernel`): unknown, so it must block rather than
        # stay dense silently.
        return None
    for matches, reason in DENSE_BY_NAME:
        if matches(name):
            return reason
    return None


def _chooses_own_weights(layer):
    method = getattr(layer, "get_prunable_weights", None)
    return (
        method is not None
        and not getattr(method, "added_by_keras_prune", False)
        and not getattr(layer, "_is_prune_wrapper", False)
    )


def is_supported(layer):
    """Whether every weight of `layer` is either prunable or known.

    Args:
        layer: A Keras layer (built or not).

    Returns:
        bool.
    """
    try:
        find_unsupported(layer)
    except UnsupportedLayerError:
        return False
    return True


def find_unsupported(layer):
    """Raises `UnsupportedLayerError` naming the first unknown sublayer."""
    _walk(layer, on_unknown="raise", out=None)


def prunable_weights(layer, skip_unsupported=False):
    """The variables of `layer` (and its sublayers) that are pruned.

    Args:
        layer: A built Keras layer.
        skip_unsupported: Leave the weights of unknown sublayers alone
            instead of raising.

    Returns:
        List of variables, without duplicates, in discovery order.

    Raises:
        UnsupportedLayerError: a sublayer has trainable weights that are
            neither prunable nor known, and `skip_unsupported` is False.
    """
    out = []
    _walk(layer, "skip" if skip_unsupported else "raise", out)
    seen, unique = set(), []
    for v in out:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    return unique


def weights_to_wrap(layer, skip_unsupported=False):
    """`prunable_weights` of a layer being wrapped: possibly none.

    A layer wrapped on its own that holds nothing to prune (`Dropout`,
    `Flatten`, `BatchNormalization`) gets a wrapper without masks that
    calls it unchanged, as tfmot's does; `prune_low_magnitude` on a model
    or a list leaves such layers unwrapped.

    The weights of a sublayer that has its own wrapper are left to that
    wrapper: one mask per weight. (Keras-Hub's BLIP-2 calls the token
    embedding held in its `BLIP2OPTEmbeddings` directly as the LM head; the
    embedding layer and its container are both wrapped, and the container
    calls the embedding's wrapper.)
    """
    weights = prunable_weights(layer, skip_unsupported)
    nested = [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if getattr(sub, "_is_prune_wrapper", False)
    ]
    if nested:
        theirs = {
            id(v) for sub in nested for v in prunable_weights(sub.layer, True)
        }
        weights = [v for v in weights if id(v) not in theirs]
    return weights


def has_prunable_weights(layer, skip_unsupported=False):
    """Whether `layer` would get at least one mask (builds nothing)."""
    found = []
    _walk(layer, "skip" if skip_unsupported else "raise", found, names=True)
    return bool(found)


def weight_decisions(layer, skip_unsupported=True):
    """Every weight of `layer` and its sublayers, pruned or not, and why.

    Args:
        layer: A built Keras layer or model.
        skip_unsupported: With False, an unknown layer holding a weight of
            rank >= 2 raises `UnsupportedLayerError` (as pruning does);
            with True it is listed as skipped.

    Returns:
        List of `(owner, variable, pruned, reason)`, one per variable,
        without duplicates: `owner` is the (sub)layer that holds it,
        `pruned` a bool, `reason` a short text.
    """
    out = []
    _walk(layer, "skip" if skip_unsupported else "raise", None, decisions=out)
    seen, unique = set(), []
    for row in out:
        if id(row[1]) not in seen:
            seen.add(id(row[1]))
            unique.append(row)
    return unique


def _prune_reason(layer, variable):
    if isinstance(layer, _L.Embedding):
        if variable.name == "reverse_embeddings":
            return "output projection (LM head, untied from the embeddings)"
        if getattr(layer, "tie_weights", False):
            return (
                "token embedding, tied to the output projection: one mask "
                "for both uses"
            )
        return "embedding table"
    if _registered_names(layer) is not None:
        return "registered with register_prunable_weights"
    if "MaskedLMHead" in _class_names(layer):
        return "output projection (LM head)"
    if _is_expert_bank(layer):
        return (
            "mixture-of-experts kernels (experts, in, out): one mask over "
            "all experts"
        )
    return "kernel"


def _skip_reason(variable):
    name = variable.name
    if name in ("bias", "beta", "gamma", "scale", "offset"):
        return f"{name}: never pruned"
    if name.endswith("bias"):
        return "bias: never pruned"
    if _effective_rank(variable) < 2:
        return (
            "rank < 2 (fewer than two axes longer than 1: a vector, scale "
            "or token), never pruned"
        )
    return "not a prunable weight of this layer"


def _chosen_weights(layer):
    """`layer.get_prunable_weights()`, checked: a list of the layer's own
    variables (a string, a lone variable or a variable of another layer
    would be masked without pruning anything the layer computes with)."""
    chosen = layer.get_prunable_weights()
    if not isinstance(chosen, (list, tuple)):
        raise TypeError(
            f"Layer {layer.name!r}: get_prunable_weights() must return a "
            f"list of the layer's variables (e.g. [self.kernel]), got "
            f"{type(chosen).__name__}."
        )
    mine = {id(v) for v in layer.variables}
    for v in chosen:
        if not isinstance(v, keras.Variable) or (mine and id(v) not in mine):
            shown = (
                f"variable {v.path!r}"
                if isinstance(v, keras.Variable)
                else f"{v!r:.80}"
            )
            raise ValueError(
                f"Layer {layer.name!r}: get_prunable_weights() returned "
                f"{shown}, which is not one of the layer's variables "
                f"({[w.name for w in layer.variables][:12]}). Return the "
                "variables themselves, e.g. [self.kernel]."
            )
    return list(chosen)


def _walk(layer, on_unknown, out, names=False, decisions=None):
    own = _own_variables(layer)
    if getattr(layer, "_is_prune_wrapper", False):
        # A wrapper's own variables are its pruning state: look inside.
        _walk(layer.layer, on_unknown, out, names, decisions)
        return
    if _chooses_own_weights(layer):
        # `get_prunable_weights()` is only called to collect weights: the
        # layer may not be built when its support is checked.
        if out is not None:
            out.extend([layer] if names else _chosen_weights(layer))
        if decisions is not None:
            chosen = {id(v) for v in layer.get_prunable_weights()}
            for v in layer.variables:
                decisions.append(
                    (
                        layer,
                        v,
                        id(v) in chosen,
                        "get_prunable_weights()"
                        if id(v) in chosen
                        else "not returned by get_prunable_weights()",
                    )
                )
        return
    registered = _registered_names(layer)
    if registered and own:
        _check_registered_names(layer, registered, own)
    known = _known_names(layer)
    if known is not None:
        if out is not None:
            if names:
                if known:
                    out.append(layer)
            else:
                out.extend(v for v in own if v.name in known)
        if decisions is not None:
            for v in own:
                if v.name in known:
                    decisions.append((layer, v, True, _prune_reason(layer, v)))
                elif not known:
                    decisions.append(
                        (layer, v, False, "registered as not pruned")
                    )
                else:
                    decisions.append((layer, v, False, _skip_reason(v)))
    else:
        dense_reason = None
        for cls_name in _class_names(layer):
            dense_reason = DENSE_BY_DEFAULT.get(cls_name, dense_reason)
        blocking = [
            v
            for v in getattr(layer, "_trainable_variables", ())
            if _effective_rank(v) >= 2 and _dense_by_name(v) is None
        ]
        normalization = isinstance(layer, NEVER_PRUNED) or any(
            n.endswith(("Normalization", "LayerNorm", "Norm"))
            for n in _class_names(layer)
        )
        if (
            blocking
            and dense_reason is None
            and not normalization
            and on_unknown == "raise"
        ):
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has weights "
                f"{[f'{v.name} {tuple(v.shape)}' for v in blocking]} that "
                "keras-prune does not know how to prune. Either declare "
                "them (keras_prune.register_prunable_weights("
                f"{type(layer).__name__!r}, [names]) with the names to prune, "
                "or [] to leave them dense), make the layer prunable "
                "(subclass keras_prune.PrunableLayer and define "
                "get_prunable_weights()), leave it out of pruning with "
                "`layers=...`, or pass `skip_unsupported=True` to "
                "prune_low_magnitude to leave such layers dense."
            )
        if decisions is not None:
            for v in own:
                if dense_reason is not None:
                    reason = dense_reason
                elif normalization:
                    reason = "normalization weight, never pruned"
                elif _effective_rank(v) < 2:
                    reason = _skip_reason(v)
                elif (by_name := _dense_by_name(v)) is not None:
                    reason = by_name
                elif not v.trainable:
                    reason = (
                        "non-trainable state of a layer keras-prune does "
                        "not know (e.g. a codebook updated by moving "
                        "averages): never pruned"
                    )
                else:
                    reason = (
                        "unknown layer, left dense (skip_unsupported); "
                        "declare it with register_prunable_weights"
                    )
                decisions.append((layer, v, False, reason))
    flatten = getattr(layer, "_flatten_layers", None)
    for sub in flatten(include_self=False, recursive=False) if flatten else ():
        _walk(sub, on_unknown, out, names, decisions)


def owner_of(layer, weight):
    """The layer (`layer` or one of its sublayers) that created `weight`."""
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if any(v is weight for v in _own_variables(sub)):
            return sub
    return layer


def check_masks_apply(layer_name, weights, owners):
    """Refuses weights that a mask cannot keep sparse.

    Checked when a wrapper is built, at each of its calls (a Python check;
    traced once in a compiled step) and before `strip_pruning`, since a
    layer can be quantized or given LoRA after it was wrapped.

    - A zero-size weight has nothing to prune (and no k-th magnitude).
    - A quantized layer (`model.quantize(...)`: int8, int4 packs two
      weights per byte, float8) computes with quantized variables and
      scales: a mask on them is not a mask on the weights, and quantizing
      a wrapped layer replaces the variables its masks apply to.
    - With LoRA enabled, the layer's kernel is `kernel + a @ b`: masking
      `kernel` leaves the product dense.

    Args:
        layer_name: The wrapped layer's name.
        weights: Its pruned variables.
        owners: For each weight, the layer that owns it.

    Raises:
        ValueError: naming the layer, the weight and the fix.
    """

    # Runs at every wrapper call (eager on torch): the messages are built
    # only when one is raised.
    def where(owner):
        name = getattr(owner, "name", layer_name)
        sub = f" (sublayer {name!r})" if name != layer_name else ""
        return f"Layer {layer_name!r}{sub}"

    for w, owner in zip(weights, owners):
        mode = getattr(owner, "quantization_mode", None)
        if mode is not None:
            raise ValueError(
                f"{where(owner)} is quantized (quantization_mode="
                f"{mode!r}): masks cannot prune its quantized weights (a "
                "layer quantized after it was wrapped no longer uses the "
                "variables its masks apply to). Prune the float model, "
                "then `keras_prune.strip_pruning(model)` and "
                f"`model.quantize({mode!r})`; restore the float weights "
                "from a checkpoint if the pruned model was quantized."
            )
        if getattr(owner, "lora_enabled", False):
            raise ValueError(
                f"{where(owner)} has LoRA enabled (rank "
                f"{getattr(owner, 'lora_rank', '?')}): its kernel is "
                f"{w.name} + lora_kernel_a @ lora_kernel_b, which a mask on "
                f"{w.name} cannot keep sparse. Prune (and strip_pruning) "
                "the model first and enable LoRA afterwards, or merge the "
                "LoRA weights into the kernel of a layer without LoRA "
                "before pruning."
            )
        shape = tuple(w.shape)
        if 0 in shape:
            raise ValueError(
                f"{where(owner)}: weight {w.name!r} has shape {shape}, no "
                "elements, so there is nothing to prune. Leave the layer "
                "out (e.g. prune_low_magnitude(model, layers=lambda l: "
                f"l.name != {layer_name!r}, ...)) or give it a non-empty "
                "input."
            )


def answer_prunable_weights(layer, weights):
    """Gives a wrapped layer without one a `get_prunable_weights()`.

    As tfmot's wrapper does for a built-in layer: the wrapped layer then
    answers which of its weights are pruned. The method is marked
    (`added_by_keras_prune`) so that `prunable_weights` still decides by
    the layer's kind.

    Args:
        layer: The wrapped layer.
        weights: Its pruned variables.
    """
    if getattr(layer, "get_prunable_weights", None) is not None:
        return
    pruned = list(weights)

    def get_prunable_weights():
        return list(pruned)

    get_prunable_weights.added_by_keras_prune = True
    object.__setattr__(layer, "get_prunable_weights", get_prunable_weights)
