"""Regression tests of the fourth hostile pass: the in-step host select
(`tf.numpy_function` / `jax.pure_callback`, `_backend.shared_step_function`)
and the host-driven updates of `UpdatePruningStep` around it.

Every test compares masks bit for bit with one reference fit (module
fixture): the in-step update of a plain `fit`, whose masks are the same on
every backend (the weights are set from NumPy, so no backend RNG enters).
Models are tiny: two Dense layers, 20 steps.
"""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.state import pruning_wrappers

BACKEND = keras.backend.backend()
X = np.random.default_rng(0).normal(size=(40, 5)).astype("float32")
Y = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")

# Masks of `_model()` after `_fit` (2 epochs of 10 batches), the same on
# JAX, TensorFlow and torch: their sums pin the schedule's counts.
KEPT = (9, 7)


def _model(seed=1, units=(6, 4), **schedule):
    inp = keras.Input((5,))
    x = inp
    for u in units[:-1]:
        x = keras.layers.Dense(u, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(units[-1])(x))
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in model.weights]
    )
    args = dict(begin_step=0, end_step=20, frequency=1)
    args.update(schedule)
    return kp.prune_low_magnitude(
        model, pruning_schedule=kp.PolynomialDecay(0.0, 0.7, **args)
    )


def _compiled(model=None, **compile_args):
    model = _model() if model is None else model
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss="mse", **compile_args
    )
    return model


def _masks(model):
    return [
        keras.ops.convert_to_numpy(m)
        for w in pruning_wrappers(model)
        for m in w.masks
    ]


def _fit(model, epochs=2, **kwargs):
    model.fit(
        X, Y, batch_size=4, epochs=epochs, verbose=0, shuffle=False, **kwargs
    )
    return _masks(model)


def _same(a, b):
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b)
    )


@pytest.fixture(scope="module")
def reference():
    model = _compiled()
    masks = _fit(model)
    assert [int(m.sum()) for m in masks] == [30 - 21, 24 - 17]
    assert kp.pruning_step(model) == 20
    return masks


def test_reference_counts(reference):
    assert tuple(int(m.sum()) for m in reference) == KEPT


@pytest.mark.parametrize("compile_args", [{"run_eagerly": True}, {}])
def test_update_pruning_step_in_eager_fit(reference, compile_args):
    """Before: on JAX, `fit(run_eagerly=True)` (or `jit_compile=False`)
    with `UpdatePruningStep` raised at its first batch a ValueError saying
    the pruned layers are never called with training=True: host mode
    recorded the masks for its `ZeroPruned` constraint only when they were
    traced (JAX's eager step has concrete ones)."""
    model = _compiled(**compile_args)
    masks = _fit(model, callbacks=[kp.UpdatePruningStep()])
    assert _same(masks, reference)
    assert kp.pruning_step(model) == 20
