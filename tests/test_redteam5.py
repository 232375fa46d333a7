"""Regression tests of the fifth hostile pass.

`.keras` files of pruned models whose saved pruning state lies (Keras'
`assign` cast a mask of 0.5 to True and a step of 2**32 + 3 to 3), schedule
configs naming two classes, odd values given to `magnitude_mask`, and the
messages of `load_compressed` and of the CLI for such files.

One tiny pruned model is saved once per module; each case edits a copy of
its `model.weights.h5` or `config.json` and loads it.
"""

import io
import json
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.state import pruning_wrappers

BACKEND = keras.backend.backend()
X = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
# The first wrapper's own variables in the weights file: pruning_step,
# kernel_mask, kernel_threshold, nonfinite_count.
OWN = "layers/prune_low_magnitude/vars/"
KERNEL = "layers/prune_low_magnitude/layer/vars/0"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`(path, predictions, masks)` of a pruned 4-3-2 model at step 1."""
    inp = keras.Input((4,))
    out = keras.layers.Dense(2, name="d2")(
        keras.layers.Dense(3, name="d1")(inp)
    )
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in model.weights]
    )
    pruned = kp.prune_once(model, 0.5)
    for w in pruning_wrappers(pruned):
        w.pruning_step.assign(1)
    path = tmp_path_factory.mktemp("rt5") / "pruned.keras"
    pruned.save(path)
    masks = [
        keras.ops.convert_to_numpy(w.masks[0]) for w in pruning_wrappers(pruned)
    ]
    return path, keras.ops.convert_to_numpy(pruned(X)), masks


def _edit(src, dst, weights=None, config=None):
    """Copy of the .keras file `src` at `dst`, its weights file edited by
    `weights(h5file)` and its config by `config(dict)`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "model.weights.h5" and weights:
                buf = io.BytesIO(data)
                with h5py.File(buf, "r+") as f:
                    weights(f)
                data = buf.getvalue()
            if info.filename == "config.json" and config:
                conf = json.loads(data)
                config(conf)
                data = json.dumps(conf).encode()
            zout.writestr(info.filename, data)
    return dst


def _set(key, value):
    def edit(f):
        del f[key]
        f.create_dataset(key, data=value)

    return edit


LYING_STATE = [
    # (variable, stored value, what the message says); before -> loaded as
    ("1", np.full((4, 3), 0.5, np.float32), "other than 0 and 1"),  # True
    ("1", np.full((4, 3), 2, np.uint8), "other than 0 and 1"),  # True
    ("1", np.full((4, 3), np.nan, np.float32), "other than 0 and 1"),  # True
    ("1", np.full((4, 3), b"1", "S1"), "expected bool"),  # True
    ("0", np.int32(-5), "outside [0, 2**31 - 1]"),  # -5
    ("0", np.int64(2**40), "outside [0, 2**31 - 1]"),  # 0
    ("0", np.int64(2**32 + 3), "outside [0, 2**31 - 1]"),  # 3
    ("0", np.float32(3.7), "expected an integer"),  # 3
    ("0", np.float32(np.nan), "expected an integer"),  # -2**31
    ("0", np.int32([1, 2]), "expected a scalar"),  # refused: Keras' shape
    ("3", np.int32(-1), "outside [0, 2**31 - 1]"),  # -1
    ("2", np.bytes_(b"ab"), "expected a float32"),  # refused: NumPy's
    ("2", np.float64(1e300), "beyond float32's range"),  # inf
]


@pytest.mark.parametrize("key, value, message", LYING_STATE)
def test_lying_pruning_state_is_refused_by_name(
    saved, tmp_path, key, value, message
):
    """Before: each loaded silently as another value (the comment in
    LYING_STATE), except two refused with Keras' or NumPy's messages that
    named no variable ("could not convert string to float")."""
    path = _edit(saved[0], tmp_path / "m.keras", weights=_set(OWN + key, value))
    variable = {
        "0": "pruning_step",
        "1": "kernel_mask",
        "2": "kernel_threshold",
        "3": "nonfinite_count",
    }[key]
    with pytest.raises(ValueError) as info:
        keras.saving.load_model(path)
    text = str(info.value)
    assert f"pruning state of layer 'd1': its saved `{variable}`" in text
    assert message in text


