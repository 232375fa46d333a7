"""Pruned layers that `fit` never calls with training=True: an error, not a
silent no-op (a model's `call` without `training`, or one that does not pass
it on, on JAX)."""

import warnings

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.state import TrainingNotPassedWarning

BACKEND = keras.backend.backend()
L = keras.layers


class NoTraining(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1 = L.Dense(8, name="d1")
        self.d2 = L.Dense(4, name="d2")

    def call(self, x):
        return self.d2(self.d1(x))


class DropsTraining(NoTraining):
    def call(self, x, training=None):  # takes it, does not pass it on
        return self.d2(self.d1(x))


def data():
    rng = np.random.RandomState(0)
    x = rng.rand(4, 6).astype("float32")
    return x, rng.rand(4, 4).astype("float32")


def built(cls):
    x, _ = data()
    model = cls()
    model(x)
    return model


def fit(model, callbacks):
    x, y = data()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=callbacks)


def test_call_without_training_warns_when_pruned_and_raises_in_fit():
    model = built(NoTraining)
    with pytest.warns(TrainingNotPassedWarning, match=r"NoTraining\.call\(\)"):
        pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match="never called with training=True"):
        fit(pruned, [kp.UpdatePruningStep()])


def test_call_without_training_prune_once_does_not_warn():
    model = built(NoTraining)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingNotPassedWarning)
        pruned = kp.prune_once(model, 0.5)
    kernel = keras.ops.convert_to_numpy(kp.strip_pruning(pruned).d1.kernel)
    assert int(np.count_nonzero(kernel)) == 24  # 48 weights at 0.5


def test_training_not_passed_on():
    """Keras' call context hands `training` to the layers on TensorFlow and
    torch; on JAX `fit` runs `call()` directly, so nothing reaches them."""
    model = built(DropsTraining)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingNotPassedWarning)
        pruned = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.5, 0))
    if BACKEND == "jax":
        with pytest.raises(ValueError, match="does not pass `training` on"):
            fit(pruned, [kp.UpdatePruningStep()])
        return
    fit(pruned, [kp.UpdatePruningStep()])
    assert kp.pruning_step(pruned) == 2
    kernel = keras.ops.convert_to_numpy(pruned.d1.layer.kernel)
    assert int(np.count_nonzero(kernel)) == 24
