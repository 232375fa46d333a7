"""How `prune_low_magnitude` rewrites models and `strip_pruning` undoes it.

Layers are swapped in place (graph nodes, attributes, tracking): the model
keeps its class, its call arguments and its layer objects; no unwrapped
layer is rebuilt from its config. Tiny models; one Keras-Hub GPT-2 task
shared by the module.
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import PruneLowMagnitude
from keras_prune.integration.strip import pruning_wrappers

L = keras.layers
RNG = np.random.default_rng(0)


def to_np(x):
    return keras.ops.convert_to_numpy(x)


def data(n=16, d_in=8, d_out=2):
    x = RNG.random((n, d_in)).astype("float32")
    y = RNG.random((n, d_out)).astype("float32")
    return x, y


def as_json(config):
    """A config as a file holds it (tuples become lists)."""
    return json.loads(json.dumps(config))


def keyword_mha_model():
    """Keyword calls, a mask, a shared layer and `training` (Dropout)."""
    inp = keras.Input((8,))
    h = L.Dense(8, name="a")(inp)
    seq = L.Reshape((2, 4))(h)
    seq = L.Dropout(0.0)(seq)
    mha = L.MultiHeadAttention(2, 4, name="mha")
    att = mha(query=seq, value=seq, key=seq)
    att = mha(att, att, use_causal_mask=True)  # called twice, mixed call
    shared = L.Dense(8, name="shared")
    h = shared(shared(L.Flatten()(att)))
    return keras.Model(inp, L.Dense(2, name="out")(h))


# ---------------------------------------------------------- graph models


def test_keyword_calls_shared_layers_compile_and_config():
    model = keyword_mha_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    config = model.get_config()
    x, y = data()
    expected = to_np(model(x))
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    # A copy, uncompiled (tfmot: optimizer None); the original unchanged.
    assert pruned is not model and type(pruned) is type(model)
    assert not hasattr(pruned, "optimizer") and not pruned.compiled
    assert model.compiled and model.optimizer is not None
    assert sorted(w.layer.name for w in pruning_wrappers(pruned)) == [
        "a",
        "mha",
        "out",
        "shared",
    ]
    # The input keeps its auto-generated name.
    assert pruned.layers[0].name == model.layers[0].name
    np.testing.assert_allclose(to_np(pruned(x)), expected, rtol=1e-6)
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert kp.pruning_step(pruned) == 2
    mha = pruned.get_layer("prune_low_magnitude_mha")
    # One wrapper for the layer called twice: one step per batch.
    assert int(to_np(mha.pruning_step)) == 2
    assert all(
        int(to_np(m).sum()) == m.size // 2 for m in map(to_np, mha.masks)
    )
    after = to_np(pruned.predict(x, verbose=0))
    stripped = kp.strip_pruning(pruned)
    assert stripped is pruned
    assert stripped.get_config() == config
    assert not hasattr(stripped, "optimizer") and not stripped.compiled
    assert not pruning_wrappers(stripped)
    assert len(stripped.weights) == len(model.weights)
    np.testing.assert_allclose(to_np(stripped(x)), after, rtol=1e-6, atol=1e-7)
    kernel = to_np(stripped.get_layer("shared").kernel)
    assert np.count_nonzero(kernel) == kernel.size // 2


def test_stripped_file_size_equals_dense_and_round_trips(tmp_path):
    x, y = data()
    model = keras.Sequential(
        [keras.Input((8,)), L.Dense(32, name="d1"), L.Dense(2, name="d2")]
    )
    dense_path = tmp_path / "dense.keras"
    model.save(dense_path)
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    pruned.fit(x, y, batch_size=8, verbose=0)
    pruned_path = tmp_path / "pruned.keras"
    pruned.save(pruned_path)
    loaded = keras.saving.load_model(pruned_path)
    assert isinstance(loaded.layers[0], PruneLowMagnitude)
    np.testing.assert_array_equal(to_np(loaded(x)), to_np(pruned(x)))
    stripped = kp.strip_pruning(pruned)
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    # No optimizer state, no masks: the dense model's size (the same
    # arrays; the archive's metadata differs by a few bytes).
    assert os.path.getsize(path) < 1.02 * os.path.getsize(dense_path)
    reloaded = keras.saving.load_model(path)
    assert as_json(reloaded.get_config()) == as_json(stripped.get_config())
    np.testing.assert_array_equal(to_np(reloaded(x)), to_np(stripped(x)))


def test_pruning_a_pruned_model_raises_and_mixed_models_warn():
    model = keras.Sequential(
        [keras.Input((8,)), L.Dense(4, name="d1"), L.Dense(2, name="d2")]
    )
    pruned = kp.prune_low_magnitude(model)
    with pytest.raises(ValueError, match="already pruned.*strip_pruning"):
        kp.prune_low_magnitude(pruned, kp.ConstantSparsity(0.9, 0))
    with pytest.raises(ValueError, match="already pruned"):
        kp.prune_once(pruned, 0.9)
    mixed = keras.Sequential(
        [
            keras.Input((8,)),
            kp.prune_low_magnitude(
                L.Dense(4, name="d1"), kp.ConstantSparsity(0.25, 0)
            ),
            L.Dense(2, name="d2"),
        ]
    )
    with pytest.warns(UserWarning, match=r"\['d1'\].*keep their own"):
        again = kp.prune_low_magnitude(mixed, kp.ConstantSparsity(0.5, 0))
    schedules = [w.pruning_schedule.target_sparsity for w in again.layers]
    assert schedules == [0.25, 0.5]


# ------------------------------------------------------- subclassed models


class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1 = L.Dense(8, name="d1")
        self.blocks = [L.Dense(8, name="b0")]
        self.d2 = L.Dense(2, name="d2")

    def call(self, x, training=None):
        x = self.d1(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.d2(x, training=training)


def test_subclassed_strip_keeps_tracking_and_trains(tmp_path):
    x, y = data()
    model = Net()
    model(x[:1])
    names = [v.path for v in model.weights]
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    assert pruned is model
    assert len(pruning_wrappers(model)) == 3
    with pytest.raises(ValueError, match="already pruned"):
        kp.prune_low_magnitude(model)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=8, verbose=0)
    stripped = kp.strip_pruning(model)
    assert stripped is model and not stripped.compiled
    assert [type(l) for l in stripped.layers] == [L.Dense] * 3
    assert [v.path for v in stripped.weights] == names
    assert len(stripped.trainable_weights) == 6
    assert np.count_nonzero(to_np(stripped.d1.kernel)) == 32
    stripped.save_weights(tmp_path / "w.weights.h5")
    fresh = Net()
    fresh(x[:1])
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(to_np(fresh(x)), to_np(stripped(x)))
    # It trains: every weight moves.
    before = [to_np(v).copy() for v in stripped.weights]
    stripped.compile(keras.optimizers.SGD(0.1), "mse")
    stripped.fit(x, y, batch_size=8, verbose=0)
    for b, v in zip(before, stripped.weights):
        assert not np.array_equal(b, to_np(v)), v.path


# ----------------------------------------------------- Keras-Hub GPT-2 task


@pytest.fixture(scope="module")
def gpt2():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    task = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    tokens = {
        "token_ids": np.array([[1, 2, 3, 4, 5, 0, 0, 0]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 1, 0, 0, 0]], "bool"),
    }
    return task, tokens


def test_keras_hub_task_keeps_class_generates_and_reloads(gpt2, tmp_path):
    task, tokens = gpt2
    expected = to_np(task(tokens))
    dense_path = tmp_path / "dense.keras"
    kp.strip_pruning(task.__class__.from_config(task.get_config())).save(
        dense_path
    )
    pruned = kp.prune_once(task, 0.5, skip_unsupported=True)
    # Its class, with a config that also saves the wrappers (inplace.py).
    assert isinstance(pruned, type(task))
    assert type(pruned).__name__ == type(task).__name__
    assert pruned.preprocessor is None and not hasattr(pruned, "optimizer")
    wrapped = {w.layer.name for w in pruning_wrappers(pruned)}
    assert "transformer_layer_0" in wrapped
    # generate() calls the decoder blocks directly, through the wrappers.
    block = pruned.backbone.transformer_layers[0]
    assert isinstance(block, PruneLowMagnitude)
    masked = to_np(pruned(tokens))
    assert not np.allclose(masked, expected)
    pruned.compile(sampler="greedy")  # the task's own compile defaults
    assert pruned.optimizer is not None
    out = pruned.generate(tokens, max_length=8, stop_token_ids=None)
    assert out["token_ids"].shape == (1, 8)
    np.testing.assert_array_equal(out["token_ids"][:, :5], [[1, 2, 3, 4, 5]])
    stripped = kp.strip_pruning(pruned)
    assert type(stripped) is type(task) and not hasattr(stripped, "optimizer")
    assert not pruning_wrappers(stripped)
    assert len(stripped.weights) == len(task.weights)
    np.testing.assert_allclose(to_np(stripped(tokens)), masked, atol=1e-6)
    again = stripped.generate(tokens, max_length=8, stop_token_ids=None)
    np.testing.assert_array_equal(again["token_ids"], out["token_ids"])
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    assert os.path.getsize(path) < 1.02 * os.path.getsize(dense_path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(task)
    np.testing.assert_array_equal(
        to_np(loaded(tokens)), to_np(stripped(tokens))
    )
    # The original task is untouched.
    np.testing.assert_array_equal(to_np(task(tokens)), expected)
