"""`UpdatePruningStep` runs mask updates from the host (`host_updates`).

With the callback, `fit` trains without any mask work in its step; the masks
must be exactly those of in-step updates (the same model without the
callback), pruned weights must be zero after every step, and leaving `fit`
must restore in-step updates for everything else.
"""

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.core import masks
from keras_prune.integration import host_updates

from conftest import BACKEND
from conftest import to_np

SCHEDULE = dict(
    initial_sparsity=0.0,
    final_sparsity=0.8,
    begin_step=0,
    end_step=9,
    frequency=3,
)


def data(n=40, d_in=8, d_out=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)).astype("float32")
    y = rng.normal(size=(n, d_out)).astype("float32")
    return x, y


def mlp(d_in=8):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((d_in,)),
            L.Dense(16, activation="relu", name="a"),
            L.Dense(4, name="b"),
        ]
    )


def lstm_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((3, 8)), L.LSTM(6, name="rnn"), L.Dense(4, name="b")]
    )


def train(model, x, y, callback, epochs=3, **prune_kwargs):
    pruned = kp.prune_low_magnitude(
        model, kp.PolynomialDecay(**SCHEDULE), **prune_kwargs
    )
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    callbacks = [kp.UpdatePruningStep()] if callback else []
    keras.utils.set_random_seed(1)
    pruned.fit(
        x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks
    )
    return pruned


