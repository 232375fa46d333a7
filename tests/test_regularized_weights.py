"""Weight regularization of pruned weights counts what the layer computes.

Keras adds `regularizer(variable)` from the stored value. With in-step
updates (no `UpdatePruningStep`) the stored pruned weights keep their old
values while the forward pass reads `w * mask`; the reported loss must
still be the penalty of `w * mask`, as with the callback (stored zeros)
and in tfmot, and training must be the same (but for the order in which
XLA sums gradients).
"""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.strip import pruning_wrappers

from conftest import to_np


def fit(regularizer, with_callback):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, kernel_regularizer=regularizer, name="d1"),
            keras.layers.Dense(2, kernel_regularizer=regularizer, name="d2"),
        ]
    )
    model = kp.prune_low_magnitude(
        model, kp.PolynomialDecay(0.5, 0.75, 0, 4, power=1, frequency=2)
    )
    model.compile(keras.optimizers.SGD(0.05), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 6)).astype("float32")
    y = rng.normal(size=(24, 2)).astype("float32")
    history = model.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()] if with_callback else [],
    )
    return model, history.history["loss"]


@pytest.mark.parametrize(
    "regularizer",
    [keras.regularizers.L2(0.5), keras.regularizers.L1L2(0.1, 0.5)],
    ids=["L2", "L1L2"],
)
def test_loss_and_training_as_with_stored_zeros(regularizer):
    in_step, in_step_loss = fit(regularizer, with_callback=False)
    host, host_loss = fit(regularizer, with_callback=True)
    # Before: the in-step loss held the penalty of the pruned weights too
    # (JAX, TensorFlow: 1.3-2x the callback's here).
    np.testing.assert_allclose(in_step_loss, host_loss, rtol=2e-6)
    for a, b in zip(pruning_wrappers(in_step), pruning_wrappers(host)):
        np.testing.assert_array_equal(to_np(a.masks[0]), to_np(b.masks[0]))
    for a, b in zip(
        kp.strip_pruning(in_step).get_weights(),
        kp.strip_pruning(host).get_weights(),
    ):
        # Bit for bit but for XLA's order of sums (JAX: 1 ulp, L1L2).
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_layer_used_twice_counts_its_penalty_once():
    keras.utils.set_random_seed(3)
    dense = keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L2(1.0))
    x = keras.Input((4,))
    model = keras.Model(x, dense(dense(x)))
    model = kp.prune_low_magnitude(model, kp.ConstantSparsity(0.75, 0))
    wrapper = pruning_wrappers(model)[0]
    wrapper.update_masks_now(0.75)
    kernel, mask = to_np(wrapper.layer.kernel), to_np(wrapper.masks[0])
    model(np.ones((1, 4), "float32"))
    total = sum(float(to_np(loss)) for loss in model.losses)
    np.testing.assert_allclose(total, np.sum((kernel * mask) ** 2), rtol=1e-6)
