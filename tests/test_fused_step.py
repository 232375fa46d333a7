"""The in-step update of a built-in schedule, fused into one host call.

On JAX, and on TensorFlow without XLA, a wrapper pruned by magnitude whose
schedule is built in runs the schedule, the host select and its counters
in one shared function (`MaskUpdate.update_from_step`); any other schedule
evaluates the schedule first and calls the select (`MaskUpdate.update`).
Both must train identically: same steps, masks and weights, bit for bit.
"""

import keras
import numpy as np
from keras import ops

import keras_prune
from keras_prune import _backend
from keras_prune.core import schedules
from keras_prune.integration import updater


class SameAsPolynomial(keras_prune.PruningSchedule):
    """A user's in-graph schedule with PolynomialDecay's values."""

    in_graph = True

    def __init__(self):
        self.inner = keras_prune.PolynomialDecay(0.2, 0.75, 0, 6, frequency=2)

    def __call__(self, step):
        return self.inner(step)

    def get_config(self):
        return {}


def _train(schedule, steps=8):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(10, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    pruned = keras_prune.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.normal(size=(32, 4)).astype("float32")
    pruned.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=steps, verbose=0)
    return pruned


def test_built_in_and_user_schedule_train_the_same(monkeypatch):
    assert schedules.is_builtin(keras_prune.PolynomialDecay(0.2, 0.75, 0, 6))
    assert not schedules.is_builtin(SameAsPolynomial())
    traced = []
    fuse = updater._host_step

    def counted(*args):
        traced.append(args[0])
        return fuse(*args)

    monkeypatch.setattr(updater, "_host_step", counted)
    # TensorFlow keeps one traced function per schedule config for the
    # process: another test may have traced this one already.
    monkeypatch.setattr(_backend, "_SHARED_STEP_FUNCTIONS", {})
    fused = _train(keras_prune.PolynomialDecay(0.2, 0.75, 0, 6, frequency=2))
    n_fused = len(traced)
    plain = _train(SameAsPolynomial())
    # Traced into the step on JAX and TensorFlow (once per wrapper on JAX,
    # once on TensorFlow); torch's eager steps branch in Python instead.
    if keras.backend.backend() == "torch":
        assert n_fused == 0
    else:
        assert n_fused >= 1
    assert len(traced) == n_fused  # the user's schedule: never fused
    assert keras_prune.pruning_step(fused) == 8
    assert keras_prune.pruning_step(plain) == 8
    # Masks, steps and counters bit for bit; stripped weights too (torch
    # stores a built-in schedule's pruned weights as zeros, and masks a
    # user's schedule: the stored values differ there, by design).
    for a, b in zip(fused.non_trainable_weights, plain.non_trainable_weights):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=a.path
        )
    stripped = keras_prune.strip_pruning(fused)
    for a, b in zip(stripped.weights, keras_prune.strip_pruning(plain).weights):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=a.path
        )
    # Step 6 is the last update (frequency 2 from 0): 0.75 of the 60 and
    # 40 kernel weights are pruned, and zero once stripped.
    zeros = [
        int(np.sum(ops.convert_to_numpy(layer.kernel) == 0))
        for layer in stripped.layers
    ]
    assert zeros == [45, 30]
