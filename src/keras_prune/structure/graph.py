"""Dependency groups: the channels of a Keras graph that are removed together.

Every channel of every tensor in a Sequential or Functional model is an
*element*. Layers relate elements: a `Dense` or `Conv` creates new elements
(its output channels); `BatchNormalization`, activations, pooling and Dropout
pass them through; a residual `Add` says that channel `i` of each input is
the same channel (the elements are merged); `Concatenate` lays its inputs'
elements side by side; `Flatten` after a conv repeats each channel at every
spatial position. Merged elements form a *unit*: the smallest thing that can
be removed (one channel, one attention head, one whole GroupNormalization
group). Units made by the same layers form a *group*; a ratio is applied per
group.

Each layer also records *slices*: which parameter entries belong to which
element (kernel columns of a producer, kernel rows of a consumer, BN scale
and offset of a follower). Shrinking keeps, in every slice, the entries of
the kept units; channel pruning zeroes the producer and follower entries of
the pruned units.

Layers the analysis does not understand *freeze* the elements they touch:
their groups are never pruned, and `DependencyGraph.frozen` says why.
"""

import keras
import numpy as np

from keras_prune.structure import hub_blocks

PRODUCER = "producer"  # output channel of a layer: zeroed when pruned
FOLLOWER = "follower"  # per-channel parameter (BN, depthwise): zeroed too
CONSUMER = "consumer"  # input rows of a layer: dropped, never zeroed


class _UnionFind:
    def __init__(self):
        self.parent = []

    def new(self, n):
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, i):
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, a, b):
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb

    def roots(self):
        return np.array(
            [self.find(i) for i in range(len(self.parent))], dtype=np.int64
        )


class Slice:
    """Entries of one parameter that belong to elements.

    Attributes:
        variable: The Keras variable.
        axis: The axis along which the entries map to elements.
        ids: Element id of each index along `axis`.
        role: `'producer'`, `'follower'` or `'consumer'`.
    """

    def __init__(self, variable, axis, ids, role):
        self.variable = variable
        self.axis = axis % len(variable.shape)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.role = role
        if variable.shape[self.axis] != len(self.ids):
            raise AssertionError(
                f"slice of {variable.path}: axis {axis} has "
                f"{variable.shape[self.axis]} entries, {len(self.ids)} ids"
            )


class Group:
    """Units removed at the same ratio: the channels of coupled layers.

    Attributes:
        index: Position in `DependencyGraph.groups`.
        units: Sorted array of unit (root element) ids.
        layers: Names of the layers holding parameters of the group.
        frozen: Reason the group may not be pruned, or `None`.
        kind: `'channels'`, `'heads'` or `'ffn'` (units of a transformer
            block).
    """

    def __init__(self, index, units, layers, frozen, kind):
        self.index = index
        self.units = units
        self.layers = layers
        self.frozen = frozen
        self.kind = kind

    @property
    def size(self):
        return len(self.units)

    def __repr__(self):
        state = f", frozen: {self.frozen}" if self.frozen else ""
        return (
            f"Group({self.index}: {self.size} {self.kind} of "
            f"{', '.join(self.layers[:4])}"
            f"{', ...' if len(self.layers) > 4 else ''}{state})"
        )


def _graph_of(model):
    """The Functional graph of `model` (Sequential: its inner Functional)."""
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"Sequential model {model.name!r} is not built with a known "
                "input shape: start it with `keras.Input(shape=...)` or call "
                "`model.build(input_shape)` before finding its groups."
            )
        return functional
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    raise ValueError(
        f"Structured pruning needs a Sequential or Functional model; got "
        f"{type(model).__name__}. Subclassed models have no graph to analyse: "
        "rebuild the model with the Functional API."
    )


def graph_nodes(model):
    """The call nodes of a Functional graph in execution order.

    Args:
        model: A Functional model (or a Sequential's inner Functional).

    Returns:
        List of Keras `Node`s, input layers excluded.
    """
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                nodes.append(node)
    return nodes


