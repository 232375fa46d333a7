"""Magnitude masks: tfmot's kept count, exact to the weight, on every backend.

Reference: /work/shared/reference/tfmot-semantics.md §2.1 and §8 items
14-16. Unlike tfmot, which keeps every weight tied with the threshold, the
mask keeps exactly `kept_count` weights and breaks ties by lowest flat index.
Every mask is compared with a pure NumPy reference (a stable sort); equality
with the reference on each backend implies identical masks across backends.
"""

import keras
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import keras_prune
from keras_prune.core import masks

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Overrides conftest's fixture for this module: these tests build no
    # layers, and clear_session's gc.collect() costs ~0.5 s per test once
    # TensorFlow and torch are both imported.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------------------
# The NumPy reference.


def reference_kept_count(n, sparsity):
    """tfmot: max(round_half_even(float32(n) * (1 - float32(s))), 1)."""
    one = np.float32(1.0)
    k = np.round(np.float32(n) * (one - np.float32(sparsity)))
    return int(max(k, one))


def reference_mask(weights, sparsity):
    """Keeps the k largest float32 |w|; ties go to the lowest flat index."""
    magnitude = np.abs(np.asarray(weights, dtype=np.float32)).ravel()
    k = reference_kept_count(magnitude.size, sparsity)
    order = np.argsort(-magnitude, kind="stable")
    mask = np.zeros(magnitude.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(np.shape(weights))


def _compiled(fn):
    """`fn` compiled the way the train step is on the current backend."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    return fn


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _assert_valid_mask(weights, sparsity, mask):
    """The contract, independently of the reference."""
    magnitude = np.abs(np.asarray(weights, dtype=np.float32))
    assert mask.shape == magnitude.shape and mask.dtype == np.bool_
    assert int(mask.sum()) == reference_kept_count(magnitude.size, sparsity)
    if mask.all() or not mask.any():
        return
    kept, pruned = magnitude[mask], magnitude[~mask]
    assert kept.min() >= pruned.max()
    # Among ties with the smallest kept magnitude, the kept ones come first.
    tied = np.flatnonzero(magnitude.ravel() == kept.min())
    tied_kept = mask.ravel()[tied]
    assert not np.any(tied_kept[1:] & ~tied_kept[:-1])


# ---------------------------------------------------------------------------
# kept_count (§8 item 14).


@pytest.mark.parametrize(
    "n, sparsity, expected",
    [
        (10, 0.25, 8),  # 7.5 -> 8 (half to even)
        (10, 0.35, 6),  # 6.5 -> 6 in float32 arithmetic
        (10, 0.45, 6),  # 5.5 -> 6
        (10, 0.15, 8),  # 8.5 -> 8
        (10, 0.05, 10),  # 9.5 -> 10
        (5, 0.5, 2),  # 2.5 -> 2
        (7, 0.5, 4),  # 3.5 -> 4
        (3, 0.5, 2),  # 1.5 -> 2
        (1, 0.5, 1),  # 0.5 -> 0 -> at least 1
        (50, 0.99, 1),
        (100, 0.9999, 1),
        (10, 0.0, 10),
        (10, 1.0, 1),
        (2**22, 0.5, 2**21),
        (2**22, 0.8, 838861),
    ],
)
def test_kept_count_vectors(n, sparsity, expected):
    k = keras_prune.kept_count(n, sparsity)
    assert keras.backend.standardize_dtype(k.dtype) == "int32"
    assert int(_np(k)) == expected
    assert reference_kept_count(n, sparsity) == expected


def test_kept_count_matches_reference_elementwise():
    rng = np.random.default_rng(3)
    n = rng.integers(1, 5_000_000, size=20000)
    n[:500] = rng.integers(1, 20, size=500)
    s = rng.uniform(0, 1, size=n.size).astype(np.float32)
    s[:1000] = np.round(s[:1000], 2)  # many exact .5 cases
    expected = [reference_kept_count(a, b) for a, b in zip(n, s)]
    k = keras_prune.kept_count(
        ops.convert_to_tensor(n, "int32"), ops.convert_to_tensor(s)
    )
    np.testing.assert_array_equal(_np(k), expected)
    k = _compiled(keras_prune.kept_count)(
        ops.convert_to_tensor(n, "int32"), ops.convert_to_tensor(s)
    )
    np.testing.assert_array_equal(_np(k), expected)


# ---------------------------------------------------------------------------
# Exact small cases.


@pytest.mark.parametrize(
    "weights, sparsity, expected",
    [
        # Ties broken by lowest flat index (tfmot keeps all ties).
        ([3, 1, 1, 1, 1, 3], 0.5, [1, 1, 0, 0, 0, 1]),
        # k = 3: 4, 3 and the first 2.
        ([1, 2, 2, 2, 3, 4], 0.5, [0, 1, 0, 0, 1, 1]),
        (list(range(1, 11)), 0.2, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]),
        # k = 4: 1, 2 and the first two zeros.
        ([0, 0, 0, 0, 0, 0, 1, 2], 0.5, [1, 1, 0, 0, 0, 0, 1, 1]),
        ([0, 0, 0, 0, 0, 1, 2, 3], 0.875, [0, 0, 0, 0, 0, 0, 0, 1]),
        ([7] * 8, 0.75, [1, 1, 0, 0, 0, 0, 0, 0]),
        # Negative values count by magnitude.
        ([-5, 1, -0.5, 4, -3, 2], 0.5, [1, 0, 0, 1, 1, 0]),
        ([-1, 1, -1, 1], 0.5, [1, 1, 0, 0]),
        # -0.0 and 0.0 are the same magnitude.
        ([-0.0, 0.0, 1.0], 0.5, [1, 0, 1]),
        ([0.0, -0.0, 0.0, -0.0], 0.5, [1, 1, 0, 0]),
        # Subnormals order by value.
        ([2.0**-149, 0, 3 * 2.0**-149, -2 * 2.0**-149], 0.5, [0, 0, 1, 1]),
        ([3.4e38, -3.4e38, 1.0, 1e-38], 0.5, [1, 1, 0, 0]),
        # Sparsity 0 keeps all, sparsity 1 keeps the single largest.
        ([1, 2, 3], 0.0, [1, 1, 1]),
        ([1, 3, 3], 1.0, [0, 1, 0]),
        ([5.0], 0.9, [1]),
        # Values that tie only after the float32 cast: k = 1, lowest index.
        ([1.0, 1.0 + 1e-12, 0.5], 0.9, [1, 0, 0]),
    ],
)
def test_exact_masks(weights, sparsity, expected):
    weights = np.array(weights, dtype=np.float64)
    expected = np.array(expected, dtype=bool)
    np.testing.assert_array_equal(reference_mask(weights, sparsity), expected)
    mask = keras_prune.magnitude_mask(weights, sparsity)
    assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, expected)
    mask = keras_prune.magnitude_mask(
        ops.convert_to_tensor(weights.astype(np.float32)), sparsity
    )
    np.testing.assert_array_equal(_np(mask), expected)


def test_threshold_is_kth_largest_magnitude():
    # §8 item 15: arange(1..10), s=0.2 -> threshold 3.0.
    weights = np.arange(1, 11, dtype=np.float32)
    bits = masks.magnitude_bits(weights)
    mask, threshold, n_bad = masks.mask_from_bits(bits, 0.2, (10,))
    assert float(_np(threshold)) == 3.0
    assert int(_np(n_bad)) == 0
    np.testing.assert_array_equal(_np(mask), np.arange(10) >= 2)
    # With ties at the threshold: [0]*6 + [1, 2] at 0.5 -> threshold 0.
    weights = np.array([0, 0, 0, 0, 0, 0, 1, 2], dtype=np.float32)
    _, threshold, _ = masks.mask_from_bits(
        masks.magnitude_bits(weights), 0.5, (8,)
    )
    assert float(_np(threshold)) == 0.0


def test_mostly_zero_tensor_is_pruned_to_exactly_the_target():
    # tfmot keeps every zero tied with a zero threshold: an all-ones mask.
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(1000).astype(np.float32)
    weights[rng.permutation(1000)[:750]] = 0.0
    mask = keras_prune.magnitude_mask(weights, 0.5)
    assert int(mask.sum()) == 500
    assert np.all(mask[weights != 0])  # all 250 non-zeros are kept
    zeros_kept = np.flatnonzero(mask & (weights == 0))
    np.testing.assert_array_equal(
        zeros_kept, np.flatnonzero(weights == 0)[:250]
    )
    np.testing.assert_array_equal(mask, reference_mask(weights, 0.5))


@pytest.mark.parametrize("shape", [(1000,), (128, 64), (3, 3, 16, 32)])
def test_already_sparse_tensor_keeps_exactly_its_nonzeros(shape):
    rng = np.random.default_rng(1)
    weights = rng.standard_normal(shape).astype(np.float32)
    flat = weights.reshape(-1)
    flat[rng.permutation(flat.size)[: flat.size // 2]] = 0.0
    expected = weights != 0
    np.testing.assert_array_equal(
        keras_prune.magnitude_mask(weights, 0.5), expected
    )
    mask = keras_prune.magnitude_mask(ops.convert_to_tensor(weights), 0.5)
    np.testing.assert_array_equal(_np(mask), expected)


# ---------------------------------------------------------------------------
# Input and output types.


def test_numpy_in_numpy_out():
    weights = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    for dtype in (np.float64, np.float32, np.float16):
        mask = keras_prune.magnitude_mask(weights.astype(dtype), 0.3)
        assert type(mask) is np.ndarray
        assert mask.dtype == np.bool_ and mask.shape == (2, 3, 4, 5)
        np.testing.assert_array_equal(
            mask, reference_mask(weights.astype(dtype), 0.3)
        )


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_tensor_in_tensor_out(dtype):
    weights = (
        np.random.default_rng(0).standard_normal((5, 1, 7)).astype(np.float32)
    )
    tensor = ops.convert_to_tensor(weights, dtype)
    mask = keras_prune.magnitude_mask(tensor, 0.4)
    assert ops.is_tensor(mask) and not isinstance(mask, np.ndarray)
    assert keras.backend.standardize_dtype(mask.dtype) == "bool"
    assert tuple(mask.shape) == (5, 1, 7)
    np.testing.assert_array_equal(
        _np(mask), reference_mask(_np(ops.cast(tensor, "float32")), 0.4)
    )


def test_variable_input():
    weights = (
        np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32)
    )
    variable = keras.Variable(weights)
    mask = keras_prune.magnitude_mask(variable, 0.5)
    np.testing.assert_array_equal(_np(mask), reference_mask(weights, 0.5))


@pytest.mark.parametrize(
    "sparsity",
    [0.5, np.float32(0.5), np.float64(0.5), 1, 0],
    ids=["float", "np.float32", "np.float64", "int1", "int0"],
)
def test_sparsity_types(sparsity):
    weights = np.array([4.0, -1.0, 3.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(
        keras_prune.magnitude_mask(weights, sparsity),
        reference_mask(weights, float(sparsity)),
    )


def test_sparsity_as_tensor():
    weights = np.arange(1, 1001, dtype=np.float32)[::-1].copy()
    mask = keras_prune.magnitude_mask(
        ops.convert_to_tensor(weights), ops.convert_to_tensor(0.37)
    )
    np.testing.assert_array_equal(_np(mask), reference_mask(weights, 0.37))


def test_python_list_input_returns_numpy():
    mask = keras_prune.magnitude_mask([[1.0, -4.0], [3.0, 2.0]], 0.5)
    assert type(mask) is np.ndarray
    np.testing.assert_array_equal(mask, [[False, True], [True, False]])


# ---------------------------------------------------------------------------
# Bit-identical to the reference on random tensors.

# Few distinct sizes: on JAX every new size compiles each eager op again.
SHAPES = [
    (1,),
    (7,),
    (1000,),
    (12345,),
    (100000,),
    (5, 1, 7),
    (128, 64),
    (3, 3, 16, 32),
    (2, 3, 4, 5),
    (1, 1, 256, 32),
]


def _random_weights(rng, shape, kind):
    size = int(np.prod(shape))
    if kind == "normal":
        values = rng.standard_normal(size)
    elif kind == "few_values":  # many exact duplicates, both signs
        values = rng.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], size)
    elif kind == "mostly_zero":
        values = rng.standard_normal(size) * (rng.uniform(size=size) < 0.2)
    elif kind == "quantized":  # int8-like weights
        values = rng.integers(-127, 128, size) / 64.0
    elif kind == "wide_range":
        values = rng.standard_normal(size) * 10.0 ** rng.integers(-40, 38, size)
    else:
        raise ValueError(kind)
    return values.reshape(shape).astype(np.float32)


KINDS = ["normal", "few_values", "mostly_zero", "quantized", "wide_range"]
SPARSITIES = [0.0, 0.05, 0.25, 0.5, 0.8, 0.95, 0.999, 1.0]


def _random_cases(count, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        kind = KINDS[i % len(KINDS)]
        if i % 3 == 0:
            sparsity = float(rng.uniform())
        else:
            sparsity = SPARSITIES[i % len(SPARSITIES)]
        cases.append(
            pytest.param(
                shape,
                kind,
                sparsity,
                seed * 1000 + i,
                id=f"{shape}-{kind}-{sparsity:.4g}",
            )
        )
    return cases


@pytest.mark.parametrize("shape, kind, sparsity, seed", _random_cases(30, 7))
def test_random_tensors_match_reference(shape, kind, sparsity, seed):
    rng = np.random.default_rng(seed)
    weights = _random_weights(rng, shape, kind)
    expected = reference_mask(weights, sparsity)
    mask = keras_prune.magnitude_mask(weights, sparsity)
    np.testing.assert_array_equal(mask, expected)
    _assert_valid_mask(weights, sparsity, mask)
    tensor_mask = keras_prune.magnitude_mask(
        ops.convert_to_tensor(weights), sparsity
    )
    np.testing.assert_array_equal(_np(tensor_mask), expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", [(1000,), (3, 3, 16, 32), (128, 64)])
def test_low_precision_inputs_match_reference(dtype, shape):
    # Low-precision weights have many exact ties; the mask works on their
    # (exact) float32 values.
    rng = np.random.default_rng(11)
    weights = rng.standard_normal(shape).astype(np.float32) * 0.05
    low = weights.astype(
        np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    )
    as_float32 = low.astype(np.float32)
    assert np.unique(as_float32).size < as_float32.size  # ties do occur
    for sparsity in (0.3, 0.5, 0.9):
        expected = reference_mask(as_float32, sparsity)
        tensor = ops.convert_to_tensor(as_float32, dtype)
        np.testing.assert_array_equal(
            _np(keras_prune.magnitude_mask(tensor, sparsity)), expected
        )
        if dtype == "float16":
            np.testing.assert_array_equal(
                keras_prune.magnitude_mask(low, sparsity), expected
            )


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
    ],
)
@given(
    weights=hnp.arrays(
        np.float32,
        st.sampled_from([(1,), (3,), (7,), (2, 4), (5, 1, 7), (2, 3, 4, 5)]),
        elements=st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0]),
            st.floats(-1e6, 1e6, width=32, allow_subnormal=True),
        ),
    ),
    sparsity=st.one_of(
        st.floats(0.0, 1.0), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
    ),
)
def test_property_matches_reference(weights, sparsity):
    mask = keras_prune.magnitude_mask(weights, sparsity)
    _assert_valid_mask(weights, sparsity, mask)
    np.testing.assert_array_equal(mask, reference_mask(weights, sparsity))


# ---------------------------------------------------------------------------
# Inside compiled code.


@pytest.mark.parametrize(
    "shape, kind",
    [((3, 3, 16, 32), "few_values"), ((5000,), "mostly_zero")],
)
def test_compiled_mask_matches_reference(shape, kind):
    rng = np.random.default_rng(5)
    compiled = _compiled(keras_prune.magnitude_mask)
    for i, sparsity in enumerate((0.0, 0.3, 0.5, 0.6, 0.97, 1.0)):
        weights = _random_weights(rng, shape, kind if i % 2 else "normal")
        mask = compiled(
            ops.convert_to_tensor(weights), ops.convert_to_tensor(sparsity)
        )
        np.testing.assert_array_equal(
            _np(mask), reference_mask(weights, sparsity)
        )


def test_compiled_mask_with_constant_sparsity():
    weights = _random_weights(np.random.default_rng(6), (5000,), "quantized")
    compiled = _compiled(lambda w: keras_prune.magnitude_mask(w, 0.6))
    np.testing.assert_array_equal(
        _np(compiled(ops.convert_to_tensor(weights))),
        reference_mask(weights, 0.6),
    )


def test_compiled_mask_from_bits_threshold_and_nonfinite_count():
    weights = np.array(
        [0.5, np.nan, -3.0, np.inf, 2.0, -np.inf, 1.0, 0.0], dtype=np.float32
    )

    def fn(w):
        bits = masks.magnitude_bits(w)
        return masks.mask_from_bits(bits, 0.5, ops.shape(w))

    compiled = _compiled(fn)
    _, _, n_bad = compiled(ops.convert_to_tensor(weights))
    assert int(_np(n_bad)) == 3
    finite = np.array(
        [0.5, -3.0, 2.0, 1.0, 0.0, -0.25, 1.0, 0.5], dtype=np.float32
    )
    mask, threshold, n_bad = compiled(ops.convert_to_tensor(finite))
    assert int(_np(n_bad)) == 0
    assert float(_np(threshold)) == 1.0
    np.testing.assert_array_equal(_np(mask), reference_mask(finite, 0.5))


# ---------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
    "bad",
    [np.nan, np.inf, -np.inf, -np.nan],
    ids=["nan", "inf", "-inf", "-nan"],
)
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
def test_nonfinite_weights_raise(bad, as_tensor):
    weights = np.array([[1.0, 2.0], [bad, 4.0]], dtype=np.float32)
    if as_tensor:
        weights = ops.convert_to_tensor(weights)
    with pytest.raises(ValueError, match=r"1 NaN or Inf"):
        keras_prune.magnitude_mask(weights, 0.5)


def test_many_nonfinite_weights_counted():
    weights = np.full(1000, np.nan, dtype=np.float32)
    weights[:600] = 1.0
    weights[-5:] = -np.inf
    with pytest.raises(ValueError, match=r"400 NaN or Inf"):
        keras_prune.magnitude_mask(weights, 0.5)


@pytest.mark.parametrize("sparsity", [-0.1, 1.1, 2, -1, float("nan")])
def test_sparsity_out_of_range_raises(sparsity):
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\]"):
        keras_prune.magnitude_mask(np.ones(4, dtype=np.float32), sparsity)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 2, 2)])
def test_empty_tensor_raises(shape):
    with pytest.raises(ValueError, match="empty"):
        keras_prune.magnitude_mask(np.zeros(shape, dtype=np.float32), 0.5)
    with pytest.raises(ValueError, match="empty"):
        keras_prune.magnitude_mask(
            ops.convert_to_tensor(np.zeros(shape, dtype=np.float32)), 0.5
        )


# ---------------------------------------------------------------------------
# A large tensor.


@pytest.mark.parametrize(
    "sparsity, kind", [(0.8, "normal"), (0.5, "few_values")]
)
def test_large_tensor_exact(sparsity, kind):
    n = 2**22
    rng = np.random.default_rng(2)
    weights = _random_weights(rng, (n,), kind).reshape(1024, 4096)
    k = reference_kept_count(n, sparsity)
    magnitude = np.abs(weights).ravel()
    kth_largest = np.partition(magnitude, n - k)[n - k]

    mask, threshold, n_bad = masks.mask_from_bits(
        masks.magnitude_bits(ops.convert_to_tensor(weights)),
        sparsity,
        (1024, 4096),
    )
    mask = _np(mask)
    assert int(_np(n_bad)) == 0
    assert float(_np(threshold)) == float(kth_largest)
    assert int(mask.sum()) == k
    assert magnitude[mask.ravel()].min() == kth_largest
    assert magnitude[~mask.ravel()].max() <= kth_largest
    np.testing.assert_array_equal(mask, reference_mask(weights, sparsity))


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, ml_dtypes.bfloat16]
)
@pytest.mark.parametrize("special", [None, np.nan, np.inf, -np.inf])
def test_zero_where_not_is_where_bit_for_bit(dtype, special):
    rng = np.random.default_rng(3)
    value = rng.standard_normal((37, 19)).astype(dtype)
    value[0, :4] = [-0.0, 0.0, -1.0, 2.0]
    mask = rng.random(value.shape) < 0.4
    mask[0, :4] = [False, False, False, True]
    if special is not None:
        value[1, :2] = special
        mask[1, :2] = [False, True]
    got = masks.zero_where_not(value, mask)
    want = np.where(mask, value, np.zeros_like(value))
    assert got.dtype == value.dtype
    # Same bits: +0.0 (never -0.0) wherever the mask is False, NaN kept.
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[value.dtype.itemsize]
    np.testing.assert_array_equal(got.view(bits), want.view(bits))
    assert not np.signbit(got[~mask]).any()


@pytest.mark.parametrize(
    "sparsity", [float("nan"), float("-inf"), float("inf"), 1.5, -0.25]
)
def test_kept_count_refuses_nan_and_out_of_range(sparsity):
    # Before: kept_count(10, nan) was 0 and kept_count(10, -inf) 2**31 - 1.
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\]"):
        keras_prune.kept_count(10, sparsity)
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\]"):
        keras_prune.kept_count(10, np.float32(sparsity))
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\]"):
        keras_prune.kept_count(
            10, keras.ops.convert_to_tensor(sparsity, "float32")
        )


@pytest.mark.parametrize("sparsity", [1.5, float("nan")])
def test_magnitude_mask_refuses_a_bad_tensor_sparsity(sparsity):
    w = np.arange(1.0, 9.0, dtype="float32")
    tensor = keras.ops.convert_to_tensor(sparsity, "float32")
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\]"):
        keras_prune.magnitude_mask(w, tensor)
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\]"):
        keras_prune.magnitude_mask(keras.ops.convert_to_tensor(w), tensor)
    # Valid tensor sparsities still work, with the exact count.
    mask = keras_prune.magnitude_mask(
        w, keras.ops.convert_to_tensor(0.25, "float32")
    )
    assert (
        np.asarray(ops.convert_to_numpy(mask)).tolist()
        == [False, False] + [True] * 6
    )