@pytest.mark.parametrize(
    "key, value",
    [
        ("1", "as uint8"),  # a 0/1 mask in another dtype
        ("0", np.int64(7)),  # an int64 step within int32
        ("3", np.uint8(0)),
        (KERNEL, "pruned nonzero"),  # a state training leaves in memory
    ],
)
def test_valid_state_in_other_dtypes_loads_exactly(saved, tmp_path, key, value):
    path, expected, masks = saved

    def edit(f):
        target = key if key == KERNEL else OWN + key
        if isinstance(value, str):
            stored = np.asarray(f[target])
            new = (
                stored.astype(np.uint8)
                if value == "as uint8"
                else np.where(masks[0], stored, np.float32(7.0))
            )
        else:
            new = value
        _set(target, new)(f)

    model = keras.saving.load_model(
        _edit(path, tmp_path / "m.keras", weights=edit)
    )
    wrapper = pruning_wrappers(model)[0]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(X)), expected
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(wrapper.masks[0]), masks[0]
    )
    step = 7 if key == "0" else 1
    assert int(keras.ops.convert_to_numpy(wrapper.pruning_step)) == step
    stripped = kp.strip_pruning(model)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(stripped(X)), expected
    )


def _schedule_config(conf):
    return conf["config"]["layers"][1]["config"]["pruning_schedule"]


def test_schedule_config_naming_two_classes_is_refused(saved, tmp_path):
    """Before: the inner class name was ignored: a ConstantSparsity loaded
    from a config that says PolynomialDecay inside."""

    def lie(conf):
        _schedule_config(conf)["config"]["class_name"] = "PolynomialDecay"

    path = _edit(saved[0], tmp_path / "m.keras", config=lie)
    with pytest.raises(ValueError, match="names class 'PolynomialDecay'"):
        keras.saving.load_model(path)
    inner = {"target_sparsity": 0.5, "begin_step": 0}
    with pytest.raises(ValueError, match="Cannot load a ConstantSparsity"):
        kp.ConstantSparsity.from_config({"class_name": "X", "config": inner})

    class Subclass(kp.ConstantSparsity):
        pass

    # A subclass keeps accepting its own name and a base class's.
    for name in ("Subclass", "ConstantSparsity"):
        got = Subclass.from_config({"class_name": name, "config": inner})
        assert type(got) is Subclass and got.target_sparsity == 0.5
    again = Subclass.from_config(Subclass(**inner).get_config())
    assert again.get_config() == Subclass(**inner).get_config()


def test_cli_names_the_cause_of_a_failed_load(saved, tmp_path, capsys):
    """Before: the one-line message was cut at 500 characters inside
    Keras' config dump or object list; the cause was at the end."""
    from conftest import cli_error

    step = _edit(
        saved[0],
        tmp_path / "step.keras",
        weights=_set(OWN + "0", np.int64(2**40)),
    )
    line = cli_error(["strip", step, tmp_path / "o.keras"], capsys)
    assert "its saved `pruning_step` is 1099511627776" in line

    def text_sparsity(conf):
        _schedule_config(conf)["config"]["config"]["target_sparsity"] = "0.5"

    sched = _edit(saved[0], tmp_path / "sched.keras", config=text_sparsity)
    line = cli_error(["inspect", sched], capsys)
    assert line.endswith(
        "target_sparsity must be a number in [0, 1), got '0.5' of type str."
    )


def test_magnitude_mask_refuses_array_sparsity():
    """Before: NumPy's "only 0-dimensional arrays can be converted", or
    (a tensor) an error inside a `Cond` layer."""
    w = np.arange(4.0, dtype=np.float32)
    for sparsity in (np.array([0.5]), keras.ops.convert_to_tensor([0.5])):
        with pytest.raises(
            TypeError, match=r"`sparsity` must be a single number.*\(1,\)"
        ):
            kp.magnitude_mask(w, sparsity)
    # Scalars of every kind still work, with the same mask.
    for sparsity in (
        0.5,
        np.float64(0.5),
        np.array(0.5),
        keras.ops.convert_to_tensor(0.5),
    ):
        got = keras.ops.convert_to_numpy(kp.magnitude_mask(w, sparsity))
        np.testing.assert_array_equal(got, [False, False, True, True])


def test_magnitude_mask_float64_beyond_float32_is_named():
    """Before: "`weights` contains 1 NaN or Inf value(s)" for a finite
    1e300 (which overflowed in the float32 cast)."""
    w = np.array([1e300, 1.0, -2.0, 0.5])
    with pytest.raises(
        ValueError, match=r"1 finite value\(s\) beyond float32's range"
    ):
        kp.magnitude_mask(w, 0.5)
    if BACKEND != "jax":  # JAX holds no float64 without x64
        with pytest.raises(ValueError, match="beyond float32's range"):
            kp.magnitude_mask(keras.ops.convert_to_tensor(w, "float64"), 0.5)
    # Float64 within range, NaN and Inf keep their behaviour.
    np.testing.assert_array_equal(
        kp.magnitude_mask(np.array([1e30, 1.0, -2.0, 0.5]), 0.5),
        [True, False, True, False],
    )
    with pytest.raises(ValueError, match="NaN or Inf"):
        kp.magnitude_mask(np.array([np.inf, 1.0]), 0.5)


