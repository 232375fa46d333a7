"""`prune_low_magnitude`, the step, the masks and `strip_pruning` under `fit`.

Every test runs on the backend of the process (`KERAS_BACKEND`). Models are
tiny so that the torch run stays fast; all assertions are exact.
"""

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.core import schedules as kp_schedules
from keras_prune.integration.wrapper import PruneLowMagnitude

from conftest import BACKEND
from conftest import assert_same_outputs
from conftest import to_np

# ---------------------------------------------------------------- helpers


def data(n=16, d_in=8, d_out=2, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d_in).astype("float32")
    y = rng.randn(n, d_out).astype("float32")
    return x, y


def mlp(name="mlp"):
    return keras.Sequential(
        [
            keras.Input((8,)),
            L.Dense(4, name="d1"),
            L.Dense(3, name="d2"),
            L.Dense(2, name="d3"),
        ],
        name=name,
    )


def wrappers(model):
    return kp.integration.strip.pruning_wrappers(model)


def wrapper_of(model, name):
    """The wrapper around the layer called `name`."""
    for w in wrappers(model):
        if w.layer.name == name:
            return w
    raise AssertionError(f"no wrapper around {name!r}")


def kept(mask):
    return int(np.count_nonzero(to_np(mask)))


def expected_kept(n, sparsity):
    return int(to_np(kp.kept_count(n, sparsity)))


def fit(model, x, y, batch_size=8, epochs=1, **kwargs):
    return model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        **kwargs,
    )


def is_stock(layer):
    return type(layer).__module__.startswith("keras.")


# ------------------------------------------------------ what gets pruned


def test_single_layer_in_sequential_add():
    model = keras.Sequential([keras.Input((8,))])
    wrapper = kp.prune_low_magnitude(
        L.Dense(4, name="d"), kp.ConstantSparsity(0.5, 0)
    )
    assert isinstance(wrapper, PruneLowMagnitude)
    assert wrapper.name == "prune_low_magnitude_d"
    model.add(wrapper)
    model.add(L.Dense(2))
    model.compile("sgd", "mse")
    x, y = data()
    fit(model, x, y, batch_size=16)
    assert kp.pruning_step(model) == 1
    assert kept(wrapper.masks[0]) == 16


def test_list_of_layers():
    dense, drop, bn = L.Dense(4), L.Dropout(0.5), L.BatchNormalization()
    out = kp.prune_low_magnitude([dense, drop, bn])
    assert isinstance(out, list) and len(out) == 3
    assert isinstance(out[0], PruneLowMagnitude) and out[0].layer is dense
    assert out[1] is drop
    assert out[2] is bn