def _zero_at_zero(activation):
    """Whether `activation(0) == 0` (exactly)."""
    if activation is None:
        return True
    try:
        return _ZERO_AT_ZERO[activation]
    except (KeyError, TypeError):
        pass
    value = keras.ops.convert_to_numpy(
        activation(keras.ops.zeros((1, 2), "float32"))
    )
    result = bool(np.all(value == 0))
    try:
        _ZERO_AT_ZERO[activation] = result
    except TypeError:
        pass
    return result


_ZERO_AT_ZERO = {}


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _norm_axis_is_last(layer, rank):
    axis = layer.axis
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return [a % rank for a in axes] == [rank - 1]


_PASS_THROUGH = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.ELU,
    keras.layers.LeakyReLU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
    keras.layers.ActivityRegularization,
)
_POOLING = tuple(
    getattr(keras.layers, name)
    for name in (
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
    )
)
_ELEMENTWISE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)


def _is_transformer_block(layer):
    """A Keras-Hub TransformerEncoder/Decoder (self-attention + FFN)."""
    return (
        hasattr(layer, "_self_attention_layer")
        and hasattr(layer, "_feedforward_intermediate_dense")
        and hasattr(layer, "intermediate_dim")
    )


class DependencyGraph:
    """Coupled channel groups of a Sequential or Functional Keras model.

    Args:
        model: A built Sequential or Functional model of stock Keras layers
            (unwrap pruning wrappers first with `keras_prune.strip_pruning`).

    Attributes:
        model: The analysed model.
        groups: List of `Group`s (frozen ones included).
        frozen: Dict layer name -> reason, for each layer that froze the
            channels it touches.

    Example:

    ```python
    graph = keras_prune.DependencyGraph(model)
    for group in graph.groups:
        print(group)
    ```
    """

    def __init__(self, model):
        from keras_prune.integration.wrapper import PruneLowMagnitude

        if not isinstance(model, keras.Model):
            _graph_of(model)  # names what `model` is and what is needed
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, PruneLowMagnitude):
                raise ValueError(
                    f"Layer {layer.name!r} is a PruneLowMagnitude wrapper: "
                    "call `keras_prune.strip_pruning(model)` first "
                    "(`keras_prune.shrink` does it for you)."
                )
        self.model = model
        self.functional = _graph_of(model)
        self._uf = _UnionFind()
        self.tensor_ids = {}  # id(KerasTensor) -> element ids (last axis)
        self.slices = {}  # layer name -> [Slice]
        self.layer_of = {}  # layer name -> layer
        self.frozen = {}  # layer name -> reason
        self._frozen_elements = []  # (ids, reason)
        self._producers = {}  # layer name -> element ids it creates
        self._kinds = {}  # layer name -> group kind of what it creates
        self._layer_state = {}  # per-layer memo for shared layers
        self.nodes = graph_nodes(self.functional)
        for x in self.functional.inputs:
            ids = self._new(x)
            self._freeze(ids, "model input channels are kept")
        for node in self.nodes:
            self._visit(node)
        for x in self.functional.outputs:
            ids = self.tensor_ids.get(id(x))
            if ids is not None:
                self._freeze(ids, "model output channels are kept")
        self._finish()

    # --- element bookkeeping -------------------------------------------
    def _new(self, tensor, n=None):
        if n is None:
            # Scalars and tensors of unknown width (token ids, masks) have
            # no channels to track: no elements.
            n = tensor.shape[-1] if len(tensor.shape) else 0
            n = 0 if n is None else n
        ids = self._uf.new(int(n))
        if tensor is not None:
            self.tensor_ids[id(tensor)] = ids
        return ids

    def _ids(self, tensor):
        return self.tensor_ids[id(tensor)]

    def _freeze(self, ids, reason):
        self._frozen_elements.append((np.asarray(ids), reason))

    def _union(self, a, b):
        for x, y in zip(a.tolist(), b.tolist()):
            self._uf.union(x, y)

    def _slice(self, layer, variable, axis, ids, role):
        self.slices.setdefault(layer.name, []).append(
            Slice(variable, axis, ids, role)
        )
        self.layer_of[layer.name] = layer

    def _produce(self, layer, n, kind="channels"):
        """Output element ids of `layer` (created once; shared calls reuse)."""
        if layer.name not in self._producers:
            self._producers[layer.name] = self._uf.new(int(n))
            self._kinds[layer.name] = kind
        return self._producers[layer.name]

    def _consume_once(self, layer, key, ids):
        """Input ids of a shared layer: later calls merge with the first."""
        memo = self._layer_state.setdefault(layer.name, {})
        if key in memo:
            if len(memo[key]) != len(ids):
                raise AssertionError("shared layer width mismatch")
            self._union(memo[key], ids)
            return False
        memo[key] = ids
        return True

    def _freeze_node(self, node, reason):
        layer = node.operation
        self.frozen.setdefault(layer.name, reason)
        self.layer_of[layer.name] = layer
        for x in node.input_tensors:
            if id(x) in self.tensor_ids:
                self._freeze(self._ids(x), f"{layer.name}: {reason}")
        for x in node.outputs:
            ids = self._new(x)
            self._freeze(ids, f"{layer.name}: {reason}")

    # --- layer rules -----------------------------------------------------
    def _visit(self, node):
        layer = node.operation
        inputs = [x for x in node.input_tensors if id(x) in self.tensor_ids]
        outputs = node.outputs
        try:
            handled = self._rule(layer, node, inputs, outputs)
        except _Freeze as e:
            self._freeze_node(node, str(e))
            return
        except Exception as e:  # noqa: BLE001 (unforeseen shape: freeze)
            self._freeze_node(
                node, f"channel analysis failed ({type(e).__name__}: {e})"
            )
            return
        if not handled:
            self._freeze_node(
                node,
                f"{type(layer).__name__} is not understood by the channel "
                "analysis",
            )

    def _rule(self, layer, node, inputs, outputs):
        L = keras.layers
        if len(outputs) != 1 and not isinstance(layer, L.MultiHeadAttention):
            raise _Freeze(f"{type(layer).__name__} has several outputs")
        out = outputs[0]
        if not _channels_last(layer):
            raise _Freeze("data_format='channels_first' is not supported")
        if isinstance(layer, keras.Model):
            raise _Freeze("nested models are not analysed")
        if isinstance(layer, L.Dense):
            return self._dense(layer, inputs[0], out)
        if isinstance(layer, L.MultiHeadAttention):
            return self._attention(layer, node, inputs, outputs)
        if isinstance(layer, L.SeparableConv1D | L.SeparableConv2D):
            return self._separable(layer, inputs[0], out)
        if isinstance(layer, L.DepthwiseConv1D | L.DepthwiseConv2D):
            return self._depthwise(layer, inputs[0], out)
        if isinstance(
            layer, L.Conv1DTranspose | L.Conv2DTranspose | L.Conv3DTranspose
        ):
            return self._conv(layer, inputs[0], out, transpose=True)
        if isinstance(layer, L.Conv1D | L.Conv2D | L.Conv3D):
            return self._conv(layer, inputs[0], out, transpose=False)
        if isinstance(layer, L.BatchNormalization):
            rank = len(out.shape)
            if not _norm_axis_is_last(layer, rank):
                raise _Freeze("BatchNormalization axis is not the channel axis")
            ids = self._pass(inputs[0], out)
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                var = getattr(layer, name, None)
                if var is not None:
                    role = FOLLOWER if name in ("gamma", "beta") else CONSUMER
                    self._slice(layer, var, 0, ids, role)
            return True
        if isinstance(layer, L.GroupNormalization):
            if layer.axis not in (-1, len(out.shape) - 1):
                raise _Freeze("GroupNormalization axis is not the channel axis")
            ids = self._pass(inputs[0], out)
            per = len(ids) // layer.groups
            for g in range(layer.groups):
                block = ids[g * per : (g + 1) * per]
                for e in block[1:]:
                    self._uf.union(block[0], e)
            for name in ("gamma", "beta"):
                var = getattr(layer, name, None)
                if var is not None:
                    self._slice(layer, var, 0, ids, FOLLOWER)
            return True
        if isinstance(layer, L.LayerNormalization | L.UnitNormalization):
            raise _Freeze(
                f"{type(layer).__name__} normalises over the channel axis: "
                "removing channels would change its statistics"
            )
        if isinstance(layer, _PASS_THROUGH + _POOLING):
            if (
                isinstance(layer, _POOLING)
                and not getattr(layer, "keepdims", True)
                and len(out.shape) < 2
            ):
                raise _Freeze("pooling to a scalar")
            self._pass(inputs[0], out)
            return True
        if isinstance(layer, L.Softmax):
            raise _Freeze("Softmax normalises over the channel axis")
        if isinstance(layer, L.Flatten):
            ids = self._ids(inputs[0])
            repeat = int(np.prod(inputs[0].shape[1:-1] or [1]))
            if out.shape[-1] != repeat * len(ids):
                raise _Freeze("unexpected Flatten shape")
            self.tensor_ids[id(out)] = np.tile(ids, repeat)
            return True
        if isinstance(layer, L.Reshape):
            return self._reshape(layer, inputs[0], out)
        if isinstance(layer, _ELEMENTWISE):
            return self._elementwise(layer, inputs, out)
        if isinstance(layer, L.Concatenate):
            return self._concatenate(layer, inputs, out)
        if _is_transformer_block(layer):
            return self._transformer(layer, node, inputs, outputs)
        return False

    def _pass(self, x, out):
        ids = self._ids(x)
        if out.shape[-1] != len(ids):
            raise _Freeze("the channel count changes")
        self.tensor_ids[id(out)] = ids
        return ids

    def _dense(self, layer, x, out):
        in_ids = self._ids(x)
        self._consume_once(layer, "in", in_ids)
        ids = self._produce(layer, layer.units)
        self.tensor_ids[id(out)] = ids
        if layer.name not in self.slices:
            self._slice(layer, layer.kernel, 0, in_ids, CONSUMER)
            self._slice(layer, layer.kernel, 1, ids, PRODUCER)
            if layer.bias is not None:
                self._slice(layer, layer.bias, 0, ids, PRODUCER)
        return True

    def _conv(self, layer, x, out, transpose):
        if getattr(layer, "groups", 1) != 1:
            raise _Freeze("grouped convolution (groups > 1)")
        in_ids = self._ids(x)
        self._consume_once(layer, "in", in_ids)
        ids = self._produce(layer, layer.filters)
        self.tensor_ids[id(out)] = ids
        if layer.name not in self.slices:
            in_axis, out_axis = (-1, -2) if transpose else (-2, -1)
            self._slice(layer, layer.kernel, in_axis, in_ids, CONSUMER)
            self._slice(layer, layer.kernel, out_axis, ids, PRODUCER)
            if layer.bias is not None:
                self._slice(layer, layer.bias, 0, ids, PRODUCER)
        return True

    def _depthwise(self, layer, x, out):
        in_ids = self._ids(x)
        m = layer.depth_multiplier
        ids = np.repeat(in_ids, m)
        if not self._consume_once(layer, "in", in_ids):
            self.tensor_ids[id(out)] = ids
            return True
        self.tensor_ids[id(out)] = ids
        self._slice(layer, layer.kernel, -2, in_ids, FOLLOWER)
        if layer.bias is not None:
            self._slice(layer, layer.bias, 0, ids, FOLLOWER)
        return True

    def _separable(self, layer, x, out):
        in_ids = self._ids(x)
        first = self._consume_once(layer, "in", in_ids)
        ids = self._produce(layer, layer.filters)
        self.tensor_ids[id(out)] = ids
        if first:
            m = layer.depth_multiplier
            self._slice(layer, layer.depthwise_kernel, -2, in_ids, FOLLOWER)
            self._slice(
                layer,
                layer.pointwise_kernel,
                -2,
                np.repeat(in_ids, m),
                CONSUMER,
            )
            self._slice(layer, layer.pointwise_kernel, -1, ids, PRODUCER)
            if layer.bias is not None:
                self._slice(layer, layer.bias, 0, ids, PRODUCER)
        return True

    def _reshape(self, layer, x, out):
        ids = self._ids(x)
        if out.shape[-1] == x.shape[-1]:
            # Same last axis: a row-major reshape regroups positions only, so
            # every channel stays a channel.
            self.tensor_ids[id(out)] = ids
            return True
        total = int(np.prod(x.shape[1:]))
        if len(out.shape) == 2 and out.shape[-1] == total:
            self.tensor_ids[id(out)] = np.tile(ids, total // len(ids))
            return True
        raise _Freeze("Reshape mixes the channel axis with other axes")

    def _elementwise(self, layer, inputs, out):
        full = [x for x in inputs if x.shape[-1] == out.shape[-1]]
        for x in inputs:
            if x.shape[-1] != out.shape[-1]:
                if x.shape[-1] != 1:
                    raise _Freeze("inputs broadcast along the channel axis")
                self._freeze(self._ids(x), f"{layer.name}: broadcast input")
        first = self._ids(full[0])
        for x in full[1:]:
            self._union(first, self._ids(x))
        self.tensor_ids[id(out)] = first
        return True

    def _concatenate(self, layer, inputs, out):
        axis = layer.axis % len(out.shape)
        if axis == len(out.shape) - 1:
            ids = np.concatenate([self._ids(x) for x in inputs])
        else:
            ids = self._ids(inputs[0])
            for x in inputs[1:]:
                self._union(ids, self._ids(x))
        self.tensor_ids[id(out)] = ids
        return True

    def _attention(self, layer, node, inputs, outputs):
        for x in inputs:
            self._freeze(
                self._ids(x),
                f"{layer.name}: MultiHeadAttention inputs are kept (heads are "
                "pruned inside)",
            )
        self._layer_state.setdefault(layer.name, {})
        heads = self._produce(layer, layer.num_heads, kind="heads")
        if layer.name not in self.slices:
            self._attention_slices(layer, layer, heads)
        out_ids = self._layer_state[layer.name].setdefault(
            "out", self._uf.new(outputs[0].shape[-1])
        )
        self.tensor_ids[id(outputs[0])] = out_ids
        self._freeze(out_ids, f"{layer.name}: MultiHeadAttention output")
        for extra in outputs[1:]:
            self._new(extra)
        return True

    def _attention_slices(self, owner, mha, heads):
        for dense in (mha._query_dense, mha._key_dense, mha._value_dense):
            self._slice(owner, dense.kernel, 1, heads, PRODUCER)
            if dense.bias is not None:
                self._slice(owner, dense.bias, 0, heads, PRODUCER)
        self._slice(owner, mha._output_dense.kernel, 0, heads, CONSUMER)
        gate = getattr(mha, "_gate_dense", None)
        if gate is not None:
            # The gate multiplies each head's output: a zero head stays
            # zero whatever its gate, so the gate columns are only dropped.
            self._slice(owner, gate.kernel, 1, heads, CONSUMER)
            if gate.bias is not None:
                self._slice(owner, gate.bias, 0, heads, CONSUMER)

    def _transformer(self, layer, node, inputs, outputs):
        if getattr(layer, "_cross_attention_layer", None) is not None:
            raise _Freeze("cross-attention blocks are not analysed")
        for x in inputs:
            self._freeze(
                self._ids(x),
                f"{layer.name}: transformer block hidden channels are kept",
            )
        first = self.layer_of.get(layer.name) is None
        out = self._new(outputs[0])
        self._freeze(out, f"{layer.name}: transformer block hidden channels")
        if not first:
            return True
        self.layer_of[layer.name] = layer
        heads = self._produce(layer, layer.num_heads, kind="heads")
        self._kinds[layer.name] = "heads"
        self._attention_slices(layer, layer._self_attention_layer, heads)
        # Fewer heads: `shrink` rewrites the block with stock layers
        # (hub_blocks.py) where that is exact; otherwise heads are kept.
        calls = sum(1 for n in self.nodes if n.operation is layer)
        reason = hub_blocks.head_blocker(layer, node, calls)
        if reason is not None:
            self._freeze(heads, f"{layer.name}: heads kept: {reason}")
        inner = self._uf.new(layer.intermediate_dim)
        self._producers[layer.name + "/ffn"] = inner
        self._kinds[layer.name + "/ffn"] = "ffn"
        d1 = layer._feedforward_intermediate_dense
        d2 = layer._feedforward_output_dense
        self._slice(layer, d1.kernel, 1, inner, PRODUCER)
        if d1.bias is not None:
            self._slice(layer, d1.bias, 0, inner, PRODUCER)
        self._slice(layer, d2.kernel, 0, inner, CONSUMER)
        self._ffn_activation = getattr(self, "_ffn_activation", {})
        self._ffn_activation[layer.name] = _zero_at_zero(d1.activation)
        return True

    # --- groups ----------------------------------------------------------
    def _finish(self):
        self.roots = self._uf.roots()
        frozen_units = {}
        for ids, reason in self._frozen_elements:
            for r in np.unique(self.roots[ids]).tolist():
                frozen_units.setdefault(r, reason)
        # Group: units created by the same producers.
        group_uf = _UnionFind()
        group_uf.new(len(self.roots))
        unit_layers = {}
        for name, ids in self._producers.items():
            roots = np.unique(self.roots[ids])
            for r in roots[1:].tolist():
                group_uf.union(roots[0], r)
            for r in roots.tolist():
                unit_layers.setdefault(r, set()).add(name.split("/")[0])
        for name, slices in self.slices.items():
            for s in slices:
                if s.role != CONSUMER:
                    for r in np.unique(self.roots[s.ids]).tolist():
                        unit_layers.setdefault(r, set()).add(name)
        by_group = {}
        for r in unit_layers:
            by_group.setdefault(group_uf.find(r), []).append(r)
        self.groups = []
        self.unit_group = {}
        for key in sorted(by_group):
            units = np.array(sorted(by_group[key]), dtype=np.int64)
            layers = sorted(set().union(*(unit_layers[u] for u in units)))
            reasons = [frozen_units[u] for u in units if u in frozen_units]
            kinds = {
                self._kinds[p]
                for p in self._producers
                if np.isin(self.roots[self._producers[p]], units).any()
            }
            kind = kinds.pop() if len(kinds) == 1 else "channels"
            group = Group(
                len(self.groups),
                units,
                layers,
                reasons[0] if reasons else None,
                kind,
            )
            for u in units.tolist():
                self.unit_group[u] = group.index
            self.groups.append(group)

    def keep_of(self, ids, removed):
        """Bool keep-mask of the element `ids` given a set of removed units."""
        return ~np.isin(self.roots[ids], removed)

    def prunable_groups(self):
        """The groups that may be pruned (not frozen, more than one unit)."""
        return [g for g in self.groups if not g.frozen and g.size > 1]

    def summary(self):
        """Text lines describing every group and every frozen layer."""
        lines = [repr(g) for g in self.groups]
        for name, reason in self.frozen.items():
            lines.append(f"frozen layer {name}: {reason}")
        return "\n".join(lines)


class _Freeze(Exception):
    pass