def test_load_compressed_names_a_bad_custom_objects(saved):
    """Before: `CompressedFormatError: ... cannot be loaded: TypeError:
    'int' object is not a mapping`, as if the file were malformed."""
    model = keras.saving.load_model(saved[0])
    buf = io.BytesIO()
    kp.save_compressed(model, buf)
    with pytest.raises(
        TypeError, match="`custom_objects` must be None or a dict"
    ):
        kp.load_compressed(buf.getvalue(), custom_objects=5)
    loaded = kp.load_compressed(buf.getvalue(), custom_objects={})
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(X)), saved[1]
    )


def test_compressed_file_with_a_lying_step_is_refused(saved):
    """The `.kpz` loader fills the wrappers through the same
    `load_own_variables`: a step of -5 (int32, as the table expects) is
    refused by name (before: loaded as -5)."""
    model = keras.saving.load_model(saved[0])
    pruning_wrappers(model)[0].pruning_step.assign(-5)
    buf = io.BytesIO()
    kp.save_compressed(model, buf)
    with pytest.raises(kp.CompressedFormatError, match="`pruning_step` is -5"):
        kp.load_compressed(buf.getvalue())


def test_cli_prune_refuses_data_that_does_not_fit_or_diverges(
    saved, tmp_path, capsys
):
    """Before: samples of the wrong shape ended in Keras' RuntimeError
    "Unable to automatically build the model" (exit 1); NaN samples gave
    NaN weights, saved with exit 0."""
    from conftest import cli_error

    dense = tmp_path / "dense.keras"
    kp.strip_pruning(keras.saving.load_model(saved[0])).save(dense)
    y = np.zeros((4, 2), "float32")
    wide = tmp_path / "wide.npz"
    np.savez(wide, x=np.zeros((4, 5), "float32"), y=y)
    out = tmp_path / "out.keras"
    args = ["--epochs", "1", "--loss", "mse", "--verbose", "0", "-o", out]
    line = cli_error(["prune", dense, "--data", wide, *args], capsys)
    assert "'x' holds samples of shape (5,), but the model takes" in line
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.full((4, 4), np.nan, "float32"), y=y)
    line = cli_error(["prune", dense, "--data", nan, *args], capsys)
    assert "training diverged: weight 'd1/kernel' holds NaN" in line
    assert not out.exists()


def _zeros_blob(shape, dtype="float32"):
    """An array blob of the ZEROS layout with a valid CRC-32."""
    import struct
    import zlib

    from keras_prune.export import _format

    body = _format.ARRAY_MAGIC + bytes(
        [
            _format.ARRAY_VERSION,
            _format.dtype_code(np.dtype(dtype)),
            len(shape),
        ]
    )
    body += b"".join(_format.write_varint(d) for d in shape)
    body += bytes([_format.ZEROS])
    return body + struct.pack("<I", zlib.crc32(body))


def test_zero_size_shape_whose_other_dimensions_overflow():
    """Before: NumPy's `ValueError: array is too big` escaped
    `decompress_array` (the size check multiplied in the 0 first); found
    by mutating blobs with `verify=False`, reachable with a valid CRC."""
    huge = (0, 2**47, 2**47)
    with pytest.raises(kp.CompressedFormatError, match="too large for any"):
        kp.decompress_array(_zeros_blob(huge))
    for shape in [(0, 2**20, 2**20), (3, 0), (), (2, 3)]:
        got = kp.decompress_array(_zeros_blob(shape))
        assert got.shape == shape and not got.any()


def test_masked_array_is_refused_not_stripped_of_its_mask():
    """Before: `decompress_array(compress_array(ma))` returned the data
    with the masked values in place of the mask, silently."""
    masked = np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False])
    with pytest.raises(TypeError, match="MaskedArray would be lost"):
        kp.compress_array(masked)
    # A matrix and a broadcast view are plain arrays: same values back.
    for array in (
        np.asmatrix([[1.0, 2.0]]),
        np.broadcast_to(np.int8(3), (2, 2)),
    ):
        back = kp.decompress_array(kp.compress_array(array))
        np.testing.assert_array_equal(back, np.asarray(array))
        assert type(back) is np.ndarray and back.dtype == array.dtype


