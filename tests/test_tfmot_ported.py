"""Assertions of tfmot's prune_integration_test.py not checked elsewhere.

Written anew for keras-prune (import swapped, Keras 3), on tfmot's
`build_simple_dense_model` (Dense(8, relu) on 10 inputs, Dense(5,
softmax)) and its training helper (20 samples, one batch, SGD,
categorical cross-entropy, `UpdatePruningStep` for pruned models).
"""

import keras
import numpy as np

import keras_prune as kp

from conftest import to_np


def build_simple_dense_model():
    return keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )


def data():
    rng = np.random.default_rng(0)
    x = rng.random((20, 10)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 5, 20), 5)
    return x, y


def train(model, epochs=1, batch_size=20, pruned=True):
    x, y = data()
    model.compile(
        loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"]
    )
    callbacks = [kp.UpdatePruningStep()] if pruned else []
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=0,
    )


def test_zero_sparsity_trains_like_the_dense_model():
    # tfmot testPrunesZeroSparsity_IsNoOp: same trainable weights, in the
    # same order, other objects, values allclose (TensorFlow gives the same
    # bits; JAX and torch compile another program for the pruned step and
    # can differ in the last bits).
    model = build_simple_dense_model()
    model2 = build_simple_dense_model()
    model2.set_weights(model.get_weights())
    pruned_model = kp.prune_low_magnitude(
        model2,
        pruning_schedule=kp.ConstantSparsity(
            target_sparsity=0, begin_step=0, frequency=1
        ),
    )
    train(model, pruned=False)
    train(pruned_model)
    a, b = model.trainable_weights, pruned_model.trainable_weights
    assert [w.shape for w in a] == [w.shape for w in b]
    assert not {id(w) for w in a} & {id(w) for w in b}
    for w1, w2 in zip(a, b):
        np.testing.assert_allclose(to_np(w1), to_np(w2), rtol=1e-6, atol=1e-6)


def test_high_sparsity_keeps_one_weight_per_tensor():
    # tfmot testPruneWithHighSparsity: 0.99 of 80 and of 40 weights keeps 1.
    model = kp.prune_low_magnitude(
        build_simple_dense_model(),
        pruning_schedule=kp.ConstantSparsity(
            target_sparsity=0.99, begin_step=0, frequency=1
        ),
    )
    train(model)
    counts = [
        int(np.count_nonzero(to_np(weight)))
        for layer in model.layers
        for weight in layer.layer.get_prunable_weights()
    ]
    assert counts == [1, 1]


def test_polynomial_decay_past_end_step_keeps_final_sparsity():
    # tfmot testPruneWithPolynomialDecayPastEndStep_PreservesSparsity:
    # training on after end_step keeps the final sparsity.
    model = kp.prune_low_magnitude(
        build_simple_dense_model(),
        pruning_schedule=kp.PolynomialDecay(0.2, 0.6, 0, 1, frequency=1),
    )
    train(model, epochs=3, batch_size=4)  # 15 steps, end_step 1
    assert int(to_np(kp.pruning_step(model))) == 15
    counts = [
        (int(np.count_nonzero(to_np(w))), int(np.prod(w.shape)))
        for layer in model.layers
        for w in layer.layer.get_prunable_weights()
    ]
    assert counts == [(32, 80), (16, 40)]
