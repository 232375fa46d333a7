"""Pruning policies (tfmot-semantics.md §1.11).

`prune_low_magnitude(model, pruning_policy=...)` wraps only the layers the
policy allows, after `ensure_model_supports_pruning(model)` accepted the
model. No training here: wrapping and the model checks are eager Python.
"""

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.integration.wrapper import PruneLowMagnitude

from conftest import to_np


def wrapped_names(model):
    return sorted(
        l.layer.name for l in model.layers if isinstance(l, PruneLowMagnitude)
    )


class OnlyDense(kp.PruningPolicy):
    def __init__(self):
        self.asked, self.checked = [], []

    def allow_pruning(self, layer):
        self.asked.append(layer.name)
        return isinstance(layer, L.Dense)

    def ensure_model_supports_pruning(self, model):
        self.checked.append(model.name)


def small_model():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="conv")(inp)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(5, name="d1")(x)
    return keras.Model(inp, L.Dense(2, name="d2")(x), name="m")


def test_custom_policy_wraps_only_allowed_layers():
    model = small_model()
    policy = OnlyDense()
    pruned = kp.prune_low_magnitude(model, pruning_policy=policy)
    assert wrapped_names(pruned) == ["d1", "d2"]
    assert policy.checked == ["m"]
    assert {"conv", "d1", "d2"} <= set(policy.asked)
    assert isinstance(pruned.get_layer("conv"), L.Conv2D)
    x = np.random.RandomState(0).randn(2, 6, 6, 3).astype("float32")
    np.testing.assert_array_equal(to_np(pruned(x)), to_np(model(x)))


def test_policy_that_rejects_the_model_raises_before_wrapping():
    class Refuse(OnlyDense):
        def ensure_model_supports_pruning(self, model):
            raise ValueError(f"model {model.name} refused")

    with pytest.raises(ValueError, match="model m refused"):
        kp.prune_low_magnitude(small_model(), pruning_policy=Refuse())


def test_base_policy_methods_raise_helpfully():
    class Half(kp.PruningPolicy):
        def allow_pruning(self, layer):
            return True

    with pytest.raises(
        NotImplementedError,
        match=r"PruningPolicy must "
        r"implement allow_pruning\(layer\)",
    ):
        kp.PruningPolicy().allow_pruning(L.Dense(2))
    with pytest.raises(
        NotImplementedError,
        match=r"Half must implement ensure_model_supports_pruning\(model\)",
    ):
        kp.prune_low_magnitude(small_model(), pruning_policy=Half())


class Scale(L.Layer):
    """A custom layer with a weight keras-prune does not know (of rank 2:
    weights of rank < 2 never block pruning)."""

    def build(self, input_shape):
        d = input_shape[-1]
        self.scale = self.add_weight(
            shape=(d, d), initializer="identity", name="scale"
        )

    def call(self, x):
        return keras.ops.matmul(x, self.scale)


def custom_model():
    inp = keras.Input((4,))
    x = L.Dense(3, name="d")(inp)
    return keras.Model(inp, Scale(name="my_scale")(x))


def test_skip_unsupported_layers_policy():
    model = custom_model()
    with pytest.raises(kp.UnsupportedLayerError, match=r"'my_scale' \(Scale\)"):
        kp.prune_low_magnitude(model)
    pruned = kp.prune_low_magnitude(
        model,
        kp.ConstantSparsity(0.5, 0, frequency=1),
        pruning_policy=kp.SkipUnsupportedLayers(),
    )
    assert wrapped_names(pruned) == ["d"]
    scale = pruned.get_layer("my_scale")
    assert type(scale) is Scale
    assert kp.SkipUnsupportedLayers().allow_pruning(L.Dense(2))
    assert not kp.SkipUnsupportedLayers().allow_pruning(
        model.get_layer("my_scale")  # built: has an unknown weight
    )
    kp.SkipUnsupportedLayers().ensure_model_supports_pruning(model)
    # The custom layer's weight stays dense through training.
    pruned.get_layer("prune_low_magnitude_d").update_masks_now(0.5)
    assert to_np(pruned.get_layer("prune_low_magnitude_d").masks[0]).sum() == 6
    np.testing.assert_array_equal(
        to_np(scale.scale), np.eye(3, dtype="float32")
    )


# ---------------------------------------------------------------------------
# PruneForLatencyOnXNNPack.


def xnnpack_model(
    stem_pad=((1, 1), (1, 1)), middle=None, pool=True, stem_channels=3
):
    inp = keras.Input((9, 9, stem_channels))
    x = inp
    if stem_pad is not None:
        x = L.ZeroPadding2D(stem_pad, name="pad")(x)
    x = L.Conv2D(4, 3, strides=2, padding="valid", name="stem")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(6, 1, name="pw1")(x)
    y = L.Conv2D(6, 1, name="pw2", activation="relu")(x)
    x = L.Add(name="sum")([x, y])
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    if middle is not None:
        x = middle(x)
    x = L.Conv2D(8, 1, name="pw3")(x)
    if pool:
        x = L.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(2, name="head")(x))


def test_xnnpack_wraps_only_1x1_convs():
    model = xnnpack_model()
    pruned = kp.prune_low_magnitude(
        model, pruning_policy=kp.PruneForLatencyOnXNNPack()
    )
    assert wrapped_names(pruned) == ["pw1", "pw2", "pw3"]
    for name in ("stem", "dw", "head"):
        assert not isinstance(pruned.get_layer(name), PruneLowMagnitude)
    policy = kp.PruneForLatencyOnXNNPack()
    assert policy.allow_pruning(L.Conv2D(2, 1))
    assert not policy.allow_pruning(L.Conv2D(2, 3))
    assert not policy.allow_pruning(L.Dense(2))
    # Sequential models are checked the same way; an already pruned model
    # passes (wrappers are checked through to their layer).
    seq = keras.Sequential(
        [
            keras.Input((9, 9, 3)),
            L.ZeroPadding2D(1),
            L.Conv2D(4, 3, strides=2),
            L.Conv2D(4, 1, name="pw"),
            L.GlobalAveragePooling2D(),
            L.Dense(2),
        ]
    )
    assert wrapped_names(
        kp.prune_low_magnitude(seq, pruning_policy=policy)
    ) == ["pw"]
    policy.ensure_model_supports_pruning(pruned)


class Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(2, 1)

    def call(self, x):
        return self.conv(x)


def expect_error(model, match):
    with pytest.raises(ValueError, match=match):
        kp.prune_low_magnitude(
            model, pruning_policy=kp.PruneForLatencyOnXNNPack()
        )


STEM_ERROR = (
    r"^Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == "
    r"3` and `VALID` padding and preceding `ZeroPadding2D` with `padding == "
    r"1` in all input branches of the model$"
)


def test_xnnpack_rejects_subclassed_and_unbuilt():
    sub = Sub()
    sub(np.zeros((1, 4, 4, 3), "float32"))
    expect_error(sub, r"^Subclassed models are not supported currently")
    expect_error(
        keras.Sequential([L.Conv2D(2, 1)]),
        r"^Unbuilt models are not supported currently\.$",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stem_pad=None),  # no ZeroPadding2D before the stem
        dict(stem_pad=((2, 2), (2, 2))),  # padding 2
        dict(stem_channels=4),  # 4 input filters
    ],
)
def test_xnnpack_requires_the_stem(kwargs):
    expect_error(xnnpack_model(**kwargs), STEM_ERROR)


def test_xnnpack_requires_the_stem_in_every_input_branch():
    a = keras.Input((9, 9, 3))
    b = keras.Input((5, 5, 4))
    x = L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(1)(a))
    x = L.Add()([x, L.Conv2D(4, 1)(b)])  # branch b has no stem
    model = keras.Model([a, b], L.GlobalAveragePooling2D()(x))
    expect_error(model, STEM_ERROR)


def test_xnnpack_requires_global_average_pooling():
    expect_error(
        xnnpack_model(pool=False),
        r"^Could not find a `GlobalAveragePooling2D` layer in all output "
        r"branches$",
    )


@pytest.mark.parametrize(
    "middle,name",
    [
        (
            lambda x: L.Conv2D(8, 3, padding="same", name="conv3x3")(x),
            "conv3x3",
        ),
        (lambda x: L.Conv2D(8, 1, strides=2, name="pw_s2")(x), "pw_s2"),
        (lambda x: L.MaxPooling2D(name="maxpool")(x), "maxpool"),
        (lambda x: L.Activation("tanh", name="tanh")(x), "tanh"),
        (
            lambda x: L.DepthwiseConv2D(3, strides=2, name="dw_nopad")(x),
            "dw_nopad",
        ),
        (lambda x: L.UpSampling2D(name="nearest")(x), "nearest"),
    ],
)
def test_xnnpack_rejects_unsupported_middle_layer(middle, name):
    # tfmot's message names the class; keras-prune adds the layer's name.
    model = xnnpack_model(middle=middle)
    cls = type(model.get_layer(name)).__name__
    expect_error(
        model,
        rf"^Layer {cls} is not supported for the PruneForLatencyOnXNNPack "
        rf"pruning policy \(layer '{name}';",
    )


