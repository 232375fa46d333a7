"""Hostile pass 9: odd inputs to the eager public functions and the CLI's
`--data` file.

`magnitude_mask` read complex backend tensors as their real part and a
bool tensor as sparsity 1; `is_pruned_m_by_n` wrapped an out-of-range
`axis` around and read a masked array's hidden values; `keras-prune prune`
dropped a lone `x_val`, picked one of two members of the same name and
ended a lying `.npy` header in "out of memory". Each case compares with a
NumPy reference or checks the exact error. No model is built here.
"""

import struct
import zipfile

import keras
import ml_dtypes
import numpy as np
import pytest
from keras import ops

import keras_prune as kp

BACKEND = keras.backend.backend()
W = np.array([[1.0, -5.0, 3.0, 2.0], [0.5, 4.0, -0.25, 6.0]], "float32")


def _reference_mask(weights, sparsity):
    """Keeps `kept_count` largest |w|, ties to the lowest flat index."""
    flat = np.abs(np.asarray(weights, np.float32)).reshape(-1)
    k = int(kp.kept_count(flat.size, sparsity))
    order = np.lexsort((np.arange(flat.size), -flat))
    mask = np.zeros(flat.size, bool)
    mask[order[:k]] = True
    return mask.reshape(np.shape(weights))


def _complex_tensor():
    values = np.array([1 + 9j, 2, 3, 4], np.complex64)
    if BACKEND == "torch":
        import torch

        return torch.tensor(values)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.constant(values)
    import jax.numpy as jnp

    return jnp.asarray(values)


def test_complex_tensor_weights_are_refused():
    """Before: `magnitude_mask` of a complex tensor dropped the imaginary
    part (|1+9j| compared as 1): `[False, False, True, True]`, where the
    magnitudes 9.06, 2, 3, 4 keep the first and last."""
    with pytest.raises(TypeError, match="must hold real numbers, got dtype"):
        kp.magnitude_mask(_complex_tensor(), 0.5)


@pytest.mark.parametrize(
    "dtype", ["float16", "bfloat16", "float64", "int32", "uint8", "bool"]
)
def test_real_tensor_weights_give_the_reference_mask(dtype):
    tensor = ops.cast(ops.convert_to_tensor(W * 10), dtype)
    host = np.asarray(ops.convert_to_numpy(tensor)).astype("float32")
    got = ops.convert_to_numpy(kp.magnitude_mask(tensor, 0.5))
    np.testing.assert_array_equal(got, _reference_mask(host, 0.5))


@pytest.mark.parametrize(
    "dtype", [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.int4]
)
def test_ml_dtypes_arrays_give_the_reference_mask(dtype):
    """Before: float8 and int4 arrays were refused as 'not real numbers'
    (only bfloat16 of the ml_dtypes types was let through)."""
    values = (W * 2).astype(dtype)
    got = kp.magnitude_mask(values, 0.5)
    np.testing.assert_array_equal(
        got, _reference_mask(values.astype("float32"), 0.5)
    )


def test_masked_array_weights_are_refused():
    """Before: the masked 2.0 was read and kept over 1.0:
    `[False, True, True]`."""
    masked = np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False])
    with pytest.raises(TypeError, match="numpy.ma.MaskedArray"):
        kp.magnitude_mask(masked, 0.5)
    with pytest.raises(TypeError, match="numpy.ma.MaskedArray"):
        kp.is_pruned_m_by_n(np.ma.array(W), (2, 4))


def _bool_tensor():
    return ops.convert_to_tensor(np.array(True))


@pytest.mark.parametrize(
    "sparsity, error, message",
    [
        ("bool tensor", TypeError, "got a tensor of dtype bool"),
        (np.complex64(0.5 + 1j), TypeError, "must be a number in"),
        (0.5 + 0j, TypeError, "must be a number in"),
        ([0.5], TypeError, "a single number"),
        (None, TypeError, "got a tensor of dtype object"),
    ],
)
def test_sparsity_that_is_not_a_real_number_is_refused(
    sparsity, error, message
):
    """Before: a bool tensor True pruned everything but one weight (sparsity
    1), `np.complex64(0.5+1j)` dropped its imaginary part, `[0.5]` was read
    as 0.5 on TensorFlow and torch (JAX: "Pred must be a scalar"), `None`
    said "got nan"."""
    if sparsity == "bool tensor":
        sparsity = _bool_tensor()
    with pytest.raises(error, match=message):
        kp.magnitude_mask(W, sparsity)


def test_real_sparsities_of_other_types_give_the_reference_mask():
    from fractions import Fraction

    for sparsity in (Fraction(1, 4), np.float16(0.25), -0.0, 1, np.array(0.5)):
        np.testing.assert_array_equal(
            kp.magnitude_mask(W, sparsity), _reference_mask(W, sparsity)
        )
    assert int(kp.kept_count(8, Fraction(1, 4))) == 6
    tensor = ops.convert_to_tensor(np.float32(0.25))
    got = ops.convert_to_numpy(
        kp.magnitude_mask(ops.convert_to_tensor(W), tensor)
    )
    np.testing.assert_array_equal(got, _reference_mask(W, 0.25))


@pytest.mark.parametrize(
    "n, error, message",
    [
        (np.array(10.5), TypeError, "dtype float64"),  # was 5
        (np.array(-4), ValueError, "got -4"),  # was 1
        (np.array(2**40), ValueError, "got 1099511627776"),  # was 2**31 - 1
        ("float tensor", TypeError, "dtype float32"),  # was 5
        ("bool tensor", TypeError, "dtype bool"),  # was 1
        ("negative tensor", ValueError, "got -4"),  # was 1
    ],
)
def test_kept_count_checks_arrays_and_tensors_like_ints(n, error, message):
    """Python ints were checked (redteam 1); 0-d arrays and eager tensors
    of the same values were not."""
    if isinstance(n, str):
        n = {
            "float tensor": lambda: ops.convert_to_tensor(np.float32(10.5)),
            "bool tensor": _bool_tensor,
            "negative tensor": lambda: ops.convert_to_tensor(np.int32(-4)),
        }[n]()
    with pytest.raises(error, match=message):
        kp.kept_count(n, 0.5)


def test_kept_count_of_int_arrays_and_tensors():
    assert int(kp.kept_count(np.array(10), 0.25)) == 8
    assert int(kp.kept_count(ops.convert_to_tensor(np.int32(7)), 0.5)) == 4
    got = kp.kept_count(np.array([10, 20], np.int64), 0.5)
    np.testing.assert_array_equal(ops.convert_to_numpy(got), [5, 10])


@pytest.mark.parametrize("axis", [2, -3, (0, 2), True, (0.0,)])
def test_is_pruned_m_by_n_axis_out_of_range_is_refused(axis):
    """Before: `int(axis) % rank` wrapped around: axis 2 of a (4, 2)
    weight grouped along axis 0, axis -3 along axis 1."""
    with pytest.raises(ValueError, match="`axis`"):
        kp.is_pruned_m_by_n(W.T, (2, 4), axis=axis)


def test_is_pruned_m_by_n_valid_axes_and_last_channel():
    two_four = np.array([[1.0, 0, 0, 2], [0, 0, 3, 4]]).T  # (4, 2)
    assert kp.is_pruned_m_by_n(two_four, (2, 4), axis=0)
    assert kp.is_pruned_m_by_n(two_four, (2, 4), axis=-2)
    # Along axis 1 the rows are [1, 0], [0, 0], [0, 3], [2, 4].
    assert kp.is_pruned_m_by_n(two_four, (2, 4), axis=1)
    assert not kp.is_pruned_m_by_n(two_four, (3, 4), axis=1)
    assert not kp.is_pruned_m_by_n(two_four, (3, 4), axis=(0,))
    with pytest.raises(ValueError, match="last_channel must be"):
        kp.is_pruned_m_by_n(two_four, (2, 4), last_channel=None)


def test_is_pruned_m_by_n_with_a_huge_n_allocates_nothing_padded():
    """Before: groups were padded to `n` in a (rows, groups * n) copy:
    `(1, 2**40)` on a (4, 2) weight raised MemoryError (2 TiB)."""
    assert kp.is_pruned_m_by_n(np.ones((4, 2)), (1, 2**40))
    assert not kp.is_pruned_m_by_n(np.ones((4, 2)), (2**40 - 3, 2**40))


def test_is_pruned_m_by_n_matches_a_loop_over_groups():
    rng = np.random.default_rng(3)
    for length, (m, n) in [(7, (2, 4)), (8, (2, 4)), (5, (1, 2)), (3, (3, 8))]:
        for _ in range(20):
            w = rng.normal(size=(length, 3)) * (rng.random((length, 3)) < 0.5)
            expected = all(
                np.count_nonzero(w[i : i + n, c]) <= n - m
                for c in range(3)
                for i in range(0, length, n)
            )
            assert kp.is_pruned_m_by_n(w, (m, n)) == expected


# ------------------------------------------------ keras-prune prune --data


def _npy(shape, data, descr="<f4"):
    """A `.npy` member whose header claims `shape`, holding `data`."""
    header = (
        f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    )
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", len(header))
        + header.encode()
        + data
    )


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.fixture
def cli_args(tmp_path):
    """The `prune` arguments up to `--data`: the data is read before the
    model, so any regular file serves as the model here."""
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read")
    out = tmp_path / "out.keras"
    return lambda data: [
        "prune",
        model,
        "--data",
        data,
        "--loss",
        "mse",
        "-o",
        out,
    ]


X4 = _npy((4, 3), bytes(48))
Y4 = _npy((4,), bytes(16))


def test_cli_data_with_a_lone_validation_array_is_refused(
    tmp_path, cli_args, capsys
):
    """Before: `x_val` without `y_val` was dropped silently: the model
    trained without the validation the user asked for."""
    from conftest import cli_error

    path = _zip(
        tmp_path / "d.npz",
        [("x.npy", X4), ("y.npy", Y4), ("x_val.npy", X4)],
    )
    line = cli_error(cli_args(path), capsys)
    assert "holds 'x_val' but not its pair 'y_val'" in line


def test_cli_data_with_a_member_named_twice_is_refused(
    tmp_path, cli_args, capsys
):
    """Before: NumPy read the last 'x.npy' of two, silently."""
    from conftest import cli_error

    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _zip(
            tmp_path / "d.npz",
            [("x.npy", X4), ("y.npy", Y4), ("x.npy", _npy((2, 3), bytes(24)))],
        )
    line = cli_error(cli_args(path), capsys)
    assert "holds the array(s) ['x'] more than once" in line


def test_cli_data_whose_header_claims_more_than_it_holds(
    tmp_path, cli_args, capsys
):
    """Before: NumPy allocated the claimed 824 GB first: 'error: out of
    memory' (exit 1), naming neither the file nor the array."""
    from conftest import cli_error

    path = _zip(
        tmp_path / "d.npz",
        [("x.npy", _npy((2**36, 3), bytes(48))), ("y.npy", Y4)],
    )
    line = cli_error(cli_args(path), capsys)
    assert "array 'x.npy' claims shape (68719476736, 3) of float32" in line
    assert "(824,633,720,832 bytes) but holds 48 bytes" in line


@pytest.mark.parametrize(
    "name, x", [("x", np.full((4, 3), 1 + 2j)), ("x", np.full((4, 3), "a"))]
)
def test_cli_data_that_is_not_numbers_is_refused(
    tmp_path, cli_args, capsys, name, x
):
    """Before: complex samples trained on their real part (Keras' cast,
    exit 0, a ComplexWarning); strings ended in 'Invalid dtype: str32'."""
    from conftest import cli_error

    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.zeros((4, 2), "float32"))
    line = cli_error(cli_args(path), capsys)
    assert f"'{name}' has dtype {x.dtype.name}; samples and targets" in line


def test_cli_data_that_is_not_an_npz_is_a_user_error(
    tmp_path, cli_args, capsys
):
    """Before: `BadZipFile` and `EOFError` left the loader as internal
    errors (exit 1, 'set KERAS_PRUNE_TRACEBACK=1')."""
    from conftest import cli_error

    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((4, 3), "float32"), y=np.zeros(4, "float32"))
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[data.index(b"\x93NUMPY") + 70] ^= 0xFF
    cases = {
        "empty.npz": b"",
        "half.npz": data[: len(data) // 2],
        "crc.npz": bytes(flipped),
        "plain.npz": _npy((4,), bytes(16)),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        line = cli_error(cli_args(path), capsys)
        assert f"cannot read --data '{path}'" in line, (name, line)
        assert "BadZipFile" in line, (name, line)


# ------------------------------------------------------------------ shrink


def _mlp():
    """A built 6-8-8-3 Functional MLP with weights from NumPy."""
    rng = np.random.default_rng(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="a")(inp)
    h = keras.layers.Dense(8, activation="relu", name="b")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="c")(h))
    for layer in model.layers[1:]:
        layer.kernel.assign(rng.normal(size=layer.kernel.shape))
        layer.bias.assign(rng.normal(size=layer.bias.shape))
    return model


@pytest.fixture(scope="module")
def mlp():
    return _mlp()


@pytest.mark.parametrize("ratio", ["0.5", True, np.array([0.5]), 0.5 + 0j])
def test_shrink_ratio_of_a_wrong_type_is_refused(mlp, ratio):
    """Before: `ratio="0.5"` removed half of every group (`float("0.5")`),
    `True` said "got 1.0", an array or complex gave NumPy's own error."""
    with pytest.raises(TypeError, match="ratio must be a number in"):
        kp.shrink(mlp, ratio=ratio)


def test_shrink_of_nan_weights_is_refused_by_name(mlp):
    """Before: NaN scores sorted last, so the diverged layer's NaN units
    were kept and half of its finite ones removed, silently."""
    model = keras.models.clone_model(mlp)
    model.set_weights(mlp.get_weights())
    kernel = np.asarray(ops.convert_to_numpy(model.get_layer("a").kernel))
    kernel[:, 2] = np.nan
    model.get_layer("a").kernel.assign(kernel)
    with pytest.raises(ValueError, match="importance of a/kernel holds 1 NaN"):
        kp.shrink(model, ratio=0.5)
    with pytest.raises(ValueError, match="NaN or Inf score"):
        kp.shrink(mlp, ratio=0.5, importance=lambda v, axis: v.sum(0) * np.inf)


def test_shrink_ratio_keeps_the_highest_l2_units(mlp):
    """The reference: each hidden layer keeps the 4 units of largest
    kernel-column plus bias L2 (squares summed in float64)."""
    small = kp.shrink(mlp, ratio=np.float32(0.5))
    assert [tuple(lay.kernel.shape) for lay in small.layers[1:]] == [
        (6, 4),
        (4, 4),
        (4, 3),
    ]
    for name in ("a", "b"):
        layer = mlp.get_layer(name)
        kernel = np.asarray(ops.convert_to_numpy(layer.kernel), np.float64)
        bias = np.asarray(ops.convert_to_numpy(layer.bias), np.float64)
        score = (kernel**2).sum(0) + bias**2
        kept = np.sort(np.argsort(score, kind="stable")[4:])
        np.testing.assert_array_equal(
            ops.convert_to_numpy(small.get_layer(name).bias),
            ops.convert_to_numpy(layer.bias)[kept],
        )


def test_dependency_graph_of_a_non_model_names_it():
    """Before: `DependencyGraph(None)` raised AttributeError
    '_flatten_layers'."""
    with pytest.raises(ValueError, match="got NoneType"):
        kp.DependencyGraph(None)


@pytest.mark.skipif(BACKEND != "torch", reason="torch meta tensors")
def test_torch_meta_tensor_weights_are_refused():
    """Before: Keras copied the meta tensor to the CPU as uninitialised
    memory and `magnitude_mask` returned a mask of whatever it held."""
    import torch

    with pytest.raises(ValueError, match="torch meta tensor"):
        kp.magnitude_mask(torch.empty((4, 4), device="meta"), 0.5)


def test_format_report_names_rows_of_the_wrong_form(mlp):
    """Before: `format_report(None)` raised "'NoneType' object is not
    iterable", a row without keys "'int' object is not subscriptable"."""
    for rows in (None, [{"layer": 1}], "rows"):
        with pytest.raises(TypeError, match="format_report takes the rows"):
            kp.format_report(rows)
    text = kp.format_report(kp.sparsity_report(mlp))
    assert text.splitlines()[2].split()[:6] == [
        "a",
        "kernel",
        "(6,",
        "8)",
        "48",
        "0",
    ]


@pytest.mark.parametrize("missing", ["null", "absent"])
def test_wrapper_config_without_its_schedule_is_refused(missing):
    # A saved wrapper config always holds its schedule; a file where it is
    # null or gone loaded with the default ConstantSparsity(0.5, 0).
    wrapper = kp.prune_low_magnitude(
        keras.layers.Dense(3),
        pruning_schedule=kp.PolynomialDecay(0.1, 0.9, 0, 10),
    )
    config = wrapper.get_config()
    assert config["pruning_schedule"] is not None
    if missing == "null":
        config["pruning_schedule"] = None
    else:
        del config["pruning_schedule"]
    with pytest.raises(ValueError, match="has no 'pruning_schedule'"):
        type(wrapper).from_config(config)
    # The config as saved still loads, with its own schedule.
    loaded = type(wrapper).from_config(wrapper.get_config())
    assert loaded.pruning_schedule.get_config() == (
        wrapper.pruning_schedule.get_config()
    )


def test_compress_array_of_a_tensor_numpy_cannot_hold_names_it():
    if keras.backend.backend() != "torch":
        pytest.skip("torch float8 tensors")
    import torch

    tensor = torch.zeros(4, dtype=torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="float8_e4m3fn as a NumPy array"):
        kp.compress_array(tensor)
