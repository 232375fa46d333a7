"""Keras-Hub transformer blocks rewritten as stock Keras layers.

`keras_hub.layers.TransformerEncoder` and `TransformerDecoder` derive the
attention key size from their input: `key_dim = hidden_dim // num_heads`.
A block with fewer heads therefore cannot be built from the block's own
config and still take the kept weights (its key size would grow). When
`shrink` removes heads of such a block, it replaces the block by the same
computation written with ordinary Keras layers:

    [LayerNorm] -> MultiHeadAttention(num_heads', key_dim kept) -> Dropout
    -> Add(residual) -> [LayerNorm] -> [LayerNorm] -> Dense(intermediate',
    activation) -> Dense(hidden) -> Dropout -> Add(residual) -> [LayerNorm]

(`normalize_first` decides which LayerNorms run before and which after),
with the attention mask built from the padding mask by `keras.ops` nodes
(`expand_dims`, `cast`, `minimum`) and the decoder's causal mask by the
attention layer's own `use_causal_mask=True`. All of these save in a
Functional model and load in safe mode with Keras alone.

Only what is reproduced exactly is rewritten: a block of exactly the
Keras-Hub class (a subclass may change `call`), without cross-attention,
called once, without attention-score or cache outputs, whose input carries
no Keras mask, and whose sublayers are stock `MultiHeadAttention` (or
Keras-Hub's `CachedMultiHeadAttention`, the same computation without a
cache), `LayerNormalization`, `Dense` and `Dropout`. For any other block
`head_blocker` returns the reason, and the dependency graph keeps its heads.
"""

import inspect

import keras

_ENCODER = "TransformerEncoder"
_DECODER = "TransformerDecoder"

# Call arguments of the rewritten blocks that may be given, with the value
# each other argument must have for the block to be rewritten.
_ENCODER_ARGS = {"inputs", "padding_mask", "attention_mask", "training"}
_DECODER_ARGS = {
    "decoder_sequence",
    "decoder_padding_mask",
    "decoder_attention_mask",
    "use_causal_mask",
    "training",
}
_SUBLAYERS = (
    ("_self_attention_layer_norm", keras.layers.LayerNormalization),
    ("_self_attention_dropout", keras.layers.Dropout),
    ("_feedforward_layer_norm", keras.layers.LayerNormalization),
    ("_feedforward_intermediate_dense", keras.layers.Dense),
    ("_feedforward_output_dense", keras.layers.Dense),
    ("_feedforward_dropout", keras.layers.Dropout),
)


def _kind(layer):
    """`'encoder'`/`'decoder'` for the exact Keras-Hub block classes."""
    cls = type(layer)
    if not cls.__module__.startswith("keras_hub."):
        return None
    return {_ENCODER: "encoder", _DECODER: "decoder"}.get(cls.__name__)


def _is_stock_attention(mha):
    cls = type(mha)
    if cls is keras.layers.MultiHeadAttention:
        return True
    return (
        cls.__name__ == "CachedMultiHeadAttention"
        and cls.__module__.startswith("keras_hub.")
        and isinstance(mha, keras.layers.MultiHeadAttention)
    )


def call_arguments(layer, args, kwargs):
    """The block's call arguments by name (defaults not filled in)."""
    return inspect.signature(layer.call).bind(*args, **kwargs).arguments


def head_blocker(layer, node, calls):
    """Why the heads of Keras-Hub block `layer` cannot be removed, or `None`.

    Args:
        layer: A Keras-Hub `TransformerEncoder`/`TransformerDecoder`.
        node: Its call node in the analysed graph.
        calls: How many nodes of the analysed graph call `layer`.

    Returns:
        A reason (str) when `shrink` could not rewrite the block exactly,
        else `None`.
    """
    kind = _kind(layer)
    if kind is None:
        return (
            f"{type(layer).__name__} is not exactly a Keras-Hub "
            "TransformerEncoder/TransformerDecoder (its call may differ), "
            "and the Keras-Hub class derives key_dim from hidden_dim // "
            "num_heads, so fewer heads cannot keep the weights"
        )
    if calls != 1:
        return f"the block is called {calls} times (shared weights)"
    if getattr(layer, "_cross_attention_layer", None) is not None:
        return "cross-attention blocks are not rewritten"
    if not _is_stock_attention(layer._self_attention_layer):
        return (
            f"its attention layer is a "
            f"{type(layer._self_attention_layer).__name__}"
        )
    for attr, cls in _SUBLAYERS:
        sub = getattr(layer, attr, None)
        if type(sub) is not cls:
            return f"sublayer {attr} is a {type(sub).__name__}"
    try:
        arguments = call_arguments(
            layer, node.arguments.args, node.arguments.kwargs
        )
    except TypeError as e:
        return f"its call arguments are not understood ({e})"
    allowed = _ENCODER_ARGS if kind == "encoder" else _DECODER_ARGS
    for name, value in arguments.items():
        if name not in allowed and value is not None and value is not False:
            return f"it is called with {name}={value!r}"
    if kind == "decoder" and not isinstance(
        arguments.get("use_causal_mask", True), bool
    ):
        return "use_causal_mask is not a Python bool"
    x = node.input_tensors[0]
    if getattr(x, "_keras_mask", None) is not None:
        return "its input carries a Keras mask"
    return None


