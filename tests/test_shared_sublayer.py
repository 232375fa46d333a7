"""A sublayer that two custom layers share, in a plain Functional or
Sequential model.

Functional and Sequential models are pruned on a copy made from configs.
Each holder's config serializes the shared layer, so the copy had two
independent layers: a 2-weight model became a 4-weight one when pruned
(12 weights with the wrappers), the two copies were pruned and trained
apart, and the stripped model had 4 weights. The copy now shares what the
original shares (`rewrite._share_as_in`): one wrapper, one mask.

Keras itself does not reload such a model (dense or pruned: "Layer
'dense' expected 2 variables, but received 0"), so no reload is checked
here; docs/models.md says so.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_prune as kp


@keras.saving.register_keras_serializable("keras_prune_tests")
class Holder(keras.layers.Layer):
    """Calls a layer it is given (a block that reuses a shared layer)."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x):
        return self.inner(x)

    def get_config(self):
        inner = keras.saving.serialize_keras_object(self.inner)
        return {**super().get_config(), "inner": inner}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
        return cls(**config)


def _functional():
    shared = keras.layers.Dense(16, name="dense")
    x = keras.Input((16,))
    y = Holder(shared, name="h1")(x)
    y = Holder(shared, name="h2")(y)
    return keras.Model(x, y)


def _sequential():
    shared = keras.layers.Dense(16, name="dense")
    return keras.Sequential(
        [
            keras.Input((16,)),
            Holder(shared, name="h1"),
            Holder(shared, name="h2"),
        ]
    )


BUILDERS = {"functional": _functional, "sequential": _sequential}
X = np.random.RandomState(0).randn(32, 16).astype("float32")


def _holders(model):
    return [l for l in model.layers if isinstance(l, Holder)]


def _zeros(variable):
    return int(np.sum(ops.convert_to_numpy(variable) == 0))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_pruned_fit_and_stripped_share_one_layer(kind):
    model = BUILDERS[kind]()
    assert len(model.weights) == 2
    pruned = kp.prune_low_magnitude(
        model, pruning_schedule=kp.ConstantSparsity(0.5, 0)
    )
    # One wrapper (4 state variables) around the one Dense (2 weights).
    assert len(pruned.weights) == 6
    h1, h2 = _holders(pruned)
    assert h1.inner is h2.inner
    assert isinstance(h1.inner, kp.PruneLowMagnitude)
    assert sum(w.path.endswith("kernel_mask") for w in pruned.weights) == 1
    pruned.compile("sgd", "mse")
    pruned.fit(
        X,
        X,
        epochs=1,
        batch_size=8,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    stripped = kp.strip_pruning(pruned)
    assert len(stripped.weights) == 2
    s1, s2 = _holders(stripped)
    assert s1.inner is s2.inner
    assert _zeros(s1.inner.kernel) == 128  # exactly half of 16 x 16
    np.testing.assert_array_equal(
        ops.convert_to_numpy(pruned(X)), ops.convert_to_numpy(stripped(X))
    )
    # The original model is left as it was: still one shared Dense.
    o1, o2 = _holders(model)
    assert o1.inner is o2.inner and len(model.weights) == 2


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_prune_once_and_global_budget_count_the_shared_kernel_once(kind):
    model = BUILDERS[kind]()
    once = kp.prune_once(model, 0.5)
    assert len(once.weights) == 6
    kernels = [w for w in once.weights if w.path.endswith("kernel")]
    assert [_zeros(k) for k in kernels] == [128]
    # Global allocation over one kernel: the same exact count.
    glob = kp.prune_once(model, 0.25, allocation="global")
    kernels = [w for w in glob.weights if w.path.endswith("kernel")]
    assert [_zeros(k) for k in kernels] == [64]
