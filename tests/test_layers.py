"""Which weights of each kind of layer are pruned, and pruning them under fit.

For every layer kind: the exact list of pruned weights (name, shape), then a
short `fit` with `ConstantSparsity(0.5, 0, frequency=1)`: each mask keeps
exactly `kept_count` weights, the stripped layer holds exactly zero at every
masked position, and stripped predictions equal pruned predictions.
"""

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import keras_prune as kp
from keras_prune.integration.wrapper import PruneLowMagnitude

from conftest import BACKEND
from conftest import to_np


class MyDense(L.Dense):
    """A plain subclass of Dense: pruned like Dense."""


class OwnWeights(L.Layer, kp.PrunableLayer):
    """A custom layer choosing its pruned weights (kernel, not `scale`)."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.scale = self.add_weight(
            shape=(3,), name="scale", initializer="ones"
        )

    def call(self, x):
        return ops.matmul(x, self.kernel) * self.scale

    def get_prunable_weights(self):
        return [self.kernel]


class DuckTyped(L.Layer):
    """Has `get_prunable_weights`, without PrunableLayer (duck typing)."""

    def build(self, input_shape):
        self.w1 = self.add_weight(shape=(input_shape[-1], 4), name="w1")
        self.w2 = self.add_weight(shape=(4, 3), name="w2")
        self.b = self.add_weight(shape=(3,), name="b", initializer="zeros")

    def call(self, x):
        return ops.matmul(ops.tanh(ops.matmul(x, self.w1)), self.w2) + self.b

    def get_prunable_weights(self):
        return [self.w2, self.w1]


def floats(*shape):
    def make(n, rng):
        return rng.randn(n, *shape).astype("float32")

    return make


def ints(length, vocab):
    def make(n, rng):
        return rng.randint(0, vocab, size=(n, length)).astype("int32")

    return make


def lstm_w(d_in, units):
    return [
        ("kernel", (d_in, 4 * units)),
        ("recurrent_kernel", (units, 4 * units)),
    ]


# id -> (layer factory, input maker, expected [(name, shape)] in order)
CASES = {
    "Dense": (lambda: L.Dense(3), floats(4), [("kernel", (4, 3))]),
    "EinsumDense": (
        lambda: L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c"),
        floats(4),
        [("kernel", (4, 3))],
    ),
    "Conv1D": (lambda: L.Conv1D(2, 3), floats(5, 2), [("kernel", (3, 2, 2))]),
    "Conv2D": (
        lambda: L.Conv2D(2, 3),
        floats(4, 4, 2),
        [("kernel", (3, 3, 2, 2))],
    ),
    "Conv3D": (
        lambda: L.Conv3D(2, 2),
        floats(3, 3, 3, 2),
        [("kernel", (2, 2, 2, 2, 2))],
    ),
    "Conv1DTranspose": (
        lambda: L.Conv1DTranspose(3, 2),
        floats(4, 2),
        [("kernel", (2, 3, 2))],
    ),
    "Conv2DTranspose": (
        lambda: L.Conv2DTranspose(4, 3),
        floats(3, 3, 2),
        [("kernel", (3, 3, 4, 2))],
    ),
    "Conv3DTranspose": (
        lambda: L.Conv3DTranspose(2, 2),
        floats(2, 2, 2, 2),
        [("kernel", (2, 2, 2, 2, 2))],
    ),
    "DepthwiseConv1D": (
        lambda: L.DepthwiseConv1D(3, depth_multiplier=2),
        floats(5, 2),
        [("kernel", (3, 2, 2))],  # Keras 3 names it "kernel"
    ),
    "DepthwiseConv2D": (
        lambda: L.DepthwiseConv2D(3),
        floats(4, 4, 2),
        [("kernel", (3, 3, 2, 1))],
    ),
    "SeparableConv1D": (
        lambda: L.SeparableConv1D(3, 3),
        floats(5, 2),
        [("depthwise_kernel", (3, 2, 1)), ("pointwise_kernel", (1, 2, 3))],
    ),
    "SeparableConv2D": (
        lambda: L.SeparableConv2D(3, 2),
        floats(3, 3, 2),
        [
            ("depthwise_kernel", (2, 2, 2, 1)),
            ("pointwise_kernel", (1, 1, 2, 3)),
        ],
    ),
    "Embedding": (
        lambda: L.Embedding(10, 3),
        ints(4, 10),
        [("embeddings", (10, 3))],
    ),
    "SimpleRNN": (
        lambda: L.SimpleRNN(3),
        floats(3, 4),
        [("kernel", (4, 3)), ("recurrent_kernel", (3, 3))],
    ),
    "LSTM": (lambda: L.LSTM(3), floats(3, 4), lstm_w(4, 3)),
    "GRU": (
        lambda: L.GRU(3),
        floats(3, 4),
        [("kernel", (4, 9)), ("recurrent_kernel", (3, 9))],
    ),
    "ConvLSTM1D": (
        lambda: L.ConvLSTM1D(2, 3),
        floats(2, 5, 2),
        [("kernel", (3, 2, 8)), ("recurrent_kernel", (3, 2, 8))],
    ),
    "ConvLSTM2D": (
        lambda: L.ConvLSTM2D(2, 2),
        floats(2, 3, 3, 2),
        [("kernel", (2, 2, 2, 8)), ("recurrent_kernel", (2, 2, 2, 8))],
    ),
    "Bidirectional_LSTM": (
        lambda: L.Bidirectional(L.LSTM(3)),
        floats(3, 4),
        lstm_w(4, 3) + lstm_w(4, 3),
    ),
    "TimeDistributed_Dense": (
        lambda: L.TimeDistributed(L.Dense(3)),
        floats(2, 4),
        [("kernel", (4, 3))],
    ),
    "RNN_LSTMCell": (
        lambda: L.RNN(L.LSTMCell(3)),
        floats(3, 4),
        lstm_w(4, 3),
    ),
    "RNN_StackedRNNCells": (
        lambda: L.RNN(L.StackedRNNCells([L.LSTMCell(3), L.GRUCell(2)])),
        floats(3, 4),
        lstm_w(4, 3) + [("kernel", (3, 6)), ("recurrent_kernel", (2, 6))],
    ),
    "Dense_subclass": (lambda: MyDense(3), floats(4), [("kernel", (4, 3))]),
    "PrunableLayer": (OwnWeights, floats(4), [("kernel", (4, 3))]),
    "duck_typed": (
        DuckTyped,
        floats(4),
        [("w2", (4, 3)), ("w1", (4, 4))],
    ),
}


def build_model(factory, make_x):
    x = make_x(1, np.random.RandomState(0))
    inp = keras.Input(x.shape[1:], dtype=x.dtype)
    return keras.Model(inp, factory()(inp))


def train_and_check(model, make_x, n_masks):
    """Short fit, then the checks common to every kind. Returns wrappers."""
    rng = np.random.RandomState(1)
    x = make_x(8, rng)
    y_shape = tuple(model.outputs[0].shape[1:])
    y = rng.randn(8, *y_shape).astype("float32")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    wrappers = kp.integration.strip.pruning_wrappers(model)
    masks = [
        (v, to_np(m))
        for w in wrappers
        for v, m in zip(w.pruned_weights, w.masks)
    ]
    assert len(masks) == n_masks
    assert kp.pruning_step(model) == 2
    for v, m in masks:
        assert m.dtype == bool and m.shape == tuple(v.shape)
        assert np.count_nonzero(m) == int(to_np(kp.kept_count(m.size, 0.5)))
    expected = model.predict(x, verbose=0)
    stripped = kp.strip_pruning(model)
    assert not kp.integration.strip.pruning_wrappers(stripped)
    for v, m in masks:  # the stripped model holds the same variables
        value = to_np(v)
        assert np.all(value[~m] == 0)
        assert np.count_nonzero(value) == np.count_nonzero(m)
    assert_same_predictions(stripped.predict(x, verbose=0), expected, model)
    return wrappers


def assert_same_predictions(actual, expected, model):
    """Bit-identical, except torch's recurrent layers (see below)."""
    recurrent = any(
        isinstance(l, (L.LSTM, L.GRU))
        for l in model._flatten_layers(recursive=True)
    )
    if BACKEND == "torch" and recurrent:
        # torch.matmul folds a 3-D input differently when the kernel
        # requires grad (a Parameter, after strip) than when it does not
        # (kernel * mask): the sums differ in the last bit. Seen for LSTM
        # first, and for GRU on a 2-core Xeon in session 19 (5.96e-8), at
        # commits that passed CI elsewhere.
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("kind", list(CASES))
def test_layer_kind(kind):
    factory, make_x, expected = CASES[kind]
    model = build_model(factory, make_x)
    original = model.layers[1]
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0, frequency=1)
    )
    wrapper = pruned.layers[1]
    assert isinstance(wrapper, PruneLowMagnitude)
    assert type(wrapper.layer) is type(original)
    got = [(v.name, tuple(v.shape)) for v in wrapper.pruned_weights]
    assert got == expected
    assert not any("bias" in v.name for v in wrapper.pruned_weights)
    train_and_check(pruned, make_x, len(expected))


