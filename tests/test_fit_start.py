"""What `UpdatePruningStep` reads at each `fit`'s start, read cheaply.

`updater.apply_masks` checks each pruned weight through a zero-copy view
and writes only the weights that are not exactly sparse; the wrappers'
step and NaN counters are read with one transfer (`_backend.read_ints`).
Same results as reading each value on its own.
"""

import keras
import ml_dtypes
import numpy as np
import pytest
from keras import ops

import keras_prune
from keras_prune import _backend
from keras_prune.integration import state
from keras_prune.integration import updater


def _pair(values, keep, dtype="float32"):
    weight = keras.Variable(np.asarray(values, dtype=dtype))
    mask = keras.Variable(np.asarray(keep, bool), trainable=False)
    return weight, mask


def _bits(variable):
    value = np.asarray(ops.convert_to_numpy(variable))
    return value.view(f"u{value.dtype.itemsize}")


KEEP = [True, False, True, False, False]


def test_exactly_sparse_weight_is_left_as_it_is():
    weight, mask = _pair([1.5, 0.0, -2.0, 0.0, 0.0], KEEP)
    before = _bits(weight).copy()
    assert updater.apply_masks([(weight, mask)]) == 0
    np.testing.assert_array_equal(_bits(weight), before)


def test_negative_zero_in_a_pruned_slot_becomes_positive_zero():
    weight, mask = _pair([1.5, -0.0, -2.0, 0.0, -0.0], KEEP)
    assert updater.apply_masks([(weight, mask)]) == 0  # no nonzero zeroed
    value = ops.convert_to_numpy(weight)
    np.testing.assert_array_equal(np.signbit(value), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(value, [1.5, 0.0, -2.0, 0.0, 0.0])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_stray_values_are_zeroed_and_counted(dtype):
    dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
    weight, mask = _pair([1.5, 3.0, -2.0, np.nan, -0.5], KEEP, dtype)
    kept = _pair([0.25, 0.0, 4.0, 0.0, 0.0], KEEP, dtype)
    # 3.0, NaN and -0.5 were nonzero in pruned slots; the second pair is
    # already exactly sparse.
    assert updater.apply_masks([(weight, mask), kept]) == 3
    value = np.asarray(ops.convert_to_numpy(weight), np.float32)
    np.testing.assert_array_equal(value, [1.5, 0.0, -2.0, 0.0, 0.0])
    assert not np.signbit(value[[1, 3, 4]]).any()


def test_nan_in_a_kept_slot_stays():
    weight, mask = _pair([np.nan, 0.0, 1.0, 0.0, 2.0], KEEP)
    assert updater.apply_masks([(weight, mask)]) == 1
    value = ops.convert_to_numpy(weight)
    assert np.isnan(value[0])
    np.testing.assert_array_equal(value[1:], [0.0, 1.0, 0.0, 0.0])


def test_read_ints_equals_reading_each():
    variables = [
        keras.Variable(7, dtype="int32", trainable=False),
        keras.Variable(2**31 - 1, dtype="int64", trainable=False),
        keras.Variable(-5, dtype="int32", trainable=False),
    ]
    assert _backend.read_ints(variables) == [7, 2**31 - 1, -5]
    assert _backend.read_ints(variables[:1]) == [7]
    assert _backend.read_ints([]) == []


@pytest.fixture(scope="module")
def pruned():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, name="first"),
            keras.layers.Dense(3, name="second"),
        ]
    )
    model = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0)
    )
    model(np.zeros((1, 4), "float32"))
    return model


def test_wrapper_steps_and_check_finite_read_each_wrapper(pruned):
    first, second = state.pruning_wrappers(pruned)
    first.pruning_step.assign(4)
    second.pruning_step.assign(9)
    assert state.wrapper_steps([first, second]) == [(first, 4), (second, 9)]
    state.check_finite(pruned)  # both counters 0
    second.nonfinite_count.assign(2)
    try:
        with pytest.raises(FloatingPointError, match="second"):
            state.check_finite(pruned)
    finally:
        second.nonfinite_count.assign(0)