def state(model):
    out = []
    for w in kp.integration.strip.pruning_wrappers(model):
        out.append(
            (
                [to_np(m) for m in w.masks],
                [to_np(t) for t in w.thresholds],
                int(to_np(w.pruning_step)),
            )
        )
    return out


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (mlp, {}),
        (mlp, {"allocation": "global"}),
        (mlp, {"sparsity_m_by_n": (2, 4)}),
        (mlp, {"block_size": (2, 2)}),
        (lstm_model, {}),
    ],
    ids=["layer", "global", "2:4", "block", "lstm"],
)
def test_host_updates_give_the_masks_of_in_step_updates(make, kwargs):
    x, y = data()
    if make is lstm_model:
        x = np.random.default_rng(0).normal(size=(40, 3, 8)).astype("float32")
    in_step = train(make(), x, y, callback=False, **kwargs)
    host = train(make(), x, y, callback=True, **kwargs)
    for (m1, t1, s1), (m2, t2, s2) in zip(state(in_step), state(host)):
        assert s1 == s2 == 15
        for a, b in zip(m1, m2):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(t1, t2):
            assert a.tobytes() == b.tobytes()
    # Pruned weights hold exact zeros; predictions agree with in-step.
    for w in kp.integration.strip.pruning_wrappers(host):
        for weight, mask in zip(w.pruned_weights, w.masks):
            assert np.count_nonzero(to_np(weight)[~to_np(mask)]) == 0
    np.testing.assert_allclose(
        to_np(host.predict(x, verbose=0)),
        to_np(in_step.predict(x, verbose=0)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_pruned_weights_are_zero_after_every_step():
    x, y = data()
    pruned = kp.prune_low_magnitude(mlp(), kp.PolynomialDecay(**SCHEDULE))
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    seen = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            model = self.model  # syncs JAX state
            # Host mode: no mask work in the step (the wrappers skip it only
            # while the step runs).
            assert host_updates.active(model) is not None
            for w in kp.integration.strip.pruning_wrappers(model):
                assert not w._host_updates
                weight, mask = to_np(w.pruned_weights[0]), to_np(w.masks[0])
                seen.append(
                    (
                        # Not even -0.0: pruned weights are +0.0.
                        int(np.count_nonzero(np.signbit(weight[~mask])))
                        + int(np.count_nonzero(weight[~mask])),
                        int(mask.sum()),
                    )
                )

    pruned.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[kp.UpdatePruningStep(), Check()],
    )
    assert len(seen) == 2 * 5 * 2
    assert all(leaked == 0 for leaked, _ in seen)
    # Kept counts of layer "a" (128 weights) after steps 0..9: updates at
    # steps 0, 3, 6, 9 to sparsities 0, 0.8*(1-(2/3)^3), 0.8*(1-(1/3)^3), 0.8.
    kept_a = [k for i, (_, k) in enumerate(seen) if i % 2 == 0]
    expected = [
        int(kp.kept_count(128, kp.PolynomialDecay(**SCHEDULE)(s)[1]))
        for s in (0, 0, 0, 3, 3, 3, 6, 6, 6, 9)
    ]
    assert kept_a == expected
    assert expected[-1] == 26 and expected[0] == 128


def test_fit_restores_in_step_updates_and_reuses_its_step_function():
    x, y = data()
    pruned = train(mlp(), x, y, callback=True, epochs=1)
    wrappers = kp.integration.strip.pruning_wrappers(pruned)
    assert not any(w._host_updates for w in wrappers)
    assert "train_step" not in pruned.__dict__
    in_step_function = pruned.train_function
    cached = pruned._keras_prune_host_train[1]
    pruned.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    # The second fit reused the compiled host-mode step.
    assert pruned._keras_prune_host_train[1] is cached
    assert pruned.train_function is in_step_function
    # Without the callback the step updates masks itself again.
    before = int(to_np(wrappers[0].masks[0]).sum())
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert int(to_np(wrappers[0].pruning_step)) == 15
    # Step 12 was an update to the final 0.8 (at 15 steps it already was).
    assert int(to_np(wrappers[0].masks[0]).sum()) == before == 26


def test_predict_after_fit_masks_weights_the_user_changes():
    x, y = data()
    pruned = train(mlp(), x, y, callback=True)
    wrapper = kp.integration.strip.pruning_wrappers(pruned)[0]
    mask = to_np(wrapper.masks[0])
    dense = np.ones_like(to_np(wrapper.pruned_weights[0]))
    wrapper.pruned_weights[0].assign(dense)
    out = to_np(pruned.predict(x, verbose=0))
    h = np.maximum(x @ (dense * mask) + to_np(wrapper.layer.bias), 0)
    b = pruned.layers[1]
    expected = h @ to_np(b.layer.kernel * b.masks[0]) + to_np(b.layer.bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_nan_at_a_host_update_raises_and_restores():
    x, y = data()
    model = mlp()
    kernel = to_np(model.layers[0].kernel).copy()
    kernel[3, 1] = np.nan
    model.layers[0].kernel.assign(kernel)
    pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    with pytest.raises(FloatingPointError, match="'a'"):
        pruned.fit(
            x,
            y,
            batch_size=8,
            epochs=1,
            verbose=0,
            callbacks=[kp.UpdatePruningStep()],
        )
    wrapper = kp.integration.strip.pruning_wrappers(pruned)[0]
    assert int(to_np(wrapper.masks[0]).sum()) == 128  # unchanged
    assert not wrapper._host_updates
    assert "train_step" not in pruned.__dict__


@pytest.mark.skipif(BACKEND == "torch", reason="torch: steps_per_execution=1")
def test_steps_per_execution_keeps_in_step_updates():
    x, y = data()
    pruned = kp.prune_low_magnitude(mlp(), kp.PolynomialDecay(**SCHEDULE))
    pruned.compile(keras.optimizers.Adam(0.01), "mse", steps_per_execution=2)
    modes = []

    class Mode(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            modes.append(host_updates.active(self._model) is not None)

    keras.utils.set_random_seed(1)  # the shuffling of `train`
    pruned.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[kp.UpdatePruningStep(), Mode()],
    )
    assert modes and not any(modes)
    reference = train(mlp(), x, y, callback=False)
    for (m1, _, s1), (m2, _, s2) in zip(state(pruned), state(reference)):
        assert s1 == s2 == 15
        for a, b in zip(m1, m2):
            np.testing.assert_array_equal(a, b)


def test_resume_with_host_updates_matches_an_uninterrupted_run(tmp_path):
    x, y = data()
    whole = train(mlp(), x, y, callback=True, epochs=3)
    first = train(mlp(), x, y, callback=True, epochs=1)
    path = tmp_path / "m.keras"
    first.save(path)
    resumed = keras.saving.load_model(path)
    keras.utils.set_random_seed(2)
    resumed.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    for (m1, _, s1), (m2, _, s2) in zip(state(whole), state(resumed)):
        assert s1 == s2 == 15
        for a, b in zip(m1, m2):
            assert int(a.sum()) == int(b.sum())  # same schedule, same counts


# ------------------------------------------------------- host_mask math


@pytest.mark.parametrize("kind", ["normal", "zeros", "integers", "tiny"])
def test_host_mask_is_bit_identical_to_the_compiled_math(kind):
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(1, 2000))
        w = rng.normal(size=n).astype("float32")
        if kind == "zeros":
            w[rng.random(n) < 0.6] = 0
        elif kind == "integers":
            w = rng.integers(-3, 4, n).astype("float32")
        elif kind == "tiny":
            w[: n // 3] = np.float32(1e-45)  # subnormal
            w[n // 3 : n // 2] = -0.0
        sparsity = float(rng.choice([0.0, 1.0, 0.5, 0.9, rng.random()]))
        mask, threshold, n_bad = masks.host_mask(w.reshape(-1, 1), sparsity)
        expected, expected_t, _ = masks.mask_from_bits(
            masks.magnitude_bits(w), sparsity, (n, 1)
        )
        assert n_bad == 0
        np.testing.assert_array_equal(mask, to_np(expected))
        assert threshold.tobytes() == np.float32(to_np(expected_t)).tobytes()
        assert int(mask.sum()) == int(kp.kept_count(n, sparsity))


def test_host_mask_counts_nonfinite_values():
    w = np.array([1.0, np.nan, np.inf, -np.inf, 2.0], "float32")
    mask, threshold, n_bad = masks.host_mask(w, 0.5)
    assert (mask, threshold, n_bad) == (None, None, 3)


def test_a_fit_interrupted_by_another_callback_is_cleaned_up_by_the_next():
    x, y = data()
    pruned = kp.prune_low_magnitude(mlp(), kp.PolynomialDecay(**SCHEDULE))
    pruned.compile(keras.optimizers.Adam(0.01), "mse")

    class Boom(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pruned.fit(
            x,
            y,
            batch_size=8,
            epochs=1,
            verbose=0,
            callbacks=[kp.UpdatePruningStep(), Boom()],
        )
    pruned.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    wrappers = kp.integration.strip.pruning_wrappers(pruned)
    assert not any(w._host_updates for w in wrappers)
    assert "train_step" not in pruned.__dict__
    # 2 steps, then 5: updates at steps 0, 3 and 6 (sparsity 0.8 * 26/27).
    assert int(to_np(wrappers[0].pruning_step)) == 7
    s = kp.PolynomialDecay(**SCHEDULE)(6)[1]
    assert int(to_np(wrappers[0].masks[0]).sum()) == int(kp.kept_count(128, s))


@pytest.mark.parametrize(
    "schedule",
    [
        kp.ConstantSparsity(0.5, 10, 300, frequency=7),
        kp.PolynomialDecay(0.1, 0.9, 5, 300, power=3, frequency=7),
        kp.PolynomialDecay(0.0, 0.9, 5, 5),
        kp.ExponentialDecay(0.0, 0.8, 0, 200, frequency=3),
        kp.CosineDecay(0.2, 0.8, 10, 250, frequency=4),
        kp.FunctionSchedule(lambda step: min(step, 100) / 200, 0, 300, 9),
    ],
    ids=["constant", "poly", "poly-begin-eq-end", "exp", "cos", "function"],
)
def test_planned_schedule_values_equal_step_by_step_values(schedule):
    planned = kp.core.schedules.evaluate_range(schedule, 0, 400)
    for step, (should_prune, sparsity) in enumerate(planned):
        expected = kp.core.schedules.evaluate(schedule, step)
        assert should_prune is expected[0]
        assert np.float32(sparsity).tobytes() == expected[1].tobytes()
    assert any(s for s, _ in planned)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_host_updates_under_mixed_precision(policy):
    if BACKEND == "torch" and policy == "mixed_float16":
        pytest.skip("torch CPU has no float16 matmul")
    x, y = data()
    keras.mixed_precision.set_global_policy(policy)
    host = train(mlp(), x, y, callback=True)
    for (_, _, s), w in zip(
        state(host), kp.integration.strip.pruning_wrappers(host)
    ):
        assert s == 15
        assert w.pruned_weights[0].dtype == "float32"
        mask = to_np(w.masks[0])
        assert int(mask.sum()) == int(kp.kept_count(mask.size, 0.8))
        assert np.count_nonzero(to_np(w.pruned_weights[0])[~mask]) == 0


def kept_weights(model):
    out = []
    for w in kp.integration.strip.pruning_wrappers(model):
        for weight, mask in zip(w.pruned_weights, w.masks):
            out.append(to_np(weight)[to_np(mask)])
    return out


def fit_and_watch(optimizer, callback):
    """Trains `mlp` 2 epochs; returns (model, host mode seen in each step)."""
    x, y = data()
    pruned = kp.prune_low_magnitude(mlp(), kp.PolynomialDecay(**SCHEDULE))
    pruned.compile(optimizer, "mse")
    modes = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            modes.append(host_updates.active(self.model) is not None)

    callbacks = [kp.UpdatePruningStep(), Watch()] if callback else [Watch()]
    keras.utils.set_random_seed(1)
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    return pruned, modes


@pytest.mark.parametrize(
    "make, host",
    [
        (lambda: keras.optimizers.Adam(0.05), True),
        (lambda: keras.optimizers.SGD(0.05, momentum=0.9), True),
        (lambda: keras.optimizers.RMSprop(0.01, clipvalue=0.1), True),
        (lambda: keras.optimizers.Adam(0.05, global_clipnorm=0.05), False),
        (lambda: keras.optimizers.Adam(0.05, clipnorm=0.05), False),
        (lambda: keras.optimizers.Lamb(0.05), False),
    ],
    ids=[
        "adam",
        "sgd",
        "rmsprop-clipvalue",
        "global_clipnorm",
        "clipnorm",
        "lamb",
    ],
)
def test_only_elementwise_optimizers_train_with_host_updates(make, host):
    """Host mode lets pruned weights get gradients (discarded by the
    zeroing); with norm clipping or Lamb those would change the kept
    weights' updates, so in-step updates stay: either way the kept weights
    are bit-identical to in-step training."""
    in_step, modes = fit_and_watch(make(), callback=False)
    assert not any(modes)
    model, modes = fit_and_watch(make(), callback=True)
    assert modes == [host] * 10
    for a, b in zip(kept_weights(in_step), kept_weights(model)):
        assert a.shape == b.shape and a.size > 0
        np.testing.assert_array_equal(a, b)
    assert state(model)[0][2] == state(in_step)[0][2] == 10


def test_loss_scale_optimizer_is_judged_by_its_inner_optimizer():
    lso = keras.optimizers.LossScaleOptimizer
    assert host_updates.elementwise_optimizer(lso(keras.optimizers.Adam()))
    assert not host_updates.elementwise_optimizer(
        lso(keras.optimizers.Adam(global_clipnorm=1.0))
    )
    assert not host_updates.elementwise_optimizer(None)


def test_activity_regularizer_of_a_pruned_layer_counts_in_both_modes():
    keras.utils.set_random_seed(0)
    dense = keras.Sequential(
        [
            keras.Input((8,)),
            L.Dense(16, activity_regularizer=keras.regularizers.L2(0.01)),
            L.Dense(4, activity_regularizer=keras.regularizers.L1(0.1)),
        ]
    )
    x, y = data()
    expected = [float(to_np(v)) for v in (dense(x[:8]), dense.losses)[1]]
    pruned = kp.prune_low_magnitude(dense, kp.ConstantSparsity(0.5, 100))
    pruned(x[:8])
    got = [float(to_np(v)) for v in pruned.losses]
    assert len(expected) == 2 and got == expected
    # Under fit, in both modes, the loss includes it: with a zero target,
    # an MSE of 0 leaves only the regularization.
    for callbacks in ([], [kp.UpdatePruningStep()]):
        model = kp.prune_low_magnitude(
            keras.models.clone_model(dense), kp.ConstantSparsity(0.5, 100)
        )
        model.set_weights(pruned.get_weights())
        model.compile(keras.optimizers.SGD(0.0), "mse")
        history = model.fit(
            x[:8],
            model.predict(x[:8], verbose=0),
            batch_size=8,
            epochs=1,
            verbose=0,
            callbacks=callbacks,
        )
        np.testing.assert_allclose(
            history.history["loss"][0], sum(expected), rtol=1e-5
        )
    stripped = kp.strip_pruning(pruned)
    stripped(x[:8])
    assert [float(to_np(v)) for v in stripped.losses] == expected
