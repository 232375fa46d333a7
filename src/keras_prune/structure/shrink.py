"""`shrink`: a physically smaller model of stock Keras layers.

Given the units to remove (by ratio and importance, or the units a channel
pruning run zeroed), every layer is rebuilt from its config with fewer
`units` / `filters` / `num_heads` / `intermediate_dim`, and its weights are
the kept entries of the original weights. The result has no keras-prune
layers: it saves and loads anywhere Keras runs.
"""

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.structure import graph as graph_lib
from keras_prune.structure.graph import CONSUMER
from keras_prune.structure.graph import PRODUCER
from keras_prune.structure.graph import DependencyGraph
from keras_prune.structure.hub_blocks import ExpandedBlock
from keras_prune.structure.importance import select_units


def _np(variable):
    return keras.ops.convert_to_numpy(variable)


def _all_zero_along(values, axis):
    other = tuple(i for i in range(values.ndim) if i != axis)
    return np.all(values == 0, axis=other)


def _producer_zero(graph, layer_name, ids):
    """Per entry of `ids`: all producer parameters of it are exactly 0."""
    zero = np.ones(len(ids), dtype=bool)
    found = False
    for s in graph.slices.get(layer_name, []):
        if (
            s.role == PRODUCER
            and len(s.ids) == len(ids)
            and np.array_equal(s.ids, ids)
        ):
            zero &= _all_zero_along(_np(s.variable), s.axis)
            found = True
    return zero if found else np.zeros(len(ids), dtype=bool)


def _maps_zero_to_zero(layer, width):
    config = {
        k: v
        for k, v in layer.get_config().items()
        if k not in ("name", "trainable", "dtype")
    }
    key = (type(layer).__name__, repr(sorted(config.items())))
    if key not in _ZERO_CACHE:
        value = _np(layer(keras.ops.zeros((1, 4), "float32")))
        _ZERO_CACHE[key] = bool(np.all(value == 0))
    return _ZERO_CACHE[key]


_ZERO_CACHE = {}

# Layers whose output units (`units` / `filters`) shrink with their group.
_UNIT_LAYERS = (
    keras.layers.Dense
    | keras.layers.Conv1D
    | keras.layers.Conv2D
    | keras.layers.Conv3D
    | keras.layers.Conv1DTranspose
    | keras.layers.Conv2DTranspose
    | keras.layers.Conv3DTranspose
    | keras.layers.SeparableConv1D
    | keras.layers.SeparableConv2D
)


def zero_units(graph):
    """Units whose removal leaves the model's function unchanged exactly.

    A unit is removable when, at every layer that reads it (kernel rows of a
    Dense, Conv or attention projection), its value is exactly zero for
    every input: its producers' kernel columns and biases are 0 (and the
    activation maps 0 to 0), or a BatchNormalization/GroupNormalization
    after it has zero scale and offset, or a Multiply pairs it with such a
    zero. Heads and FFN units count when all their producer parameters are 0.

    Args:
        graph: A `DependencyGraph`.

    Returns:
        Sorted int64 array of removable unit ids (frozen groups excluded).
    """
    L = keras.layers
    roots = graph.roots
    needed = np.zeros(len(roots), dtype=bool)
    zero = {}

    def z(x):
        return zero.get(id(x), np.zeros(x.shape[-1] or 0, dtype=bool))

    def need(ids, flags):
        needed[roots[ids[~flags]]] = True

    for node in graph.nodes:
        layer = node.operation
        name = layer.name
        ins = [x for x in node.input_tensors if id(x) in graph.tensor_ids]
        out = node.outputs[0] if node.outputs else None
        if (
            name in graph.frozen
            or out is None
            or id(out) not in (graph.tensor_ids)
        ):
            continue
        out_ids = graph.tensor_ids[id(out)]
        if isinstance(layer, _UNIT_LAYERS) and not isinstance(
            layer, L.DepthwiseConv1D | L.DepthwiseConv2D
        ):
            x = ins[0]
            flags = z(x)
            if isinstance(layer, L.SeparableConv1D | L.SeparableConv2D):
                m = layer.depth_multiplier
                dw = _np(layer.depthwise_kernel)
                dw_zero = np.all(
                    dw == 0, axis=tuple(range(dw.ndim - 2))
                ).reshape(-1)
                need(
                    np.repeat(graph.tensor_ids[id(x)], m),
                    np.repeat(flags, m) | dw_zero,
                )
            else:
                need(graph.tensor_ids[id(x)], flags)
            out_zero = _producer_zero(graph, name, out_ids)
            if not graph_lib._zero_at_zero(layer.activation):
                out_zero[:] = False
            zero[id(out)] = out_zero
        elif isinstance(layer, L.DepthwiseConv1D | L.DepthwiseConv2D):
            flags = np.repeat(z(ins[0]), layer.depth_multiplier)
            k = _np(layer.kernel)
            k_zero = np.all(k == 0, axis=tuple(range(k.ndim - 2))).reshape(-1)
            flags = flags | k_zero
            if layer.bias is not None:
                flags &= _np(layer.bias) == 0
            if not graph_lib._zero_at_zero(layer.activation):
                flags[:] = False
            zero[id(out)] = flags
        elif isinstance(layer, L.BatchNormalization):
            gamma = _np(layer.gamma) if layer.gamma is not None else 1.0
            beta = _np(layer.beta) if layer.beta is not None else 0.0
            mean = _np(layer.moving_mean)
            var = _np(layer.moving_variance)
            shift = beta - gamma * mean / np.sqrt(var + layer.epsilon)
            zero[id(out)] = (
                (np.asarray(gamma) == 0) & (np.asarray(beta) == 0)
            ) | (z(ins[0]) & (shift == 0))
        elif isinstance(layer, L.GroupNormalization):
            gamma = _np(layer.gamma) if layer.gamma is not None else 1.0
            beta = _np(layer.beta) if layer.beta is not None else 0.0
            zero[id(out)] = np.broadcast_to(
                (np.asarray(gamma) == 0) & (np.asarray(beta) == 0),
                (len(out_ids),),
            ).copy()
        elif isinstance(layer, L.Activation | L.ReLU | L.ELU | L.LeakyReLU):
            flags = z(ins[0])
            zero[id(out)] = flags & _maps_zero_to_zero(layer, len(flags))
        elif isinstance(layer, graph_lib._PASS_THROUGH + graph_lib._POOLING):
            zero[id(out)] = z(ins[0])
        elif isinstance(layer, L.Flatten | L.Reshape):
            flags = z(ins[0])
            zero[id(out)] = np.tile(flags, len(out_ids) // max(len(flags), 1))
        elif isinstance(layer, graph_lib._ELEMENTWISE):
            full = [z(x) for x in ins if x.shape[-1] == out.shape[-1]]
            if isinstance(layer, L.Multiply):
                zero[id(out)] = np.logical_or.reduce(full)
            else:
                zero[id(out)] = np.logical_and.reduce(full)
        elif isinstance(layer, L.Concatenate):
            if layer.axis % len(out.shape) == len(out.shape) - 1:
                zero[id(out)] = np.concatenate([z(x) for x in ins])
            else:
                zero[id(out)] = np.logical_and.reduce([z(x) for x in ins])
    # Heads and FFN units: removable when their producers are all zero.
    for pname, ids in graph._producers.items():
        kind = graph._kinds[pname]
        if kind == "channels":
            continue
        name = pname.split("/")[0]
        flags = _producer_zero(graph, name, ids)
        if kind == "ffn" and not graph._ffn_activation.get(name, False):
            flags[:] = False
        need(ids, flags)
    removable = []
    for group in graph.prunable_groups():
        removable.extend(u for u in group.units.tolist() if not needed[u])
    # A group keeps at least one unit so that every layer keeps a width.
    out = []
    for group in graph.prunable_groups():
        units = [u for u in group.units.tolist() if not needed[u]]
        if len(units) == group.size:
            units = units[1:]
        out.extend(units)
    return np.array(sorted(out), dtype=np.int64)


def _width(graph, ids, removed):
    return int(np.count_nonzero(graph.keep_of(ids, removed)))


def _new_config(graph, layer, node_outputs, removed):
    """Config of the smaller copy of `layer`."""
    L = keras.layers
    config = layer.get_config()
    name = layer.name
    if name in graph._producers and isinstance(layer, _UNIT_LAYERS):
        key = "units" if isinstance(layer, L.Dense) else "filters"
        config[key] = _width(graph, graph._producers[name], removed)
    elif isinstance(layer, L.MultiHeadAttention) and name in graph._producers:
        config["num_heads"] = _width(graph, graph._producers[name], removed)
    elif graph_lib._is_transformer_block(layer) and name in graph._producers:
        config["intermediate_dim"] = _width(
            graph, graph._producers[name + "/ffn"], removed
        )
    elif isinstance(layer, L.GroupNormalization) and name not in graph.frozen:
        ids = graph.tensor_ids[id(node_outputs[0])]
        per = len(ids) // layer.groups
        config["groups"] = _width(graph, ids, removed) // per
    elif isinstance(layer, L.Reshape) and name not in graph.frozen:
        ids = graph.tensor_ids[id(node_outputs[0])]
        target = list(config["target_shape"])
        if target[-1] != -1:
            if len(target) == 1 and len(ids) != layer.target_shape[-1]:
                pass
            target[-1] = _width(graph, ids, removed)
            config["target_shape"] = tuple(target)
    return config


def _sliced_weights(graph, layer, removed, owner=None):
    """NumPy values of `layer.weights` with the removed entries dropped.

    `owner`: the name the slices are recorded under (the block, for a
    sublayer of a Keras-Hub block); default `layer.name`.
    """
    cuts = {}
    for s in graph.slices.get(owner or layer.name, []):
        cuts.setdefault(id(s.variable), []).append(
            (s.axis, graph.keep_of(s.ids, removed))
        )
    values = []
    for v in layer.weights:
        value = _np(v)
        for axis, keep in cuts.get(id(v), []):
            value = np.compress(keep, value, axis=axis)
        values.append(value)
    return values


def build_shrunk(graph, removed):
    """A new model without the `removed` units, weights copied.

    Args:
        graph: The `DependencyGraph` of the model.
        removed: Unit ids to remove (from `select_units` or `zero_units`).

    Returns:
        A new Sequential (for a Sequential) or Functional model. A Keras-Hub
        `TransformerEncoder`/`TransformerDecoder` that loses heads becomes
        stock Keras layers (see `hub_blocks`), and the model Functional.
    """
    model, functional = graph.model, graph.functional
    removed = np.asarray(removed, dtype=np.int64)
    first_outputs = {}
    for node in graph.nodes:
        first_outputs.setdefault(id(node.operation), node.outputs)
    new_layers = {}
    taken = {node.operation.name for node in graph.nodes}
    for node in graph.nodes:
        layer = node.operation
        if id(layer) in new_layers:
            continue
        if not isinstance(layer, keras.layers.Layer) or (
            isinstance(layer, keras.layers.Lambda) and not layer.weights
        ):
            # Stateless ops and weightless Lambdas (whose config may not
            # deserialize in safe mode) are reused as they are.
            new_layers[id(layer)] = layer
            continue
        expanded = _expand_block(graph, layer, removed, taken)
        if expanded is not None:
            new_layers[id(layer)] = expanded
            continue
        config = _new_config(graph, layer, node.outputs, removed)
        new_layers[id(layer)] = layer.__class__.from_config(config)
    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name),
        functional._inputs_struct,
    )
    expanded = any(isinstance(v, ExpandedBlock) for v in new_layers.values())
    if isinstance(model, keras.Sequential) and not expanded:
        new_model = keras.Sequential(
            [
                keras.Input(
                    batch_shape=functional.inputs[0].shape,
                    dtype=functional.inputs[0].dtype,
                )
            ]
            + [new_layers[id(layer)] for layer in model.layers],
            name=model.name,
        )
    else:
        outputs = functional._run_through_graph(
            inputs, operation_fn=lambda op: new_layers[id(op)]
        )
        new_model = keras.Model(inputs, outputs, name=model.name)
    for node in graph.nodes:
        layer = node.operation
        new = new_layers.pop(id(layer), None)
        if new is None or new is layer:
            continue
        if isinstance(new, ExpandedBlock):
            for original, sub in new.pairs:
                _copy_weights(graph, original, sub, removed, owner=layer.name)
        else:
            _copy_weights(graph, layer, new, removed)
    return new_model


