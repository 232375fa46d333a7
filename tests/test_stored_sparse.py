"""torch's eager steps store pruned weights as zeros (`stored_sparse`).

Without `UpdatePruningStep`, a model trained with an elementwise optimizer
on torch zeroes its pruned weights in place before a training call and
reads them unmasked. It must train exactly as masking in the forward pass
does (the masks and the kept weights bit for bit), keep working when two
forward passes precede one backward pass, and keep masking where it would
not be exact (an optimizer clipping by norm, no optimizer).
"""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration import stored_sparse
from keras_prune.integration.strip import pruning_wrappers

from conftest import BACKEND
from conftest import to_np

pytestmark = pytest.mark.skipif(
    BACKEND != "torch", reason="torch's eager steps only"
)


def pruned(optimizer, schedule=None, score=None, **dense_kwargs):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(12, **dense_kwargs),
            keras.layers.Dense(3),
        ]
    )
    model = kp.prune_low_magnitude(
        model,
        schedule or kp.PolynomialDecay(0.3, 0.8, 0, 6, power=1, frequency=1),
        score=score,
    )
    if optimizer is not None:
        model.compile(optimizer, "mse")
    return model


def data():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(32, 8)).astype("float32"),
        rng.normal(size=(32, 3)).astype("float32"),
    )


def train(model, masked, reads=None):
    """Fits `model` for 8 steps; `reads` (a list) gets the number of
    weights each call read unmasked."""
    x, y = data()
    original = stored_sparse.unmasked
    if masked:  # the forward pass masks every pruned weight, as before
        stored_sparse.unmasked = lambda wrapper, training: set()
    elif reads is not None:

        def counted(wrapper, training):
            out = original(wrapper, training)
            reads.append(len(out))
            return out

        stored_sparse.unmasked = counted
    try:
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    finally:
        stored_sparse.unmasked = original
    return model


def masks_of(model):
    return [to_np(m) for w in pruning_wrappers(model) for m in w.masks]


def test_trains_as_masking_does_bit_for_bit():
    stored = train(pruned(keras.optimizers.Adam(0.05)), masked=False)
    masked = train(pruned(keras.optimizers.Adam(0.05)), masked=True)
    assert kp.pruning_step(stored) == kp.pruning_step(masked) == 8
    got, expected = masks_of(stored), masks_of(masked)
    assert [int(m.sum()) for m in got] == [
        int(to_np(kp.kept_count(m.size, 0.8))) for m in got
    ]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # Masking gives pruned weights zero gradients, so Adam's second moments
    # of the weights pruned from step 0 stay exactly zero (torch's `sqrt` of
    # them is the slow part); stored as zeros, they get their true gradient.
    for model, zeros in ((stored, False), (masked, True)):
        kernel = pruning_wrappers(model)[0].pruned_weights[0]
        velocity = model.optimizer._velocities[
            model.optimizer._get_variable_index(kernel)
        ]
        assert bool(np.any(to_np(velocity) == 0.0)) is zeros
    for a, b in zip(
        kp.strip_pruning(stored).get_weights(),
        kp.strip_pruning(masked).get_weights(),
    ):
        np.testing.assert_array_equal(a, b)


def test_custom_loop_masks_two_forward_passes_before_one_backward():
    # Outside `fit` the optimizer that applies the gradients is unknown: the
    # forward pass masks, and nothing a graph holds is written in place.
    import torch

    model = pruned(keras.optimizers.SGD(0.1))
    x, _ = data()
    x = keras.ops.convert_to_tensor(x[:4])
    model(x, training=True)  # step 0 -> 1
    first = model(x, training=True)  # step 1 -> 2: new masks
    second = model(x, training=True)  # step 2 -> 3: new masks again
    loss = keras.ops.sum(first) + keras.ops.sum(second)
    loss.backward()  # nothing the first graph holds was written in place
    grads = [v.value.grad for v in model.trainable_variables]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    for w in pruning_wrappers(model):
        kernel = to_np(w.pruned_weights[0])
        assert np.count_nonzero(kernel) == kernel.size  # not written


@pytest.mark.parametrize(
    "optimizer",
    [None, keras.optimizers.SGD(0.1, clipnorm=1.0)],
    ids=["no-optimizer", "clipnorm"],
)
def test_masks_where_storing_would_not_be_exact(optimizer):
    model = pruned(optimizer)
    x, _ = data()
    model(x[:4], training=True)
    for w in pruning_wrappers(model):
        assert stored_sparse.unmasked(w, True) == set()
        # Pruned weights were not written: still dense.
        kernel = to_np(w.pruned_weights[0])
        assert np.count_nonzero(kernel) == kernel.size