def test_sequential_is_copied_and_original_unchanged():
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    assert pruned is not model
    assert [type(l).__name__ for l in pruned.layers] == [
        "PruneLowMagnitude"
    ] * 3
    assert all(not isinstance(l, PruneLowMagnitude) for l in model.layers)
    x, y = data()
    # Before the first update: exactly the same predictions.
    assert_same_outputs(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    fit(pruned, x, y, epochs=2)
    assert kp.pruning_step(pruned) == 4
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The copy has its own variables.
    assert not any(
        np.array_equal(a, b) for a, b in zip(before, pruned.get_weights()[:1])
    )
    for w, n in zip(wrappers(pruned), (32, 12, 6)):
        assert kept(w.masks[0]) == expected_kept(n, 0.5)


def test_functional_model_is_copied():
    inp = keras.Input((8,))
    h = L.Dense(4, name="a")(inp)
    h = L.Dropout(0.0, name="drop")(h)
    h = L.BatchNormalization(name="bn")(h)
    out = L.Dense(2, name="b")(h)
    model = keras.Model(inp, out)
    before = [w.copy() for w in model.get_weights()]
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    # The input layer keeps its name (Keras' clone_model used to rename it).
    assert pruned.layers[0].name == model.layers[0].name
    names = [l.name for l in pruned.layers[1:]]
    assert names == [
        "prune_low_magnitude_a",
        "drop",
        "bn",
        "prune_low_magnitude_b",
    ]
    x, y = data()
    assert_same_outputs(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    fit(pruned, x, y)
    assert kp.pruning_step(pruned) == 2
    assert kept(wrapper_of(pruned, "a").masks[0]) == 16
    assert kept(wrapper_of(pruned, "b").masks[0]) == 4
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nested_model():
    inner = keras.Sequential(
        [keras.Input((4,)), L.Dense(4, name="in1")], name="inner"
    )
    inp = keras.Input((8,))
    out = L.Dense(2, name="out")(inner(L.Dense(4, name="d0")(inp)))
    model = keras.Model(inp, out)
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    assert isinstance(pruned.get_layer("inner"), keras.Sequential)
    assert isinstance(pruned.get_layer("inner").layers[0], PruneLowMagnitude)
    assert sorted(w.layer.name for w in wrappers(pruned)) == [
        "d0",
        "in1",
        "out",
    ]
    x, y = data()
    assert_same_outputs(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    fit(pruned, x, y)
    assert kp.pruning_step(pruned) == 2
    for name, n in (("d0", 32), ("in1", 16), ("out", 8)):
        w = wrapper_of(pruned, name)
        assert int(to_np(w.pruning_step)) == 2
        assert kept(w.masks[0]) == n // 2
    stripped = kp.strip_pruning(pruned)
    assert all(
        is_stock(l) for l in stripped._flatten_layers(include_self=False)
    )
    assert_same_outputs(
        stripped.predict(x, verbose=0), pruned.predict(x, verbose=0)
    )


class Block(L.Layer):
    """A custom layer holding a Dense."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = L.Dense(3, name="block_dense")

    def call(self, x):
        return keras.ops.relu(self.inner(x))


class Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.first = L.Dense(4, name="first")
        self.hidden = [L.Dense(4, name="h0"), L.Dense(4, name="h1")]
        self.block = Block(name="block")
        self.norm = L.LayerNormalization(name="norm")
        self.last = L.Dense(2, name="last")

    def call(self, x, training=None):
        # `training` must be passed on: on JAX, `fit` runs `Model.call`
        # directly and sublayers do not inherit it (as for Dropout).
        x = self.first(x, training=training)
        for layer in self.hidden:
            x = layer(x, training=training)
        x = self.norm(self.block(x, training=training))
        return self.last(x, training=training)


def test_subclassed_model_pruned_in_place():
    model = Net()
    x, y = data()
    model(x[:1])
    reference = to_np(model(x))
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    assert pruned is model
    assert isinstance(model.first, PruneLowMagnitude)
    assert all(isinstance(l, PruneLowMagnitude) for l in model.hidden)
    assert not isinstance(model.norm, PruneLowMagnitude)
    assert isinstance(model.last, PruneLowMagnitude)
    by_name = {v.path: v for w in wrappers(model) for v in w.pruned_weights}
    assert len(by_name) == 5  # first, h0, h1, block_dense, last
    assert any("block_dense" in p for p in by_name)
    assert_same_outputs(model(x), reference)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    fit(model, x, y)
    assert kp.pruning_step(model) == 2
    counts = sorted(
        (tuple(v.shape), kept(m))
        for w in wrappers(model)
        for v, m in zip(w.pruned_weights, w.masks)
    )
    assert counts == sorted(
        [((8, 4), 16), ((4, 4), 8), ((4, 4), 8), ((4, 3), 6), ((3, 2), 3)]
    )
    after = to_np(model.predict(x, verbose=0))
    stripped = kp.strip_pruning(model)
    assert stripped is model
    assert not wrappers(model)
    assert isinstance(model.first, L.Dense)
    assert_same_outputs(model.predict(x, verbose=0), after)
    assert np.count_nonzero(to_np(model.first.kernel)) == 16


def test_unbuilt_subclassed_model():
    with pytest.raises(ValueError, match="not built.*build"):
        kp.prune_low_magnitude(Net())


# ------------------------------------------------------- layer selection


@pytest.mark.parametrize(
    "layers, expected",
    [
        ("d2", ["d2"]),
        (["d1", "d3"], ["d1", "d3"]),
        ("d[12]", ["d1", "d2"]),
        (lambda layer: layer.units >= 3, ["d1", "d2"]),
    ],
    ids=["name", "names", "regex", "predicate"],
)
def test_layers_selection(layers, expected):
    pruned = kp.prune_low_magnitude(mlp(), layers=layers)
    assert [w.layer.name for w in wrappers(pruned)] == expected
    for layer in pruned.layers:
        if not isinstance(layer, PruneLowMagnitude):
            assert layer.name not in expected


def test_schedule_per_layer():
    pruned = kp.prune_low_magnitude(
        mlp(),
        pruning_schedule={
            "d1": kp.ConstantSparsity(0.75, 0),
            "d[23]": kp.ConstantSparsity(0.5, 1, frequency=1),
        },
    )
    assert wrapper_of(pruned, "d1").pruning_schedule.target_sparsity == 0.75
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data()
    fit(pruned, x, y, batch_size=16)  # step 0 only
    assert kept(wrapper_of(pruned, "d1").masks[0]) == 8
    assert kept(wrapper_of(pruned, "d2").masks[0]) == 12
    assert kept(wrapper_of(pruned, "d3").masks[0]) == 6
    fit(pruned, x, y, batch_size=16)  # step 1
    assert kept(wrapper_of(pruned, "d1").masks[0]) == 8
    assert kept(wrapper_of(pruned, "d2").masks[0]) == 6
    assert kept(wrapper_of(pruned, "d3").masks[0]) == 3
    # Layers no key matches are not pruned.
    partial = kp.prune_low_magnitude(
        mlp(), pruning_schedule={"d2": kp.ConstantSparsity(0.5, 0)}
    )
    assert [w.layer.name for w in wrappers(partial)] == ["d2"]


# ------------------------------------------------------------ the step


def test_first_batch_is_step_zero():
    pruned = kp.prune_low_magnitude(mlp(), kp.ConstantSparsity(0.5, 0))
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    assert kp.pruning_step(pruned) == 0
    x, y = data()
    fit(pruned, x[:4], y[:4], batch_size=4)
    assert kp.pruning_step(pruned) == 1
    for w, n in zip(wrappers(pruned), (32, 12, 6)):
        assert kept(w.masks[0]) == expected_kept(n, 0.5)
    fit(pruned, x, y, batch_size=4, epochs=2)  # 8 more batches
    assert kp.pruning_step(pruned) == 9
    assert all(int(to_np(w.pruning_step)) == 9 for w in wrappers(pruned))


def test_shared_layer_advances_once_per_batch():
    shared = L.Dense(8, name="shared")
    block = keras.Sequential(
        [keras.Input((8,)), L.Dense(8, name="in_block")], name="block"
    )
    inp = keras.Input((8,))
    h = block(block(shared(shared(inp))))
    out = L.Dense(2, name="head")(h)
    model = keras.Model(inp, out)
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0, frequency=1)
    )
    assert len(wrappers(pruned)) == 3
    assert int(to_np(wrapper_of(pruned, "in_block").pruning_step)) == 0
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data()
    fit(pruned, x, y, batch_size=4)
    assert int(to_np(wrapper_of(pruned, "shared").pruning_step)) == 4
    assert int(to_np(wrapper_of(pruned, "in_block").pruning_step)) == 4
    assert int(to_np(wrapper_of(pruned, "head").pruning_step)) == 4
    assert kept(wrapper_of(pruned, "shared").masks[0]) == 32


def test_evaluate_and_predict_do_not_move_step_or_masks():
    pruned = kp.prune_low_magnitude(
        mlp(), kp.PolynomialDecay(0.2, 0.8, 0, 10, frequency=1)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data()
    fit(pruned, x, y, batch_size=8)
    masks = [to_np(w.masks[0]) for w in wrappers(pruned)]
    pruned.evaluate(x, y, batch_size=4, verbose=0)
    pruned.predict(x, batch_size=4, verbose=0)
    pruned(x)
    pruned(x, training=False)
    assert kp.pruning_step(pruned) == 2
    for w, m in zip(wrappers(pruned), masks):
        np.testing.assert_array_equal(to_np(w.masks[0]), m)


def run_steps_per_execution(spe):
    keras.utils.set_random_seed(0)
    pruned = kp.prune_low_magnitude(
        mlp(), kp.PolynomialDecay(0.1, 0.7, 0, 6, power=1, frequency=1)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse", steps_per_execution=spe)
    x, y = data(n=32)
    fit(pruned, x, y, batch_size=4)
    return pruned


@pytest.mark.skipif(
    BACKEND == "torch", reason="Keras: steps_per_execution must be 1 on torch"
)
def test_steps_per_execution():
    a = run_steps_per_execution(4)
    b = run_steps_per_execution(1)
    assert kp.pruning_step(a) == kp.pruning_step(b) == 8
    for wa, wb, n in zip(wrappers(a), wrappers(b), (32, 12, 6)):
        np.testing.assert_array_equal(to_np(wa.masks[0]), to_np(wb.masks[0]))
        assert kept(wa.masks[0]) == expected_kept(n, 0.7)
    for va, vb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(va, vb, rtol=1e-6, atol=1e-7)


def test_torch_refuses_steps_per_execution():
    if BACKEND != "torch":
        pytest.skip("torch only")
    pruned = kp.prune_low_magnitude(mlp())
    pruned.compile("sgd", "mse", steps_per_execution=4)
    x, y = data()
    with pytest.raises(ValueError, match="steps_per_execution"):
        fit(pruned, x, y)


# -------------------------------------------------------------- masks


def schedule_kept(schedule, n, batches):
    """Expected kept count after each batch: batch b sees step b - 1."""
    out, current = [], n
    for step in range(batches):
        should, sparsity = kp_schedules.evaluate(schedule, step)
        if should:
            current = expected_kept(n, sparsity)
        out.append(current)
    return out


def test_polynomial_decay_masks_at_schedule_steps():
    schedule = kp.PolynomialDecay(0.2, 0.6, 1, 4, 3, 1)
    expected = schedule_kept(schedule, 32, 6)
    # tfmot §8 item 25, shifted by one (our first batch is step 0).
    assert expected == [32, 26, 17, 13, 13, 13]
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="d")])
    kernel = to_np(model.layers[0].kernel)
    pruned = kp.prune_low_magnitude(model, schedule)
    # lr=0: the kernel never changes, so every mask is a pure top-k.
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    x, _ = data()
    y = np.zeros((16, 4), "float32")
    w = pruned.layers[0]
    for b in range(6):
        fit(pruned, x[:4], y[:4], batch_size=4)
        assert kp.pruning_step(pruned) == b + 1
        assert kept(w.masks[0]) == expected[b]
        should, sparsity = kp_schedules.evaluate(schedule, b)
        if b == 0:
            assert not np.any(~to_np(w.masks[0]))
        if should:
            np.testing.assert_array_equal(
                to_np(w.masks[0]), kp.magnitude_mask(kernel, float(sparsity))
            )
            threshold = np.sort(np.abs(kernel).ravel())[::-1][expected[b] - 1]
            assert float(to_np(w.thresholds[0])) == threshold
    # Training with a real learning rate gives the same counts.
    keras.utils.set_random_seed(1)
    pruned = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((8,)), L.Dense(4)]), schedule
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data(n=24, d_out=4)
    counts = []
    for _ in range(6):
        fit(pruned, x[:4], y[:4], batch_size=4)
        counts.append(kept(pruned.layers[0].masks[0]))
    assert counts == expected


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_pruned_weights_frozen_and_forward_masked(momentum):
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="d")])
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    pruned.compile(keras.optimizers.SGD(0.1, momentum=momentum), "mse")
    w = pruned.layers[0]
    k0 = to_np(w.layer.kernel).copy()
    x, y = data(d_out=4)
    fit(pruned, x, y, batch_size=4)
    mask = to_np(w.masks[0])
    k1 = to_np(w.layer.kernel)
    assert np.count_nonzero(mask) == 16
    if BACKEND == "torch":
        # torch's `fit` zeroes pruned weights in place before each step and
        # they get their true gradient (`stored_sparse`; bit-identical to
        # masking in tests/test_stored_sparse.py): not frozen, and zero in
        # the forward pass.
        assert np.all(k1[~mask] != k0[~mask])
    else:
        np.testing.assert_array_equal(k1[~mask], k0[~mask])
    assert np.all(k1[mask] != k0[mask])
    # Forward pass == a fresh Dense loaded with kernel * mask.
    ref = L.Dense(4)
    ref.build((None, 8))
    ref.set_weights([k1 * mask, to_np(w.layer.bias)])
    assert_same_outputs(pruned.predict(x, verbose=0), ref(x))
    # Masked entries hold stale values until stripped; strip zeroes them.
    stripped = kp.strip_pruning(pruned)
    assert stripped.layers[0] is w.layer
    np.testing.assert_array_equal(to_np(stripped.layers[0].kernel), k1 * mask)


def test_strip_pruning():
    pruned = kp.prune_low_magnitude(mlp(), kp.ConstantSparsity(0.5, 0))
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data()
    fit(pruned, x, y)
    expected = pruned.predict(x, verbose=0)
    stripped = kp.strip_pruning(pruned)
    assert [type(l) for l in stripped.layers] == [L.Dense] * 3
    assert all(
        is_stock(l) for l in stripped._flatten_layers(include_self=False)
    )
    assert [l.name for l in stripped.layers] == ["d1", "d2", "d3"]
    for layer, n in zip(stripped.layers, (32, 12, 6)):
        kernel = to_np(layer.kernel)
        assert kernel.size - np.count_nonzero(kernel) == n - n // 2
    assert_same_outputs(stripped.predict(x, verbose=0), expected)
    assert len(stripped.weights) == 6
    with pytest.raises(ValueError, match="keras.Model"):
        kp.strip_pruning(L.Dense(2))


# --------------------------------------------------------------- errors


def test_tensor_instead_of_layer():
    tensor = keras.ops.ones((2, 2))
    with pytest.raises(TypeError, match=type(tensor).__name__):
        kp.prune_low_magnitude(tensor)
    with pytest.raises(TypeError, match="Layer"):
        PruneLowMagnitude(tensor)


@pytest.mark.parametrize("bad", [0.5, [0.5, 0], object()])
def test_schedule_of_wrong_type(bad):
    with pytest.raises(TypeError, match="pruning_schedule"):
        kp.prune_low_magnitude(L.Dense(2), pruning_schedule=bad)
    with pytest.raises(TypeError, match="pruning_schedule"):
        kp.prune_low_magnitude(mlp(), pruning_schedule=bad)


class Scale(L.Layer):
    """A layer with a weight keras-prune does not know (of rank 2: weights
    of rank < 2 never block pruning, issue 17 item 1)."""

    def build(self, input_shape):
        d = input_shape[-1]
        self.scale = self.add_weight(shape=(d, d), name="scale")

    def call(self, x):
        return keras.ops.matmul(x, self.scale)


def test_unsupported_layer():
    model = keras.Sequential(
        [keras.Input((8,)), L.Dense(4, name="d"), Scale(name="my_scale")]
    )
    with pytest.raises(kp.UnsupportedLayerError, match="'my_scale'"):
        kp.prune_low_magnitude(model)
    built = Scale(name="alone")
    built.build((None, 3))
    with pytest.raises(kp.UnsupportedLayerError, match="'alone'"):
        kp.prune_low_magnitude(built)
    # Unbuilt: the weights are unknown until the wrapper is built.
    with pytest.raises(kp.UnsupportedLayerError, match="'later'"):
        keras.Sequential(
            [keras.Input((3,)), kp.prune_low_magnitude(Scale(name="later"))]
        )
    pruned = kp.prune_low_magnitude(model, skip_unsupported=True)
    assert [w.layer.name for w in wrappers(pruned)] == ["d"]
    assert isinstance(pruned.layers[1], Scale)
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, _ = data()
    fit(pruned, x, np.zeros((16, 4), "float32"))
    assert np.count_nonzero(to_np(pruned.layers[1].scale)) == 16
    assert kept(pruned.layers[0].masks[0]) == 16


def test_nan_weights_at_mask_update():
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="nanny")])
    kernel = to_np(model.layers[0].kernel).copy()
    kernel[3, 1] = np.nan
    model.layers[0].kernel.assign(kernel)
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data(d_out=4)
    # torch runs eagerly: the forward pass raises. Compiled steps (JAX, TF)
    # cannot raise; UpdatePruningStep raises right after the step.
    callbacks = [] if BACKEND == "torch" else [kp.UpdatePruningStep()]
    with pytest.raises(FloatingPointError, match="'nanny'"):
        fit(pruned, x, y, callbacks=callbacks)
    # The mask was left unchanged.
    assert kept(pruned.layers[0].masks[0]) == 32
    if BACKEND != "torch":
        # Without the callback, compiled fit trains on; strip reports it.
        model.layers[0].kernel.assign(kernel)
        again = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
        again.compile(keras.optimizers.SGD(0.1), "mse")
        fit(again, x, y, batch_size=16)
        assert kept(again.layers[0].masks[0]) == 32
        with pytest.raises(FloatingPointError, match="'nanny'"):
            kp.strip_pruning(again)


def test_update_pruning_step_logs_sparsity():
    pruned = kp.prune_low_magnitude(
        mlp(), kp.ConstantSparsity(0.5, 1, frequency=2)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data()
    history = fit(
        pruned,
        x,
        y,
        batch_size=16,
        epochs=3,
        callbacks=[kp.UpdatePruningStep()],
    )
    # Step 0: dense; step 1: pruned to 50% of (32 + 12 + 6) weights.
    total = 50
    zeros = (32 - 16) + (12 - 6) + (6 - 3)
    assert history.history["sparsity"] == [0.0, zeros / total, zeros / total]
    assert kp.model_sparsity(pruned) == zeros / total


# ---------------------------------------------------- custom schedules


class TfMathSchedule(kp.PruningSchedule):
    """A schedule written for tfmot: tf.math on the step."""

    def __init__(self, target, every):
        self.target = target
        self.every = every

    def __call__(self, step):
        import tensorflow as tf

        step = tf.cast(step, tf.int64)
        should_prune = tf.math.equal(tf.math.floormod(step, self.every), 0)
        sparsity = tf.math.minimum(
            tf.constant(self.target, tf.float32),
            tf.cast(step + 1, tf.float32) * 0.25,
        )
        return should_prune, sparsity

    def get_config(self):
        return {
            "class_name": "TfMathSchedule",
            "config": {"target": self.target, "every": self.every},
        }


class PythonSchedule(kp.PruningSchedule):
    """Plain Python: prunes at steps 0 and 2, to 25% then 50%."""

    def __call__(self, step):
        step = int(step)
        return step in (0, 2), 0.25 if step < 2 else 0.5

    def get_config(self):
        return {"class_name": "PythonSchedule", "config": {}}


@pytest.mark.parametrize(
    "schedule, expected",
    [
        # steps 0..3: prune at 0 (0.25) and 2 (min(0.6, 0.75) = 0.6)
        (TfMathSchedule(0.6, 2), [24, 24, 13, 13]),
        (PythonSchedule(), [24, 24, 16, 16]),
    ],
    ids=["tf_math", "python"],
)
def test_custom_schedule_under_fit(schedule, expected):
    assert [n for n in schedule_kept(schedule, 32, 4)] == expected
    pruned = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((8,)), L.Dense(4)]), schedule
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = data(d_out=4)
    counts = []
    for _ in range(4):
        fit(pruned, x[:4], y[:4], batch_size=4)
        counts.append(kept(pruned.layers[0].masks[0]))
    assert counts == expected
    assert kp.pruning_step(pruned) == 4


# ----------------------------------------------------- mixed precision


def _mixed_policies():
    policies = ["mixed_float16", "mixed_bfloat16"]
    return policies


@pytest.mark.parametrize("policy", _mixed_policies())
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="d")])
    # Magnitudes 1 + i * 2^-20: all equal in float16 / bfloat16, distinct
    # in float32. A float32 top-k keeps the 16 largest i.
    rng = np.random.RandomState(0)
    order = rng.permutation(32)
    signs = np.where(rng.rand(32) < 0.5, -1.0, 1.0)
    kernel = (signs * (1.0 + order * 2.0**-20)).astype("float32")
    kernel = kernel.reshape(8, 4)
    assert len(np.unique(kernel.astype("float16"))) <= 2
    model.layers[0].kernel.assign(kernel)
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    w = pruned.layers[0]
    assert w.layer.kernel.dtype == "float32"
    assert w.masks[0].dtype == "bool"
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    x, y = data(d_out=4)
    fit(pruned, x, y, batch_size=16)
    mask = to_np(w.masks[0])
    np.testing.assert_array_equal(mask, (order >= 16).reshape(8, 4))
    np.testing.assert_array_equal(mask, kp.magnitude_mask(kernel, 0.5))
    out = pruned(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert pruned.predict(x, verbose=0).shape == (16, 4)


def test_functional_model_calling_keras_ops():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="d")(inputs)
    model = keras.Model(inputs, keras.ops.add(hidden, 1.0))
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    wrapped = [
        layer.layer.name
        for layer in pruned.layers
        if isinstance(layer, kp.PruneLowMagnitude)
    ]
    assert wrapped == ["d"]
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x)),
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-6,
    )