def _copy_weights(graph, layer, new, removed, owner=None):
    values = _sliced_weights(graph, layer, removed, owner)
    if len(values) != len(new.weights):
        raise RuntimeError(
            f"Layer {layer.name!r}: the smaller copy has "
            f"{len(new.weights)} weights, the original {len(values)}."
        )
    for var, value in zip(new.weights, values):
        if tuple(var.shape) != value.shape:
            raise RuntimeError(
                f"Layer {layer.name!r}: weight {var.path} of the smaller "
                f"copy has shape {tuple(var.shape)}, the kept entries "
                f"{value.shape}. Please report this model."
            )
        var.assign(value)


def _expand_block(graph, layer, removed, taken):
    """An `ExpandedBlock` for a Keras-Hub block that loses heads, else None."""
    if not graph_lib._is_transformer_block(layer):
        return None
    if layer.name not in graph._producers:
        return None
    heads = _width(graph, graph._producers[layer.name], removed)
    if heads == layer.num_heads:
        return None  # rebuilt from its config (smaller intermediate_dim)
    inner = _width(graph, graph._producers[layer.name + "/ffn"], removed)
    return ExpandedBlock(layer, heads, inner, taken)


@keywords_checked
def shrink(model, ratio=None, importance="l2", return_report=False):
    """Physically removes channels, heads and FFN units from `model`.

    Two modes:
    - `ratio=None` (after `keras_prune.ChannelPruning` training or any
      pruning that zeroed whole channels): removes the units whose
      parameters make them exactly zero everywhere they are read. The
      result computes the same function (to float rounding).
    - `ratio=r` (one-shot): removes `floor(r * size)` units of every
      prunable coupled group, lowest `importance` first; fine-tune after.

    Pruning wrappers are stripped first (`keras_prune.strip_pruning`).
    Groups the analysis cannot prove safe are left whole; the report says
    why.

    Args:
        model: A built Sequential or Functional Keras model.
        ratio: Fraction in [0, 1) of each group to remove, or `None`.
        importance: `'l2'`, `'l1'` or `fn(values, axis)` (one-shot mode).
        return_report: Also return a `ShrinkReport`.

    Returns:
        The smaller model (and the report when `return_report`).

    Example:

    ```python
    small = keras_prune.shrink(model, ratio=0.5)
    small.save("small.keras")   # stock Keras layers only
    ```
    """
    from keras_prune.integration.state import pruning_wrappers
    from keras_prune.integration.strip import strip_pruning
    from keras_prune.structure.report import ShrinkReport

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"shrink expects a keras.Model; got {type(model).__name__}."
        )
    if pruning_wrappers(model):
        model = strip_pruning(model)
    graph = DependencyGraph(model)
    if ratio is None:
        removed = zero_units(graph)
    else:
        removed = select_units(graph, ratio, importance)
    small = build_shrunk(graph, removed)
    if return_report:
        return small, ShrinkReport(model, small, graph, removed)
    return small


_ = CONSUMER