def test_bidirectional_prunes_both_directions():
    factory, make_x, _ = CASES["Bidirectional_LSTM"]
    pruned = kp.prune_low_magnitude(build_model(factory, make_x))
    paths = [v.path for v in pruned.layers[1].pruned_weights]
    assert sum("forward" in p for p in paths) == 2
    assert sum("backward" in p for p in paths) == 2


def test_multi_head_attention():
    q = keras.Input((3, 4))
    v = keras.Input((2, 4))
    mha = L.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")
    model = keras.Model([q, v], mha(q, v))
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0, frequency=1)
    )
    wrapper = pruned.get_layer("prune_low_magnitude_mha")
    got = [
        (v.path.split("/")[-2:], tuple(v.shape)) for v in wrapper.pruned_weights
    ]
    assert got == [
        (["query", "kernel"], (4, 2, 2)),
        (["key", "kernel"], (4, 2, 2)),
        (["value", "kernel"], (4, 2, 2)),
        (["attention_output", "kernel"], (2, 2, 4)),
    ]
    rng = np.random.RandomState(0)
    xq = rng.randn(8, 3, 4).astype("float32")
    xv = rng.randn(8, 2, 4).astype("float32")
    y = rng.randn(8, 3, 4).astype("float32")
    np.testing.assert_array_equal(
        pruned.predict([xq, xv], verbose=0), model.predict([xq, xv], verbose=0)
    )
    pruned.compile(keras.optimizers.SGD(0.05), "mse")
    pruned.fit([xq, xv], y, batch_size=4, shuffle=False, verbose=0)
    assert kp.pruning_step(pruned) == 2
    masks = [
        (v, to_np(m)) for v, m in zip(wrapper.pruned_weights, wrapper.masks)
    ]
    for _, m in masks:
        assert np.count_nonzero(m) == m.size // 2
    expected = pruned.predict([xq, xv], verbose=0)
    stripped = kp.strip_pruning(pruned)
    assert isinstance(stripped.get_layer("mha"), L.MultiHeadAttention)
    for v, m in masks:
        assert np.all(to_np(v)[~m] == 0)
    np.testing.assert_array_equal(
        stripped.predict([xq, xv], verbose=0), expected
    )


