"""Host mode keeps pruned weights at zero with Keras' constraint hook.

`UpdatePruningStep` gives each pruned weight a constraint
(`host_updates.ZeroPruned`) for the length of `fit`, after the weight's own
constraint; `train_step` stays the model's own.
"""

import keras
import numpy as np

import keras_prune as kp
from keras_prune.integration import host_updates
from keras_prune.integration.strip import pruning_wrappers

from conftest import to_np


def test_a_user_constraint_is_kept_and_composed():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, kernel_constraint="non_neg", name="a"),
            keras.layers.Dense(2, name="b"),
        ]
    )
    schedule = kp.PolynomialDecay(0.0, 0.75, 0, 4, frequency=2)
    pruned = kp.prune_low_magnitude(model, schedule)
    pruned.compile(keras.optimizers.SGD(0.5), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    a, b = pruning_wrappers(pruned)
    own = a.pruned_weights[0].constraint  # the copy's NonNeg
    assert isinstance(own, keras.constraints.NonNeg)
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            model = self.model  # syncs JAX state
            assert host_updates.active(model) is not None
            assert "train_step" not in model.__dict__
            constraint = a.pruned_weights[0].constraint
            assert isinstance(constraint, host_updates.ZeroPruned)
            assert constraint.inner is own
            kernel, mask = to_np(a.pruned_weights[0]), to_np(a.masks[0])
            seen.append(
                (
                    float(kernel.min()),
                    int(np.count_nonzero(kernel[~mask])),
                    int(mask.sum()),
                )
            )

    pruned.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[kp.UpdatePruningStep(), Watch()],
    )
    assert len(seen) == 8
    # NonNeg ran after every update (no negative weight), and the pruned
    # weights are zero; updates at steps 0, 2 and 4 (of 48 weights).
    assert all(low >= 0.0 for low, _, _ in seen)
    assert all(leaked == 0 for _, leaked, _ in seen)
    kept = [int(kp.kept_count(48, schedule(s)[1])) for s in (0, 2, 4)]
    assert kept == [48, 16, 12]
    assert [k for _, _, k in seen] == [48, 48, 16, 16, 12, 12, 12, 12]
    # After fit, each weight has its own constraint again.
    assert a.pruned_weights[0].constraint is own
    assert b.pruned_weights[0].constraint is None
    assert host_updates.active(pruned) is None


def _mlp_fit(callbacks_per_fit):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)]
    )
    pruned = kp.prune_low_magnitude(
        model, kp.PolynomialDecay(0.0, 0.8, 0, 7, frequency=1)
    )
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    for callbacks in callbacks_per_fit:
        keras.utils.set_random_seed(1)
        pruned.fit(
            x, y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks()
        )
    return [
        (int(to_np(w.pruning_step)), to_np(w.masks[0]), to_np(w.thresholds[0]))
        for w in pruning_wrappers(pruned)
    ]


def test_host_mode_after_in_step_fits_and_back_keeps_the_masks_moving():
    """Each mode has its own traces of Keras' step: a host-mode `fit` after
    in-step ones, and in-step ones after it, update the masks as in-step
    training alone does (on JAX, `jit` caches traces by the step it
    compiles, so the modes must not share one)."""
    leaks = []

    class Leaks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            model = self.model  # syncs JAX state
            assert host_updates.active(model) is not None
            leaks.append(
                sum(
                    int(np.count_nonzero(to_np(v)[~to_np(m)]))
                    for w in pruning_wrappers(model)
                    for v, m in zip(w.pruned_weights, w.masks)
                )
            )

    host = lambda: [kp.UpdatePruningStep(), Leaks()]  # noqa: E731
    none = lambda: []  # noqa: E731
    reference = _mlp_fit([none, none, none])
    mixed = _mlp_fit([none, host, none])
    # The host-mode fit ran its own step: pruned weights zero after each.
    assert leaks == [0, 0, 0, 0]
    for (s1, m1, t1), (s2, m2, t2) in zip(reference, mixed):
        assert s1 == s2 == 12
        np.testing.assert_array_equal(m1, m2)
        assert t1.tobytes() == t2.tobytes()
    # The schedule reached 0.8 at step 7: 48 * 0.2 and 16 * 0.2 kept.
    assert [int(m.sum()) for _, m, _ in mixed] == [
        int(kp.kept_count(48, 0.8)),
        int(kp.kept_count(16, 0.8)),
    ]