def assert_trains_as_masking(make, reads_expected):
    reads = []
    stored = train(make(), masked=False, reads=reads)
    masked = train(make(), masked=True)
    assert sum(reads) == reads_expected  # weights read unmasked
    for a, b in zip(masks_of(stored), masks_of(masked)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        kp.strip_pruning(stored).get_weights(),
        kp.strip_pruning(masked).get_weights(),
    ):
        np.testing.assert_array_equal(a, b)


def test_mixed_precision_zeroes_the_variable_not_its_autocast_copy():
    # Under mixed_float16 a layer's `kernel.value` is a float16 copy: zeroing
    # that copy left the float32 variable dense, read unmasked (pruned
    # weights used in the forward pass).
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        assert_trains_as_masking(
            lambda: pruned(keras.optimizers.Adam(0.05)), reads_expected=16
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kwargs, reads",
    [
        ({"kernel_constraint": keras.constraints.MaxNorm(0.5)}, 8),
        (
            {"kernel_regularizer": keras.regularizers.OrthogonalRegularizer()},
            8,
        ),
        ({"kernel_regularizer": keras.regularizers.L2(0.1)}, 16),
    ],
    ids=["max-norm", "orthogonal", "l2"],
)
def test_constraints_and_regularizers_that_mix_weights_mask(kwargs, reads):
    # MaxNorm and OrthogonalRegularizer read the pruned weights' values
    # (dense under masking): that kernel keeps masking (8 reads: the other
    # Dense only). L2 is one term per weight: stored sparse (16 reads).
    assert_trains_as_masking(
        lambda: pruned(keras.optimizers.Adam(0.05), **kwargs), reads
    )


def test_train_step_set_on_the_instance_masks():
    # `fit` calls `model.train_step` set on the instance; this one applies
    # an optimizer clipping by global norm, which the pruned weights'
    # gradients would change if they were read unmasked.
    def make():
        model = pruned(keras.optimizers.Adam(0.05))
        clipping = keras.optimizers.SGD(0.1, global_clipnorm=0.01)
        clipping.build(model.trainable_variables)

        def train_step(batch):
            x, y = batch
            loss = keras.ops.mean((model(x, training=True) - y) ** 2)
            for v in model.trainable_variables:
                v.value.grad = None
            loss.backward()
            variables = model.trainable_variables
            clipping.apply([v.value.grad for v in variables], variables)
            return {"loss": loss}

        model.train_step = train_step
        return model

    assert_trains_as_masking(make, reads_expected=0)


def test_a_write_the_version_counter_misses_is_not_read_unmasked(
    monkeypatch,
):
    # `.data =` swaps a tensor's storage without bumping its version; a new
    # tensor put in the variable starts its own count. Neither may match
    # the version recorded when the weight was zeroed.
    import torch

    model = pruned(keras.optimizers.SGD(0.1))
    model(data()[0][:4])  # builds
    wrapper = pruning_wrappers(model)[0]
    kernel = wrapper.pruned_weights[0]
    monkeypatch.setattr(
        stored_sparse, "_may_zero_in_place", lambda training: training is True
    )
    for replace in ("data", "tensor"):
        assert stored_sparse.unmasked(wrapper, True) == {id(kernel)}  # zeroed
        assert stored_sparse.unmasked(wrapper, None) == {id(kernel)}
        ones = torch.ones_like(kernel.value)
        if replace == "data":
            kernel.value.data = ones
        else:
            kernel._value = torch.nn.Parameter(ones)
        assert stored_sparse.unmasked(wrapper, None) == set(), replace


class RawMagnitude(kp.Score):
    """|w| of the stored weight (dense under masking), not of `value`."""

    def __call__(self, value, weight, layer):
        return keras.ops.abs(keras.ops.convert_to_tensor(weight))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"schedule": kp.PolynomialDecay(0.8, 0.3, 0, 6, frequency=1)},
        {"score": RawMagnitude()},
    ],
    ids=["decreasing-sparsity", "own-score"],
)
def test_masks_that_may_keep_pruned_weights_again_mask(kwargs):
    # Weights pruned and kept again come back with the value masking kept
    # (stored sparse: zero), so such wrappers keep masking (0 reads).
    assert_trains_as_masking(
        lambda: pruned(keras.optimizers.Adam(0.05), **kwargs), 0
    )