def test_single_mha_layer_wrapped_directly():
    q = keras.Input((3, 4))
    wrapper = kp.prune_low_magnitude(L.MultiHeadAttention(2, 2))
    out = wrapper(q, q)
    assert tuple(out.shape) == (None, 3, 4)
    assert len(wrapper.pruned_weights) == 4


def test_normalization_and_dropout_not_wrapped():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(4, name="d"),
            L.BatchNormalization(name="bn"),
            L.LayerNormalization(name="ln"),
            L.Dropout(0.5, name="drop"),
            L.Dense(2, name="out"),
        ]
    )
    pruned = kp.prune_low_magnitude(model)
    assert [type(l).__name__ for l in pruned.layers] == [
        "PruneLowMagnitude",
        "BatchNormalization",
        "LayerNormalization",
        "Dropout",
        "PruneLowMagnitude",
    ]
    wrappers = kp.integration.strip.pruning_wrappers(pruned)
    assert [[v.name for v in w.pruned_weights] for w in wrappers] == [
        ["kernel"],
        ["kernel"],
    ]
    # BN's statistics still train through the model.
    rng = np.random.RandomState(0)
    x = rng.randn(8, 6).astype("float32")
    pruned.compile(keras.optimizers.SGD(0.05), "mse")
    pruned.fit(x, np.zeros((8, 2), "float32"), batch_size=8, verbose=0)
    assert np.any(to_np(pruned.layers[1].moving_mean) != 0)
    # Wrapped on its own (tfmot allows it): a wrapper without masks whose
    # BN statistics still train, and which strips back to the layer.
    bn = L.BatchNormalization()
    alone = keras.Sequential([keras.Input((6,)), kp.prune_low_magnitude(bn)])
    assert alone.layers[0].masks == []
    alone.compile(keras.optimizers.SGD(0.05), "mse")
    alone.fit(x, np.zeros((8, 6), "float32"), batch_size=8, verbose=0)
    assert np.any(to_np(bn.moving_mean) != 0)
    np.testing.assert_array_equal(
        to_np(alone.predict(x, verbose=0)),
        to_np(kp.strip_pruning(alone).predict(x, verbose=0)),
    )


def test_embedding_mask_zero_into_pruned_lstm():
    """Keras masks flow through wrappers (Embedding -> LSTM)."""
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="int32"),
            L.Embedding(6, 3, mask_zero=True),
            L.LSTM(2),
        ]
    )
    pruned = kp.prune_low_magnitude(model)
    x = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], "int32")
    np.testing.assert_array_equal(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    # Padding is masked: trailing zeros do not change the output.
    x2 = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], "int32")
    x2b = np.array([[1, 2], [3, 0]], "int32")
    short = keras.Sequential(
        [keras.Input((2,), dtype="int32"), pruned.layers[0], pruned.layers[1]]
    )
    np.testing.assert_allclose(
        pruned.predict(x2, verbose=0),
        short.predict(x2b, verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )
