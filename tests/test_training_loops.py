"""Custom training loops: one recipe per backend.

See docs/custom-training-loops.md.

Each recipe trains a pruned model for N batches without `fit`; afterwards the
pruning step is N and the masks are exactly those `fit` gives on the same
model, data and optimizer. The documentation shows these functions verbatim
(checked by `test_docs_show_the_tested_recipes`).
"""

import inspect
import pathlib

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp

from conftest import BACKEND
from conftest import to_np

DOC = pathlib.Path(__file__).parent.parent / "docs" / "custom-training-loops.md"


# ---------------------------------------------------------------- recipes


def train_jax(model, optimizer, loss_fn, batches):
    import jax

    optimizer.build(model.trainable_variables)

    def compute_loss(trainable, non_trainable, x, y):
        # The masks and the pruning step are non-trainable variables: their
        # new values come back from stateless_call and must be kept.
        y_pred, non_trainable = model.stateless_call(
            trainable, non_trainable, x, training=True
        )
        return loss_fn(y, y_pred), non_trainable

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    @jax.jit
    def train_step(state, x, y):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, optimizer_vars = optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        return loss, (trainable, non_trainable, optimizer_vars)

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    for x, y in batches:
        loss, state = train_step(state, x, y)

    # Write the final state back into the model and the optimizer.
    trainable, non_trainable, optimizer_vars = state
    for variable, value in zip(model.trainable_variables, trainable):
        variable.assign(value)
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, optimizer_vars):
        variable.assign(value)


def train_tensorflow(model, optimizer, loss_fn, batches):
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)  # updates masks and step
            loss = loss_fn(y, y_pred)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    for x, y in batches:
        train_step(x, y)


def train_torch(model, optimizer, loss_fn, batches):
    import torch

    for x, y in batches:
        y_pred = model(x, training=True)  # updates masks and step
        loss = loss_fn(y, y_pred)
        model.zero_grad()
        loss.backward()
        trainable = model.trainable_variables
        grads = [v.value.grad for v in trainable]
        with torch.no_grad():
            optimizer.apply(grads, trainable)


RECIPES = {
    "jax": train_jax,
    "tensorflow": train_tensorflow,
    "torch": train_torch,
}


# ------------------------------------------------------------------ tests

N_BATCHES = 6
BATCH = 4


def pruned_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            L.Dense(6, name="d1"),
            L.BatchNormalization(name="bn"),
            L.Dense(2, name="d2"),
        ]
    )
    return kp.prune_low_magnitude(
        model, kp.PolynomialDecay(0.2, 0.7, 0, 4, power=1, frequency=1)
    )


def data():
    rng = np.random.RandomState(0)
    x = rng.randn(N_BATCHES * BATCH, 8).astype("float32")
    y = rng.randn(N_BATCHES * BATCH, 2).astype("float32")
    return x, y


def masks(model):
    return [
        to_np(m)
        for w in kp.integration.strip.pruning_wrappers(model)
        for m in w.masks
    ]


def test_custom_loop_matches_fit():
    x, y = data()
    reference = pruned_model()
    reference.compile(keras.optimizers.SGD(0.1), "mse")
    reference.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0)
    assert kp.pruning_step(reference) == N_BATCHES

    model = pruned_model()
    batches = [
        (
            keras.ops.convert_to_tensor(x[i : i + BATCH]),
            keras.ops.convert_to_tensor(y[i : i + BATCH]),
        )
        for i in range(0, len(x), BATCH)
    ]
    RECIPES[BACKEND](
        model,
        keras.optimizers.SGD(0.1),
        keras.losses.MeanSquaredError(),
        batches,
    )
    assert kp.pruning_step(model) == N_BATCHES
    for w in kp.integration.strip.pruning_wrappers(model):
        assert int(to_np(w.pruning_step)) == N_BATCHES
    got, expected = masks(model), masks(reference)
    assert [int(m.sum()) for m in got] == [
        int(to_np(kp.kept_count(m.size, 0.7))) for m in got
    ]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # BatchNormalization's statistics were threaded through the loop too.
    bn = model.get_layer("bn")
    np.testing.assert_allclose(
        to_np(bn.moving_mean),
        to_np(reference.get_layer("bn").moving_mean),
        rtol=1e-5,
        atol=1e-6,
    )
    # Compared as stripped (kept weights, exact zeros): on torch, `fit`
    # stores pruned weights as zeros between its optimizer updates
    # (`stored_sparse`), while this loop, whose model has no optimizer,
    # masks them in the forward pass and leaves them as they were.
    for a, b in zip(
        kp.strip_pruning(model).get_weights(),
        kp.strip_pruning(reference).get_weights(),
    ):
        if BACKEND == "tensorflow":
            # XLA fuses this tf.function and fit's step differently: the
            # BatchNormalization variance may differ in the last bit.
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(a, b)
    # The stripped model predicts what the pruned one does.
    expected_pred = to_np(model(x))
    stripped = kp.strip_pruning(model)
    np.testing.assert_array_equal(to_np(stripped(x)), expected_pred)


@pytest.mark.parametrize("callback", [False, True])
def test_run_eagerly_matches_compiled_fit(callback):
    # `run_eagerly=True` takes the eager branch of every mask update (a
    # layer's own weights: the NumPy select of `prune_once`); compiled
    # `fit` the in-step one (JAX, TensorFlow) or the host updates of
    # `UpdatePruningStep`. The masks must be the same bits, step by step.
    # Before, on JAX, an eager `fit` with the callback raised "never called
    # with training=True" at its first batch: host mode's constraint only
    # took the masks of a traced step.
    x, y = data()
    got = {}
    for eager in (False, True):
        model = pruned_model()
        model.compile(keras.optimizers.SGD(0.1), "mse", run_eagerly=eager)
        per_epoch = []
        for _ in range(2):
            model.fit(
                x,
                y,
                batch_size=BATCH,
                shuffle=False,
                verbose=0,
                callbacks=[kp.UpdatePruningStep()] if callback else [],
            )
            per_epoch.append(masks(model))
        assert kp.pruning_step(model) == 2 * N_BATCHES
        if callback:
            # Host mode keeps the stored pruned weights exactly zero
            # (ZeroPruned after each update), eagerly too.
            for w in kp.integration.strip.pruning_wrappers(model):
                for weight, mask in zip(w.pruned_weights, w.masks):
                    m, v = to_np(mask).astype(bool), to_np(weight)
                    assert not np.any(v[~m]), (w.name, eager)
                    assert np.count_nonzero(v) == int(m.sum()), w.name
        got[eager] = (per_epoch, model.get_weights())
    (compiled, w_compiled), (eager, w_eager) = got[False], got[True]
    kept = [int(to_np(kp.kept_count(m.size, 0.7))) for m in eager[-1]]
    assert [int(m.sum()) for m in eager[-1]] == kept
    for a_epoch, b_epoch in zip(eager, compiled):
        for a, b in zip(a_epoch, b_epoch):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(w_eager, w_compiled):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_docs_show_the_tested_recipes():
    if not DOC.exists():
        pytest.skip("docs not present")
    text = DOC.read_text()
    for recipe in RECIPES.values():
        assert inspect.getsource(recipe) in text, recipe.__name__
