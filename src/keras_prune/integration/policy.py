"""Pruning policies: which layers of a model may be pruned (tfmot's contract).

A policy has two methods: `allow_pruning(layer) -> bool`, asked for every
layer, and `ensure_model_supports_pruning(model)`, which raises if the model
as a whole is unsuitable. Pass one as `prune_low_magnitude(...,
pruning_policy=...)`.
"""

import keras
from keras import tree

from keras_prune.integration import registry

_L = keras.layers


class PruningPolicy:
    """Base class: decides which layers are pruned.

    Example:

    ```python
    class OnlyDense(keras_prune.PruningPolicy):
        def allow_pruning(self, layer):
            return isinstance(layer, keras.layers.Dense)

        def ensure_model_supports_pruning(self, model):
            pass

    pruned = keras_prune.prune_low_magnitude(model, pruning_policy=OnlyDense())
    ```
    """

    def allow_pruning(self, layer):
        raise NotImplementedError(
            f"{type(self).__name__} must implement allow_pruning(layer)."
        )

    def ensure_model_supports_pruning(self, model):
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "ensure_model_supports_pruning(model)."
        )


class SkipUnsupportedLayers(PruningPolicy):
    """Prunes every layer keras-prune knows; leaves unknown layers dense.

    tfmot fails a whole model when one layer is unsupported (its issue
    #1098); with this policy such layers are simply not pruned. Equivalent
    to `prune_low_magnitude(..., skip_unsupported=True)`.
    """

    def allow_pruning(self, layer):
        return registry.is_supported(layer)

    def ensure_model_supports_pruning(self, model):
        return None


def _is_1x1_conv(layer):
    return isinstance(layer, _L.Conv2D) and tuple(layer.kernel_size) == (1, 1)


_XNNPACK_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "sigmoid")
# Keras 3 ops called on symbolic tensors (tfmot's TFOpLambda add, subtract,
# multiply; identity is `keras.layers.Identity` or an identity `Lambda`).
_XNNPACK_OPS = ("Add", "Subtract", "Multiply")

_STEM_MESSAGE = (
    "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3` "
    "and `VALID` padding and preceding `ZeroPadding2D` with `padding == 1` in "
    "all input branches of the model"
)
_END_MESSAGE = (
    "Could not find a `GlobalAveragePooling2D` layer in all output branches"
)


def _zero_padding(producers, pad):
    """Whether the only producer is `ZeroPadding2D` of `((pad, pad),) * 2`."""
    return (
        len(producers) == 1
        and isinstance(producers[0], _L.ZeroPadding2D)
        and tuple(tuple(p) for p in producers[0].padding)
        == ((pad, pad), (pad, pad))
    )