def test_cli_int8_refuses_nonfinite_weights(saved, tmp_path, capsys):
    """Before: `compress --int8` of a kernel holding Inf wrote a file whose
    whole output channel computed NaN (the scale was Inf), exit 0."""
    from conftest import cli_error

    model = kp.strip_pruning(keras.saving.load_model(saved[0]))
    kernel = keras.ops.convert_to_numpy(model.layers[1].kernel).copy()
    kernel[0, 0] = np.inf
    model.layers[1].kernel.assign(kernel)
    src = tmp_path / "inf.keras"
    model.save(src)
    out = tmp_path / "out.kpz"
    line = cli_error(["compress", src, out, "--int8"], capsys)
    assert "--int8: weight 'd1/kernel' holds NaN or Inf" in line
    assert not out.exists()


def test_model_sparsity_and_step_of_non_models_and_unbuilt_models():
    """Before: AttributeError `'str' object has no attribute
    '_flatten_layers'`, and `'PruneLowMagnitude' object has no attribute
    'masks'` for a pruned model not built yet."""
    for function in (kp.model_sparsity, kp.pruning_step):
        for value in ("model.keras", None, [keras.layers.Dense(2)]):
            with pytest.raises(TypeError, match=function.__name__):
                function(value)
    unbuilt = kp.prune_low_magnitude(keras.Sequential([keras.layers.Dense(2)]))
    assert kp.model_sparsity(unbuilt) is None
    assert kp.pruning_step(unbuilt) is None


def test_pattern_sizes_refuse_bools_and_take_numpy_integers():
    """Before: `NM(True, 4)` was NM(1, 4) and `Block((True, 2))` a (1, 2)
    block, silently; `Block([np.int64(2), 2])` was refused and `Block(2)`
    ended in "'int' object is not iterable"."""
    for bad in ((True, 4), (np.True_, 4), (2, True)):
        with pytest.raises(ValueError, match="needs 0 < m < n"):
            kp.NM(*bad)
    for bad in ((True, 2), (2, np.True_), 2, (2, 2, 2)):
        with pytest.raises(ValueError, match="pair of two positive integers"):
            kp.Block(bad)
    for good in ([np.int64(2), 2], np.array([2, 2]), (2, 2)):
        assert kp.Block(good).block_size == (2, 2)
    assert (kp.NM(np.int64(2), 4).m, kp.NM(np.int64(2), 4).n) == (2, 4)


def test_unbuilt_pruned_model_saves_and_loads(tmp_path):
    """Before: `save` raised AttributeError 'no attribute pruned_weights'
    (the masks were baked in before checking the wrapper was built) and
    left a partial .keras file behind."""
    pruned = kp.prune_low_magnitude(keras.Sequential([keras.layers.Dense(2)]))
    path = tmp_path / "unbuilt.keras"
    with warnings.catch_warnings():  # Keras: the model is not built
        warnings.simplefilter("ignore")
        pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        "PruneLowMagnitude"
    ]
    assert loaded(np.ones((1, 3), "float32")).shape == (1, 2)
    assert kp.pruning_step(loaded) == 0


@keras.saving.register_keras_serializable("test_redteam5")
class _TwoDense(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d = keras.layers.Dense(3)
        self.o = keras.layers.Dense(2)

    def call(self, x):
        return self.o(self.d(x))


@pytest.mark.parametrize(
    "lie",
    ["d", [["attr"]], [["attr", "d", "x"]], [["nope", "d"]], [[True, "d"]], 5],
)
def test_in_place_wrapper_record_of_the_wrong_form_is_refused(tmp_path, lie):
    # A subclassed model pruned in place saves where each wrapper sits; a
    # path of another form failed with "not enough values to unpack".
    model = _TwoDense()
    model(X)
    src = tmp_path / "sub.keras"
    kp.prune_low_magnitude(model).save(src)

    def edit(conf):
        conf["config"]["wrappers"][0]["path"] = lie

    bad = _edit(src, tmp_path / "bad.keras", config=edit)
    with pytest.raises(ValueError, match="wrapper record is malformed"):
        with kp.prune_scope():
            keras.saving.load_model(bad)


def test_prune_once_sparsity_message_and_plan_formatter_input():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    for bad in (None, True):
        with pytest.raises(ValueError, match="`sparsity` must be a number in"):
            kp.prune_once(model, bad)
    with pytest.raises(TypeError, match="format_pruning_plan takes the rows"):
        kp.format_pruning_plan(np.zeros(3))
    rows = kp.pruning_plan(kp.prune_once(model, 0.5))
    assert kp.format_pruning_plan(rows).endswith("1 weights pruned, 1 skipped")
