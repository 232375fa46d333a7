"""Before/after accounting of a shrink: parameters, FLOPs and layer widths.

FLOPs count multiply-adds twice (2 * MACs) of Dense, convolution and
attention layers at batch size 1; elementwise layers are ignored.
"""

import keras
import numpy as np

from keras_prune.structure.hub_blocks import expanded_names


def _prod(shape):
    return int(np.prod([d for d in shape if d is not None] or [1]))


def _macs(layer, input_shape, output_shape):
    L = keras.layers
    if isinstance(layer, L.Dense):
        return _prod(output_shape[1:-1]) * layer.kernel.shape[0] * layer.units
    if isinstance(layer, L.SeparableConv1D | L.SeparableConv2D):
        dk = layer.depthwise_kernel.shape
        pk = layer.pointwise_kernel.shape
        spatial = _prod(output_shape[1:-1])
        return spatial * (_prod(dk) + _prod(pk))
    if isinstance(layer, L.DepthwiseConv1D | L.DepthwiseConv2D):
        return _prod(output_shape[1:-1]) * _prod(layer.kernel.shape)
    if isinstance(
        layer, L.Conv1DTranspose | L.Conv2DTranspose | L.Conv3DTranspose
    ):
        return _prod(input_shape[1:-1]) * _prod(layer.kernel.shape)
    if isinstance(layer, L.Conv1D | L.Conv2D | L.Conv3D):
        return _prod(output_shape[1:-1]) * _prod(layer.kernel.shape)
    if isinstance(layer, L.MultiHeadAttention):
        q = _prod(input_shape[1:-1])
        proj = sum(
            _prod(d.kernel.shape)
            for d in (
                layer._query_dense,
                layer._key_dense,
                layer._value_dense,
                layer._output_dense,
            )
        )
        att = q * q * layer.num_heads * (layer._key_dim + layer._value_dim)
        return q * proj + att
    total = 0
    for sub in (
        getattr(layer, "_self_attention_layer", None),
        getattr(layer, "_feedforward_intermediate_dense", None),
        getattr(layer, "_feedforward_output_dense", None),
    ):
        if sub is not None:
            total += _macs(sub, input_shape, output_shape)
    return total


def model_flops(model):
    """FLOPs (2 x multiply-adds) of one sample through `model`.

    Args:
        model: A built Sequential or Functional model.

    Returns:
        Integer FLOP count.
    """
    from keras_prune.structure.graph import _graph_of
    from keras_prune.structure.graph import graph_nodes

    total = 0
    for node in graph_nodes(_graph_of(model)):
        ins = node.input_tensors
        if not ins or not node.outputs:
            continue
        total += _macs(
            node.operation, tuple(ins[0].shape), tuple(node.outputs[0].shape)
        )
    return 2 * total


def layer_widths(model):
    """`{(layer name, setting): width}` of the model's own layers.

    Settings: `units`, `filters`, `num_heads`, `intermediate_dim` and the
    `groups` of GroupNormalization.
    """
    widths = {}
    for layer in model.layers:
        for key in (
            "units",
            "filters",
            "num_heads",
            "intermediate_dim",
            "groups",
        ):
            value = getattr(layer, key, None)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            if key == "groups" and not isinstance(
                layer, keras.layers.GroupNormalization
            ):
                continue
            widths[(layer.name, key)] = value
    return widths


class ShrinkReport:
    """What `shrink` did: sizes before and after, and what stayed whole.

    Attributes:
        params_before, params_after: Parameter counts.
        flops_before, flops_after: FLOPs per sample (see `model_flops`).
        widths: List of `(layer, setting, before, after)`.
        frozen: `{layer name: reason}` of layers that kept their channels.
        removed_units: Number of units removed.
    """

    def __init__(self, before, after, graph, removed):
        self.params_before = before.count_params()
        self.params_after = after.count_params()
        self.flops_before = model_flops(before)
        self.flops_after = model_flops(after)
        old, new = layer_widths(before), layer_widths(after)

        def after_width(name, key):
            if (name, key) in new:
                return new[(name, key)]
            # A Keras-Hub block rewritten as stock layers (hub_blocks.py).
            renamed = expanded_names(name).get(key)
            return new.get(renamed) if renamed else None

        self.widths = [
            (name, key, value, after_width(name, key))
            for (name, key), value in old.items()
        ]
        self.frozen = dict(graph.frozen)
        self.removed_units = len(removed)

    def as_dict(self):
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "flops_before": self.flops_before,
            "flops_after": self.flops_after,
            "widths": self.widths,
            "frozen": self.frozen,
            "removed_units": self.removed_units,
        }

    def format(self, max_layers=40):
        """The report as a text table."""

        def ratio(a, b):
            return f"{b / a:.3f}x" if a else "-"

        lines = [
            f"{'':12} {'before':>14} {'after':>14} {'ratio':>8}",
            f"{'params':12} {self.params_before:>14,} "
            f"{self.params_after:>14,} "
            f"{ratio(self.params_before, self.params_after):>8}",
            f"{'FLOPs':12} {self.flops_before:>14,} {self.flops_after:>14,} "
            f"{ratio(self.flops_before, self.flops_after):>8}",
            "",
            f"{'layer':32} {'setting':16} {'before':>7} {'after':>7}",
        ]
        changed = [w for w in self.widths if w[2] != w[3]]
        for name, key, a, b in changed[:max_layers]:
            lines.append(
                f"{name:32} {key:16} {a:>7} {b if b is not None else '-':>7}"
            )
        if len(changed) > max_layers:
            lines.append(f"... {len(changed) - max_layers} more layers changed")
        if not changed:
            lines.append("(no layer changed width)")
        if self.frozen:
            lines.append("")
            lines.append("kept whole (not pruned):")
            for name, reason in list(self.frozen.items())[:max_layers]:
                lines.append(f"  {name}: {reason}")
            if len(self.frozen) > max_layers:
                lines.append(f"  ... {len(self.frozen) - max_layers} more")
        return "\n".join(lines)

    def __str__(self):
        return self.format()