def expanded_names(name):
    """Names the rewritten block's attention and FFN layers get.

    Args:
        name: The block's name.

    Returns:
        Dict `{'num_heads': (layer name, setting), 'intermediate_dim':
        (layer name, setting)}` in the rewritten model.
    """
    return {
        "num_heads": (f"{name}_self_attention", "num_heads"),
        "intermediate_dim": (f"{name}_feedforward_intermediate_dense", "units"),
    }


class ExpandedBlock:
    """Builds a Keras-Hub block as stock Keras layers with fewer heads/units.

    Called in place of the block when the shrunk Functional graph is built
    (same call arguments as the block). `pairs` then lists `(original
    sublayer, new layer)` for copying the kept weights.

    Args:
        block: The Keras-Hub `TransformerEncoder`/`TransformerDecoder`.
        num_heads: Heads of the new attention layer.
        intermediate_dim: Units of the new FFN inner Dense.
        taken: Layer names already used in the model (new names must be
            unique).
    """

    def __init__(self, block, num_heads, intermediate_dim, taken):
        self.block = block
        self.kind = _kind(block)
        self.pairs = []
        name = block.name
        mha = block._self_attention_layer
        config = mha.get_config()
        config.update(
            num_heads=num_heads, name=expanded_names(name)["num_heads"][0]
        )
        self.attention = keras.layers.MultiHeadAttention.from_config(config)
        self.pairs.append((mha, self.attention))
        self.layers = {}
        for attr, cls in _SUBLAYERS:
            sub = getattr(block, attr)
            config = sub.get_config()
            config["name"] = f"{name}_{attr.lstrip('_')}"
            if attr == "_feedforward_intermediate_dense":
                config["units"] = intermediate_dim
            new = cls.from_config(config)
            self.layers[attr] = new
            self.pairs.append((sub, new))
        self.add_attention = keras.layers.Add(
            dtype=block.dtype_policy, name=f"{name}_self_attention_add"
        )
        self.add_feedforward = keras.layers.Add(
            dtype=block.dtype_policy, name=f"{name}_feedforward_add"
        )
        new_names = [layer.name for _, layer in self.pairs] + [
            self.add_attention.name,
            self.add_feedforward.name,
        ]
        for new_name in new_names:
            if new_name in taken:
                raise ValueError(
                    f"Cannot rewrite block {name!r} with stock layers: the "
                    f"model already has a layer named {new_name!r}. Rename "
                    "that layer (or the block) and shrink again."
                )

    def _mask(self, padding_mask, attention_mask):
        # What Keras-Hub's merge_padding_and_attention_mask computes.
        ops = keras.ops
        mask = None
        if padding_mask is not None:
            mask = ops.cast(ops.expand_dims(padding_mask, axis=1), "int32")
        if attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "int32")
            mask = (
                attention_mask
                if mask is None
                else ops.minimum(mask, attention_mask)
            )
        return mask

    def __call__(self, *args, **kwargs):
        a = call_arguments(self.block, args, kwargs)
        if self.kind == "encoder":
            x = a["inputs"]
            mask = self._mask(a.get("padding_mask"), a.get("attention_mask"))
            causal = False
        else:
            x = a["decoder_sequence"]
            mask = self._mask(
                a.get("decoder_padding_mask"), a.get("decoder_attention_mask")
            )
            causal = bool(a.get("use_causal_mask", True))
        extra = {}
        if a.get("training") is not None:
            extra["training"] = a["training"]
        first = self.block.normalize_first
        ln1 = self.layers["_self_attention_layer_norm"]
        ln2 = self.layers["_feedforward_layer_norm"]

        residual = x
        if first:
            x = ln1(x)
        attention_kwargs = {"attention_mask": mask} if mask is not None else {}
        if causal:
            attention_kwargs["use_causal_mask"] = True
        x = self.attention(x, x, **attention_kwargs, **extra)
        x = self.layers["_self_attention_dropout"](x, **extra)
        x = self.add_attention([x, residual])
        if not first:
            x = ln1(x)

        residual = x
        if first:
            x = ln2(x)
        x = self.layers["_feedforward_intermediate_dense"](x)
        x = self.layers["_feedforward_output_dense"](x)
        x = self.layers["_feedforward_dropout"](x, **extra)
        x = self.add_feedforward([x, residual])
        if not first:
            x = ln2(x)
        return x
