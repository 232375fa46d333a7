"""`fit` with `run_eagerly=True` and `UpdatePruningStep` (host updates).

With the callback, `fit` runs the mask updates from the host and Keras'
own step applies `ZeroPruned` after each optimizer update. On JAX that
constraint takes the mask from the step's state, which the wrapper's
forward pass records: it recorded only traced (jitted) values, so with
`run_eagerly=True` every JAX `fit` raised "never called with
training=True" on any model (found by tests/test_models.py, a pruned
GPT-2 reloaded and trained eagerly).
"""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.strip import pruning_wrappers

from conftest import to_np

SCHEDULE = kp.PolynomialDecay(0.25, 0.75, 0, 2, power=1, frequency=1)


def fit(run_eagerly):
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(2)]
    )
    pruned = kp.prune_low_magnitude(model, SCHEDULE)
    pruned.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="mse",
        run_eagerly=run_eagerly,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 2)).astype("float32")
    pruned.fit(
        x,
        y,
        batch_size=2,
        shuffle=False,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    return pruned


@pytest.fixture(scope="module")
def eager():
    return fit(run_eagerly=True)


def test_eager_fit_with_callback_prunes_exactly(eager):
    # 4 steps; the masks were last updated at step 2, to 0.75.
    assert kp.pruning_step(eager) == 4
    wrappers = pruning_wrappers(eager)
    assert len(wrappers) == 2
    for wrapper in wrappers:
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            m, w = to_np(mask), to_np(weight)
            assert int(m.sum()) == kp.kept_count(m.size, 0.75), wrapper.name
            # Kept exactly sparse by ZeroPruned after every update.
            assert not np.any(w[~m.astype(bool)]), wrapper.name
            assert np.count_nonzero(w) == int(m.sum()), wrapper.name


def test_eager_fit_masks_as_compiled_fit(eager):
    compiled = fit(run_eagerly=False)
    assert kp.pruning_step(compiled) == 4
    for a, b in zip(pruning_wrappers(eager), pruning_wrappers(compiled)):
        for ma, mb in zip(a.masks, b.masks):
            np.testing.assert_array_equal(to_np(ma), to_np(mb))
