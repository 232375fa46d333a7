"""Red-team 6: the wrapper's attribute forwarding, wrappers without masks,
loading checks and `prune_once`'s in-place zeros (see the report)."""


import keras
import numpy as np

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