@pytest.mark.parametrize(
    "middle",
    [
        lambda x: L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(1)(x)),
        lambda x: L.DepthwiseConv2D(5)(L.ZeroPadding2D(2)(x)),
        lambda x: L.UpSampling2D(interpolation="bilinear")(x),
        lambda x: L.Activation("relu6")(L.Dropout(0.1)(x)),
        lambda x: L.Multiply()([x, L.Activation("sigmoid")(x)]),
        lambda x: keras.ops.add(x, x),
        lambda x: L.Identity()(x),
        # A nested Sequential between the stem and the pooling.
        lambda x: keras.Sequential(
            [L.Conv2D(8, 1), L.ReLU(), L.DepthwiseConv2D(3, padding="same")]
        )(x),
    ],
)
def test_xnnpack_accepts_supported_middle_layers(middle):
    model = xnnpack_model(middle=middle)
    policy = kp.PruneForLatencyOnXNNPack()
    assert policy.ensure_model_supports_pruning(model) is None
    pruned = kp.prune_low_magnitude(model, pruning_policy=policy)
    wrapped = [
        layer.layer
        for layer in pruned._flatten_layers(include_self=False)
        if isinstance(layer, PruneLowMagnitude)
    ]
    assert wrapped and all(
        isinstance(layer, L.Conv2D) and tuple(layer.kernel_size) == (1, 1)
        for layer in wrapped
    )


def test_xnnpack_accepts_an_identity_lambda():
    from keras.src.saving.serialization_lib import SafeModeScope

    model = xnnpack_model(middle=lambda x: L.Lambda(lambda t: t)(x))
    policy = kp.PruneForLatencyOnXNNPack()
    assert policy.ensure_model_supports_pruning(model) is None
    # Cloning a Python lambda needs unsafe deserialization (Keras' rule).
    with SafeModeScope(False):
        pruned = kp.prune_low_magnitude(model, pruning_policy=policy)
    assert wrapped_names(pruned) == ["pw1", "pw2", "pw3"]
    # A Lambda that computes something is refused, naming class and name.
    model = xnnpack_model(
        middle=lambda x: L.Lambda(lambda t: t * 2.0, name="double")(x)
    )
    with pytest.raises(ValueError, match=r"^Layer Lambda is not .*'double'"):
        policy.ensure_model_supports_pruning(model)


def test_xnnpack_looks_inside_nested_models():
    # The stem and the pooling inside a nested Functional backbone, with a
    # nested Sequential inside it.
    inner = keras.Sequential(
        [keras.Input((5, 5, 4)), L.Conv2D(6, 1, name="in_pw"), L.ReLU()]
    )
    inp = keras.Input((9, 9, 3))
    x = L.Conv2D(4, 3, strides=2, name="stem")(L.ZeroPadding2D(1)(inp))
    x = inner(x)
    backbone = keras.Model(inp, L.GlobalAveragePooling2D()(x))
    outer_in = keras.Input((9, 9, 3))
    model = keras.Model(outer_in, L.Dense(2)(backbone(outer_in)))
    policy = kp.PruneForLatencyOnXNNPack()
    assert policy.ensure_model_supports_pruning(model) is None
    pruned = kp.prune_low_magnitude(model, pruning_policy=policy)
    assert [
        w.layer.name for w in kp.integration.strip.pruning_wrappers(pruned)
    ] == ["in_pw"]
    # An unsupported layer inside the nested model is found and named.
    bad = keras.Sequential(
        [keras.Input((5, 5, 4)), L.MaxPooling2D(1, name="max_pooling2d")]
    )
    x = L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(1)(inp))
    model = keras.Model(inp, L.GlobalAveragePooling2D()(bad(x)))
    with pytest.raises(
        ValueError,
        match=r"^Layer MaxPooling2D is not supported for the "
        r"PruneForLatencyOnXNNPack pruning policy \(layer 'max_pooling2d';",
    ):
        policy.ensure_model_supports_pruning(model)
