"""Red-team 6: the wrapper's attribute forwarding, wrappers without masks,
loading checks and `prune_once`'s in-place zeros (see the report)."""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import PruneLowMagnitude

L = keras.layers


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


class _DenseWithStateNames(L.Dense):
    """A layer whose own attributes share the wrapper's state names."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.masks = "layer masks"
        self.thresholds = "layer thresholds"
        self.pruned_weights = "layer weights"
        self.pruning_step = 7


def test_wrapper_state_names_are_never_the_layers():
    # Before `build`, `wrapper.masks` read the layer's `masks` and
    # `pruning_vars` zipped its strings: [('l', 'l', 'l'), ...].
    layer = _DenseWithStateNames(2, kernel_initializer="ones")
    with pytest.warns(UserWarning, match="has attributes .'masks'"):
        wrapper = PruneLowMagnitude(layer)
    assert wrapper.pruning_vars == []
    assert not hasattr(wrapper, "masks")
    assert not hasattr(wrapper, "pruning_step")
    assert not hasattr(wrapper, "pruned_weights")
    wrapper.build((None, 3))
    assert [tuple(m.shape) for m in wrapper.masks] == [(3, 2)]
    assert int(to_np(wrapper.pruning_step)) == 0
    assert [len(v) for v in wrapper.pruning_vars] == [3]
    assert wrapper.pruning_vars[0][0] is layer.kernel
    assert layer.masks == "layer masks" and layer.pruning_step == 7


def test_attribute_written_through_wrapper_reaches_layer():
    # `wrapper.activation = relu` was kept by the wrapper alone: the read
    # said relu while the layer's call still ran linear.
    layer = L.Dense(2, kernel_initializer="ones", bias_initializer="zeros")
    wrapper = PruneLowMagnitude(layer)
    model = keras.Sequential([keras.Input((2,)), wrapper])
    x = np.array([[-1.0, -2.0]], "float32")
    np.testing.assert_array_equal(to_np(model(x)), [[-3.0, -3.0]])
    wrapper.activation = keras.activations.relu
    assert layer.activation is keras.activations.relu
    assert "activation" not in wrapper.__dict__
    np.testing.assert_array_equal(to_np(model(x)), [[0.0, 0.0]])
    # The wrapper's own attributes stay its own.
    wrapper.trainable = False
    assert not wrapper.trainable and not layer.trainable
    wrapper.new_note = 1  # neither has it: the wrapper's
    assert wrapper.new_note == 1 and not hasattr(layer, "new_note")


class _Sub(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = L.Dense(4, kernel_initializer="ones")

    def call(self, x, training=None):
        return self.a(x, training=training)


def test_prune_once_copies_functional_and_prunes_subclassed_in_place():
    # As its docstring says: Sequential/Functional models keep their dense
    # weights (the layers are copies); a subclassed model is pruned in
    # place, and its `get_weights()` taken first restores it.
    seq = keras.Sequential(
        [keras.Input((4,)), L.Dense(4, kernel_initializer="ones")]
    )
    pruned = kp.prune_once(seq, 0.5)
    assert pruned is not seq
    assert np.count_nonzero(to_np(seq.layers[0].kernel)) == 16
    assert np.count_nonzero(to_np(pruned.layers[0].layer.kernel)) == 8
    sub = _Sub()
    sub(np.ones((1, 4), "float32"))
    dense = sub.get_weights()
    pruned = kp.prune_once(sub, 0.5)
    assert pruned is sub
    assert np.count_nonzero(to_np(sub.a.layer.kernel)) == 8
    stripped = kp.strip_pruning(pruned)
    stripped.set_weights(dense)
    assert np.count_nonzero(to_np(stripped.a.kernel)) == 16


def test_weightless_wrappers_train_save_and_report(tmp_path):
    # Wrappers without masks next to pruned ones: fit with the callback
    # and steps_per_execution=2, reports, .keras round trip, strip.
    sched = kp.ConstantSparsity(0.5, 0, frequency=1)
    model = keras.Sequential(
        [
            keras.Input((2, 2, 1)),
            PruneLowMagnitude(L.BatchNormalization()),
            PruneLowMagnitude(L.Flatten()),
            PruneLowMagnitude(L.Dropout(0.1)),
            PruneLowMagnitude(
                L.Dense(2, kernel_initializer="ones"), pruning_schedule=sched
            ),
        ]
    )
    assert model.layers[0].pruning_vars == []
    spe = 1 if keras.backend.backend() == "torch" else 2  # torch: 1 only
    model.compile("sgd", "mse", steps_per_execution=spe)
    x = np.arange(16, dtype="float32").reshape(4, 2, 2, 1) / 16
    y = np.zeros((4, 2), "float32")
    model.fit(x, y, batch_size=2, verbose=0, callbacks=[kp.UpdatePruningStep()])
    assert kp.model_sparsity(model) == 0.5
    assert kp.pruning_step(model) == 2
    rows = kp.sparsity_report(model)
    assert [(r["params"], r["zeros"]) for r in rows] == [(8, 4)]
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_np(loaded(x)), to_np(model(x)))
    assert kp.model_sparsity(loaded) == 0.5
    only = keras.Sequential(
        [keras.Input((2,)), PruneLowMagnitude(L.Dropout(0.1))]
    )
    assert kp.model_sparsity(only) is None
    assert kp.sparsity_report(only) == []
    assert [type(la).__name__ for la in kp.strip_pruning(loaded).layers] == [
        "BatchNormalization",
        "Flatten",
        "Dropout",
        "Dense",
    ]


def test_layer_setting_given_to_wrapper_names_the_fix():
    # Bidirectional rebuilds its layer with go_backwards=True in the
    # wrapper's config: "unexpected keyword 'go_backwards'" only.
    with pytest.raises(TypeError, match=r"\['go_backwards'\], settings of"):
        L.Bidirectional(kp.prune_low_magnitude(L.LSTM(2)))
    with pytest.raises(TypeError, match="set them on the layer before"):
        PruneLowMagnitude(L.Dense(2), units=3)


class _SubWithMasks(_Sub):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.masks = ["the user's"]  # was taken for a wrapper


def test_prune_once_built_layer_list_and_model_named_like_wrapper():
    # A built layer given on its own: "is not built" (its wrapper was not);
    # a list of layers: AttributeError ('list' has no '_flatten_layers').
    dense = L.Dense(4, kernel_initializer="ones")
    dense.build((None, 4))
    wrapper = kp.prune_once(dense, 0.5)
    assert wrapper.layer is dense
    assert np.count_nonzero(to_np(dense.kernel)) == 8
    pair = [L.Dense(4, kernel_initializer="ones") for _ in range(2)]
    for layer in pair:
        layer.build((None, 2))
    wrappers = kp.prune_once(pair, 0.25)
    assert [w.layer for w in wrappers] == pair
    assert [np.count_nonzero(to_np(la.kernel)) for la in pair] == [6, 6]
    sub = _SubWithMasks()
    sub(np.ones((1, 4), "float32"))
    pruned = kp.prune_once(sub, 0.5)
    assert np.count_nonzero(to_np(pruned.a.layer.kernel)) == 8
    assert sub.masks == ["the user's"]


def test_built_in_layers_hide_no_attribute():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for layer in [
            L.Dense(2),
            L.Conv2D(2, 2),
            L.Embedding(3, 2),
            L.LSTM(2),
            L.MultiHeadAttention(2, 2),
            L.Dropout(0.1),
        ]:
            PruneLowMagnitude(layer)
    assert not [w for w in caught if "has attributes" in str(w.message)]