def _xnnpack_compatible(layer, producers):
    """Whether XNNPACK's sparse inference runs `layer` (tfmot's list).

    Args:
        layer: A layer or Keras op of the checked subgraph.
        producers: The layers feeding it in the model.
    """
    if getattr(layer, "_is_prune_wrapper", False):
        return _xnnpack_compatible(layer.layer, producers)
    if isinstance(
        layer,
        (
            _L.Add,
            _L.Multiply,
            _L.ZeroPadding2D,
            _L.ReLU,
            _L.LeakyReLU,
            _L.ELU,
            _L.Dropout,
            _L.Identity,
            _L.InputLayer,
        ),
    ):
        return True
    if isinstance(layer, _L.Lambda):
        return _is_identity_function(layer.function, layer.arguments)
    if isinstance(layer, _L.DepthwiseConv2D):
        size = tuple(layer.kernel_size)
        if (
            size not in ((3, 3), (5, 5))
            or layer.depth_multiplier != 1
            or tuple(layer.dilation_rate) != (1, 1)
        ):
            return False
        strides = tuple(layer.strides)
        if layer.padding == "same":
            return strides == (1, 1)
        return strides in ((1, 1), (2, 2)) and _zero_padding(
            producers, size[0] // 2
        )
    if isinstance(layer, _L.Conv2D):
        return (
            _is_1x1_conv(layer)
            and tuple(layer.strides) == (1, 1)
            and layer.groups == 1
            and tuple(layer.dilation_rate) == (1, 1)
        )
    if isinstance(layer, _L.GlobalAveragePooling2D):
        return bool(layer.keepdims)
    if isinstance(layer, _L.BatchNormalization):
        return layer.axis in (-1, 3)
    if isinstance(layer, _L.UpSampling2D):
        return layer.interpolation == "bilinear"
    if isinstance(layer, _L.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name in _XNNPACK_ACTIVATIONS
    if not isinstance(layer, _L.Layer):
        return (
            type(layer).__module__.startswith("keras.src.ops")
            and type(layer).__name__ in _XNNPACK_OPS
        )
    return False


def _is_identity_function(function, arguments=None):
    """Whether a `Lambda`'s function returns its input unchanged.

    tfmot accepts `tf.identity` (a TFOpLambda); in Keras 3 this is a
    `Lambda`, e.g. `Lambda(lambda x: x)` or `Lambda(tf.identity)`.
    """
    if getattr(function, "__name__", "") == "identity":
        return True
    probe = object()
    try:
        return function(probe, **(arguments or {})) is probe
    except Exception:  # noqa: BLE001 - it computes something: not identity
        return False


def _is_xnnpack_stem(layer, producers):
    """A 3x3 stride-2 `valid` Conv2D on 3 channels after ZeroPadding2D(1)."""
    if getattr(layer, "_is_prune_wrapper", False):
        layer = layer.layer
    return (
        isinstance(layer, _L.Conv2D)
        and layer.built
        and tuple(layer.kernel.shape[:3]) == (3, 3, 3)
        and tuple(layer.strides) == (2, 2)
        and layer.padding == "valid"
        and _zero_padding(producers, 1)
    )


class _Vertex:
    """One call of a layer or op in the flattened graph of a model."""

    def __init__(self, operation):
        self.operation = operation


def _is_graph_model(layer):
    from keras_prune.integration.prune import is_graph_model

    return is_graph_model(layer)


def _functional(model):
    if isinstance(model, keras.Sequential):
        return model._functional
    return model


def _node_of(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    return history.operation._inbound_nodes[history.node_index]


class _Graph:
    """The call graph of a model, one vertex per call of a layer or op.

    Nested Sequential and Functional models are looked into (as tfmot
    does): their calls are replaced by the graph of their own layers, whose
    inputs are fed by what feeds the nested model.
    """

    def __init__(self, model):
        self.consumers = {}
        self.producers = {}
        self.inputs = []
        self._expand(model, None)

    def _add(self, operation, parents):
        vertex = _Vertex(operation)
        self.consumers[id(vertex)] = []
        self.producers[id(vertex)] = [p.operation for p in parents]
        for parent in parents:
            self.consumers[id(parent)].append(vertex)
        return vertex

    def _expand(self, model, feeding):
        """Adds `model`'s calls; returns the vertices of its outputs.

        Args:
            model: A built Functional or Sequential model.
            feeding: None for the outer model (its inputs are the graph's
                inputs), else one list of producing vertices per input.
        """
        functional = _functional(model)
        if functional is None:
            raise ValueError("Unbuilt models are not supported currently.")
        depths = sorted(functional._nodes_by_depth, reverse=True)
        nodes = [n for d in depths for n in functional._nodes_by_depth[d]]
        known = {id(n) for n in nodes}
        inputs = [_node_of(t) for t in functional._inputs]
        out_of = {}
        for node in nodes:
            if node.is_input:
                if feeding is None:
                    vertex = self._add(node.operation, [])
                    self.inputs.append(vertex)
                    out_of[id(node)] = [vertex]
                else:
                    at = [i for i, n in enumerate(inputs) if n is node]
                    out_of[id(node)] = (
                        feeding[at[0]]
                        if at and len(feeding) == len(inputs)
                        else [v for f in feeding for v in f]
                    )
                continue
            parents = []
            for p in node.parent_nodes:
                if id(p) in known:
                    parents.extend(v for v in out_of[id(p)] if v not in parents)
            operation = node.operation
            if _is_graph_model(operation):
                per_input = []
                for t in node.arguments.keras_tensors:
                    n = _node_of(t)
                    per_input.append(
                        out_of.get(id(n), parents) if n is not None else parents
                    )
                out_of[id(node)] = self._expand(operation, per_input)
            else:
                out_of[id(node)] = [self._add(operation, parents)]
        outputs = []
        for t in tree.flatten(functional._outputs):
            for v in out_of.get(id(_node_of(t)), []):
                if v not in outputs:
                    outputs.append(v)
        return outputs

    def lookup(self, sources, stop, visit):
        """Vertices where `stop` holds, reached from `sources` downstream.

        Returns an empty list when some path reaches a model output without
        passing a stop vertex. `visit(vertex)` is called on every other one.
        """
        to_visit, seen, found = list(sources), {id(n) for n in sources}, []
        while to_visit:
            node = to_visit.pop()
            if stop(node):
                found.append(node)
                continue
            visit(node)
            nexts = self.consumers[id(node)]
            if not nexts:
                return []
            for nxt in nexts:
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    to_visit.append(nxt)
        return found


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only what XNNPACK's sparse inference can speed up (tfmot rules).

    Only 1x1 `Conv2D` layers are pruned. The model must be a built
    Functional or Sequential model in which every input branch starts with
    `ZeroPadding2D(1)` followed by a 3x3 stride-2 `valid` `Conv2D` on 3
    input channels, and every output branch passes a
    `GlobalAveragePooling2D`; between them only layers XNNPACK's sparse path
    supports: 1x1 convolutions (stride 1), 3x3/5x5 depthwise convolutions
    (stride 1 `same`, or `valid` after ZeroPadding2D of 1 or 2), batch
    norm on the channel axis, ReLU-like and sigmoid activations,
    Add/Multiply, ZeroPadding2D, Dropout, bilinear upsampling and identity
    layers (`Identity`, a `Lambda` returning its input). Layers after the
    pooling (the head) are not checked. Nested Sequential and Functional
    models are looked into, as by tfmot. Errors name the layer's class (as
    tfmot's do) and its name. Use it for models exported to LiteRT (TFLite)
    with XNNPACK sparse inference.
    """

    def allow_pruning(self, layer):
        return _is_1x1_conv(layer)

    def ensure_model_supports_pruning(self, model):
        from keras_prune.integration.prune import is_graph_model

        if not is_graph_model(model):
            raise ValueError(
                "Subclassed models are not supported currently by "
                "PruneForLatencyOnXNNPack; use a Functional or Sequential "
                "model."
            )
        if not model.built:
            raise ValueError("Unbuilt models are not supported currently.")
        graph = _Graph(model)

        def is_stem(node):
            return _is_xnnpack_stem(node.operation, graph.producers[id(node)])

        starts = graph.lookup(graph.inputs, is_stem, lambda node: None)
        if not starts:
            raise ValueError(_STEM_MESSAGE)

        def is_end(node):
            return isinstance(node.operation, _L.GlobalAveragePooling2D)

        def check(node):
            if node in starts:
                return
            if not _xnnpack_compatible(
                node.operation, graph.producers[id(node)]
            ):
                operation = node.operation
                raise ValueError(
                    f"Layer {type(operation).__name__} is not supported for "
                    "the PruneForLatencyOnXNNPack pruning policy (layer "
                    f"{operation.name!r}; supported between the 3x3 stem "
                    "and GlobalAveragePooling2D: 1x1 Conv2D, 3x3/5x5 "
                    "DepthwiseConv2D, BatchNormalization, ReLU-like and "
                    "sigmoid activations, Add, Multiply, ZeroPadding2D, "
                    "Dropout, bilinear UpSampling2D and identity layers)"
                )

        if not graph.lookup(starts, is_end, lambda node: None):
            raise ValueError(_END_MESSAGE)
        graph.lookup(starts, is_end, check)
