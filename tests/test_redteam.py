"""Regression tests for what a hostile-input probe found (issue 15).

Each test reproduces one finding of the red-team pass: the `.kpz` loader,
the CLI, the TensorBoard reader, schedules and the spec. Models are tiny
and built once per module where possible.
"""

import io
import json
import struct
import zlib

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.export import _format
from keras_prune.export import compress

from conftest import cli_error
from conftest import tf_record


def _with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


def _file(header, blobs, raw=None):
    """A `.kpz` file from a header (or raw header bytes) and blobs, with
    every checksum recomputed."""
    if raw is None:
        raw = json.dumps(header).encode()
    return _with_crc(
        b"".join(
            [
                compress.MAGIC,
                struct.pack("<H", compress.VERSION),
                _format.encode_stream(raw, "zlib", "mask"),
                *blobs,
            ]
        )
    )


@pytest.fixture(scope="module")
def seq_file():
    keras.utils.clear_session()
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, name="d")]
    )
    buf = io.BytesIO()
    keras_prune.save_compressed(model, buf)
    data = buf.getvalue()
    header, offsets = compress._parse(data, "t", 1 << 30)
    blobs = [
        data[o : o + e["size"]] for e, o in zip(header["tensors"], offsets)
    ]
    return data, header, blobs


# ------------------------------------------------------------ .kpz loader


def test_long_sequential_config_is_built_once_not_per_layer(
    seq_file, monkeypatch
):
    """Keras' `Sequential.from_config` rebuilds the whole stack after each
    layer: a 2 KB file listing 800 layers took two minutes to refuse. The
    loader builds each Sequential once (per pass) after adding its layers."""
    _, header, blobs = seq_file
    header = json.loads(json.dumps(header))
    layers = header["config"]["config"]["layers"]
    dense = layers[1]
    for i in range(40):
        extra = json.loads(json.dumps(dense))
        extra["config"]["name"] = f"extra{i}"
        extra["config"]["units"] = 3
        extra.pop("build_config", None)
        layers.insert(1, extra)
    calls = []
    original = keras.Sequential._maybe_rebuild

    def counting(self):
        calls.append(len(self._layers))
        return original(self)

    monkeypatch.setattr(keras.Sequential, "_maybe_rebuild", counting)
    with pytest.raises(
        keras_prune.CompressedFormatError, match="does not match the model"
    ):
        keras_prune.load_compressed(_file(header, blobs))
    # One build of the 42-layer stack (the shape-only pass), not 41.
    assert calls == [42]


def test_loaded_sequential_is_a_plain_sequential(seq_file):
    data, _, _ = seq_file
    model = keras_prune.load_compressed(data)
    assert type(model) is keras.Sequential
    config = keras.saving.serialize_keras_object(model)
    assert "_LinearTimeSequential" not in json.dumps(config)
    assert [layer.name for layer in model.layers] == ["d"]
    nested = keras.Sequential([keras.Input((3,)), model])
    buf = io.BytesIO()
    keras_prune.save_compressed(nested, buf)
    again = keras_prune.load_compressed(buf.getvalue())
    assert type(again.layers[0]) is keras.Sequential
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again(x)),
        keras.ops.convert_to_numpy(nested(x)),
    )


def test_header_json_with_duplicate_keys_is_refused(seq_file):
    _, header, blobs = seq_file
    raw = json.dumps(header).replace(
        '"version": 1', '"version": 2, "version": 1', 1
    )
    assert raw.count('"version"') == 2
    with pytest.raises(
        keras_prune.CompressedFormatError, match="repeats the key 'version'"
    ):
        keras_prune.load_compressed(_file(None, blobs, raw=raw.encode()))


def test_json_cost_bounds_the_loaders_parse():
    """`_json_cost` bounds the parse as the loader runs it (with the
    duplicate-key check's lists of pairs)."""
    import tracemalloc

    for raw in (
        b"{" + b",".join(b'"%d":1' % i for i in range(20000)) + b"}",
        b"[" + b'{"a":1,"b":2},' * 20000 + b"1]",
    ):
        tracemalloc.start()
        try:
            compress._parse_json(raw, "t", 1 << 40)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert compress._json_cost(raw) >= peak - len(raw)


# ------------------------------------------------------------ schedules


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras_prune.ConstantSparsity(0.5, 2**31),
        lambda: keras_prune.ConstantSparsity(0.5, 0, end_step=2**31),
        lambda: keras_prune.ConstantSparsity(0.5, 0, frequency=2**63),
        lambda: keras_prune.PolynomialDecay(0.0, 0.5, 0, 2**40),
        lambda: keras_prune.FunctionSchedule(lambda s: 0.5, 0, 2**31),
    ],
)
def test_steps_beyond_the_int32_counter_are_refused(make):
    """JAX raised OverflowError inside the compiled step (TensorFlow and
    torch accepted them): steps are counted in int32 on every backend."""
    with pytest.raises(ValueError, match=r"at most 2147483647 \(2\*\*31 - 1"):
        make()


def test_largest_int32_step_is_accepted():
    s = keras_prune.ConstantSparsity(0.5, 0, end_step=2**31 - 1, frequency=1)
    should_prune, sparsity = s(keras.ops.convert_to_tensor(np.int32(7)))
    assert bool(keras.ops.convert_to_numpy(should_prune))
    assert float(keras.ops.convert_to_numpy(sparsity)) == 0.5


@pytest.mark.parametrize("value", [True, False, "0.5", 0.5j, None, [0.5]])
def test_sparsity_of_a_wrong_type_is_a_type_error(value):
    """`ConstantSparsity(False, 0)` was a silent 0% schedule, and a string
    gave Python's comparison error without naming the argument."""
    with pytest.raises(TypeError, match="target_sparsity must be a number"):
        keras_prune.ConstantSparsity(value, 0)


def test_numpy_and_0d_sparsities_still_accepted():
    for value in (np.float32(0.25), np.float64(0.25), np.array(0.25)):
        s = keras_prune.ConstantSparsity(value, 0, frequency=1)
        assert float(s(np.int64(0))[1]) == 0.25


@pytest.mark.parametrize("decay", [0.9999999999, 1e-320, 1 - 1e-9])
def test_exponential_decay_that_rounds_to_0_or_1_in_float32(decay):
    """decay=0.9999999999 is float32 1.0: (d**p - d) / (1 - d) was 0/0, a
    NaN sparsity from a built-in schedule (never checked in the step)."""
    with pytest.raises(ValueError, match="decay must be in range"):
        keras_prune.ExponentialDecay(0.0, 0.9, 0, 100, decay=decay)


@pytest.mark.parametrize("power", [1e-300, 1e300, 10**400])
def test_polynomial_power_outside_float32(power):
    """power=1e-300 is float32 0: the end of the ramp gave 0 ** 0 = 1 (the
    initial sparsity instead of the final one); 10**400 raised
    OverflowError."""
    with pytest.raises(ValueError, match="power must be a finite number"):
        keras_prune.PolynomialDecay(0.0, 0.9, 0, 100, power=power)


def test_schedule_string_with_a_repeated_keyword_is_refused():
    """Python refuses `f(a=1, a=2)` when compiling, `ast.parse` does not:
    the parser silently used the last value."""
    with pytest.raises(ValueError, match="'begin_step' is given more than"):
        keras_prune.core.schedules.get(
            "ConstantSparsity(0.5, begin_step=0, begin_step=10)"
        )


class _Returns(keras_prune.PruningSchedule):
    def __init__(self, should_prune):
        self.should_prune = should_prune

    def __call__(self, step):
        return self.should_prune, 0.5

    def get_config(self):
        return {}


@pytest.mark.parametrize(
    "value", [None, float("nan"), 2, "yes", np.array([True, False])]
)
def test_should_prune_that_is_not_a_bool_raises(value):
    """`(None, 0.5)` was read as "never prune", NaN and 2 as "prune"."""
    from keras_prune.core import schedules

    with pytest.raises(ValueError, match="returned should_prune .* at step 3"):
        schedules.evaluate(_Returns(value), 3)


@pytest.mark.parametrize("value", [True, 1, np.bool_(False), np.array(0)])
def test_should_prune_bool_like_values_accepted(value):
    from keras_prune.core import schedules

    assert schedules.evaluate(_Returns(value), 3) == (
        bool(value),
        np.float32(0.5),
    )


# ------------------------------------------------------------ masks


@pytest.mark.parametrize("sparsity", [True, "0.5", b"0.5", np.array([True])])
def test_magnitude_mask_sparsity_of_a_wrong_type(sparsity):
    """`magnitude_mask(w, "0.5")` computed a 50% mask and `True` a 100%
    one."""
    w = np.array([1.0, -5.0, 3.0, 2.0], "float32")
    with pytest.raises(TypeError, match="`sparsity` must be a number"):
        keras_prune.magnitude_mask(w, sparsity)
    with pytest.raises(TypeError, match="`sparsity` must be a number"):
        keras_prune.kept_count(10, sparsity)


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "U1", "O"])
def test_magnitude_mask_of_non_real_weights(dtype):
    """Complex weights were cast to float32, dropping the imaginary part
    (|1+9j| counted as 1)."""
    w = (
        np.array([1 + 9j, 2, 3, 4]).astype(dtype)
        if dtype[0] == "c"
        else (np.array(["a", "b"], dtype=dtype))
    )
    with pytest.raises(TypeError, match="`weights` must hold real numbers"):
        keras_prune.magnitude_mask(w, 0.5)


@pytest.mark.parametrize(
    "n, error",
    [
        (2**40, ValueError),  # was 2**31 - 1 (int32 saturation)
        (2**31, ValueError),
        (-1, ValueError),  # was 1
        (10.5, TypeError),  # was 5
        (True, TypeError),
        ("10", TypeError),
    ],
)
def test_kept_count_of_an_invalid_n(n, error):
    with pytest.raises(error, match="`n` must be"):
        keras_prune.kept_count(n, 0.5)


def test_kept_count_valid_values_unchanged():
    assert int(keras_prune.kept_count(2**31 - 1, 0.5)) == 2**30
    assert int(keras_prune.kept_count(np.int64(10), np.float16(0.5))) == 5
    ten = keras.ops.convert_to_tensor(10)
    assert int(keras_prune.kept_count(ten, 0.5)) == 5
    bf16 = np.array(
        [1, -5, 3, 2],
        dtype=keras.ops.convert_to_numpy(
            keras.ops.ones((1,), "bfloat16")
        ).dtype,
    )
    np.testing.assert_array_equal(
        keras_prune.magnitude_mask(bf16, 0.5), [False, True, True, False]
    )


# ------------------------------------------------------------ spec


def _mlp():
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="d1"),
            keras.layers.Dense(2, name="d2"),
        ]
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (
            dict(pruning_schedule={"d1": 0.5, "dense_2": 0.3}),
            "pruning_schedule",
        ),
        (
            dict(allocation="global", max_sparsity={"d1": 0.9, "d3": 0.5}),
            "max_sparsity",
        ),
    ],
)
def test_mapping_key_naming_no_layer_is_refused(kwargs, name):
    """A misspelt layer name in a per-layer mapping left that layer
    silently unpruned (or unbounded)."""
    with pytest.raises(ValueError, match=rf"`{name}` key\(s\) \['d"):
        keras_prune.prune_low_magnitude(_mlp(), **kwargs)


def test_mapping_with_regex_keys_that_all_match_is_accepted():
    model = keras_prune.prune_low_magnitude(
        _mlp(), pruning_schedule={"d1": 0.5, "d.*": 0.3}
    )
    assert [type(layer).__name__ for layer in model.layers] == [
        "PruneLowMagnitude",
        "PruneLowMagnitude",
    ]


def test_prune_once_sparsity_of_a_wrong_type_or_0d_tensor():
    """A 0-d tensor 0.5 was refused with "must be in [0, 1], got 0.5"; a
    string is now named as a wrong type."""
    from keras_prune.integration import spec

    assert spec.fraction(keras.ops.convert_to_tensor(0.25), "s") == 0.25
    assert spec.fraction(np.float32(0.25), "s") == 0.25
    with pytest.raises(ValueError, match="a number in \\[0, 1\\], got '0.5' "):
        spec.fraction("0.5", "sparsity")
    with pytest.raises(ValueError, match="got True of type bool"):
        spec.fraction(True, "sparsity")


# ------------------------------------------------------------ event reader


def _config_event(text):
    from keras_prune.export._format import write_varint as v

    def field(number, payload):
        return v(number << 3 | 2) + v(len(payload)) + payload

    tensor = field(8, text.encode())
    meta = field(1, field(1, b"text"))
    value = field(1, b"keras_prune/config") + field(8, tensor)
    value += field(9, meta)
    return v(2 << 3) + v(1) + field(5, field(1, value))


@pytest.mark.parametrize(
    "entry",
    [[1, 2], {"params": "many"}, {"params": -5}, {"params": 1.5}],
)
def test_report_with_a_malformed_config_entry(tmp_path, entry):
    """A list entry crashed `report` (AttributeError), a string count
    raised TypeError; negative or float counts were printed and summed."""
    from keras_prune.monitoring import events
    from keras_prune.monitoring import summaries

    text = "```json\n" + json.dumps({"weights": {"d/kernel": entry}}) + "\n```"
    (tmp_path / "events.out.tfevents.1.t").write_bytes(
        tf_record(_config_event(text))
    )
    with pytest.warns(events.CorruptEventFileWarning, match="d/kernel"):
        config = events.read_config(tmp_path)
    assert "params" not in config["weights"].get("d/kernel", {})
    with pytest.warns(events.CorruptEventFileWarning):
        assert "log dir:" in summaries.report(tmp_path)


# ------------------------------------------------------------ .kpz paths


def test_fifo_and_device_paths_are_refused_without_blocking(tmp_path):
    """A FIFO blocked `load_compressed` forever, and /dev/zero (size 0)
    was read without bound."""
    import os

    fifo = tmp_path / "model.kpz"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, "/dev/zero"):
        with pytest.raises(
            keras_prune.CompressedFormatError, match="not a regular file"
        ):
            keras_prune.load_compressed(path)
        assert not compress.is_compressed_file(path)


@pytest.mark.parametrize(
    "max_bytes, error",
    [
        (float("nan"), TypeError),  # compared false: no limit at all
        (True, TypeError),
        ("10", TypeError),
        (1e9, TypeError),
        (-1, ValueError),
    ],
)
def test_max_bytes_must_be_a_count(seq_file, max_bytes, error):
    data, _, _ = seq_file
    with pytest.raises(error, match="max_bytes"):
        keras_prune.load_compressed(data, max_bytes=max_bytes)
    with pytest.raises(error, match="max_bytes"):
        keras_prune.decompress_array(
            keras_prune.compress_array(np.ones(3)), max_bytes=max_bytes
        )


def test_path_of_a_wrong_type_and_text_file_objects(seq_file):
    """An int path was read as a file descriptor (0 is stdin)."""
    data, _, _ = seq_file
    for path in (0, 3, None, 1.5):
        with pytest.raises(TypeError, match="expected a file path"):
            keras_prune.load_compressed(path)
    with pytest.raises(TypeError, match="binary file object"):
        keras_prune.load_compressed(io.StringIO("x" * 100))


def test_file_read_stops_one_byte_past_max_bytes(tmp_path, seq_file):
    """The size was checked, then the whole file read: a file growing in
    between was read without bound. Now at most max_bytes + 1 bytes."""
    data, _, _ = seq_file
    path = tmp_path / "m.kpz"
    path.write_bytes(data)
    reads = []

    class Growing(io.BytesIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    with pytest.raises(keras_prune.CompressedFormatError, match="max_bytes"):
        keras_prune.load_compressed(
            Growing(data + bytes(10_000)), max_bytes=len(data) + 10
        )
    assert reads == [len(data) + 11]
    assert keras_prune.load_compressed(path, max_bytes=1 << 20).built


# ------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    "text, match",
    [
        # OverflowError (exit 1) before: Python ints beyond int64.
        ("PolynomialDecay(0, 0.9, 0, 1" + "0" * 30 + ")", "end_step must"),
        ("ConstantSparsity(0.5, 9223372036854775808)", "begin_step must"),
        ("PolynomialDecay(0, 0.9, 0, 100, power=1" + "0" * 400 + ")", "power"),
        # Silently used the last value.
        ("ConstantSparsity(0.5, begin_step=0, begin_step=1)", "more than"),
        # NaN sparsities at every step.
        ("ExponentialDecay(0, 0.9, 0, 100, decay=0.9999999999)", "decay"),
        ("ConstantSparsity('0.5', 0)", "must be a number"),
    ],
)
def test_cli_schedule_strings(text, match, capsys):
    assert match in cli_error(["schedule", text], capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "ConstantSparsity(0.5, 0)", "--steps", "9" * 23],
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--learning-rate",
            "nan",
        ],
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--learning-rate",
            "-1",
        ],
    ],
)
def test_cli_number_arguments_out_of_range(argv, capsys):
    from keras_prune import cli

    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_cli_prune_with_more_steps_than_the_counter(tmp_path, capsys):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3)), y=np.ones((4, 2)))
    message = cli_error(
        [
            "prune",
            tmp_path / "m.keras",
            "--data",
            tmp_path / "d.npz",
            "--epochs",
            10**12,
            "--loss",
            "mse",
            "-o",
            tmp_path / "o.keras",
        ],
        capsys,
    )
    assert "training steps, more than 2147483647" in message
    assert not (tmp_path / "o.keras").exists()


@pytest.mark.parametrize("value", ["0.5", b"0.5", True, np.array(["0.5"])])
def test_schedule_returning_a_non_number_sparsity_raises(value):
    """A string sparsity was read with float() and used."""
    from keras_prune.core import schedules

    class Returns(keras_prune.PruningSchedule):
        def __call__(self, step):
            return True, value

        def get_config(self):
            return {}

    with pytest.raises(ValueError, match="returned sparsity .* at step 4"):
        schedules.evaluate(Returns(), 4)


# ------------------------------------------------------------ event CRC


def _reference_masked_crc32c(data):
    from keras_prune.monitoring import events

    crc = 0xFFFFFFFF
    for byte in data:
        crc = events._CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_block_parallel_crc32c_equals_the_byte_loop():
    """Checksums of long records (and of every resync candidate) were a
    Python loop per byte: 2 MB of garbage took 8 s to scan."""
    from keras_prune.monitoring import events

    rng = np.random.RandomState(0)
    block = events._CRC_BLOCK
    for n in (block * 64 - 1, block * 64, block * 64 + 1, block * 70 + 123):
        data = rng.randint(0, 256, n).astype(np.uint8).tobytes()
        assert events._masked_crc32c(data) == _reference_masked_crc32c(data)
    assert events._masked_crc32c(b"123456789") == _reference_masked_crc32c(
        b"123456789"
    )


def test_reader_resyncs_after_long_garbage_and_reads_long_records(tmp_path):
    from keras_prune.monitoring import events

    rng = np.random.RandomState(1)
    garbage = rng.randint(0, 256, 300_000).astype(np.uint8).tobytes()
    long_payload = rng.randint(0, 256, 270_000).astype(np.uint8).tobytes()
    good = [tf_record(b"first"), tf_record(long_payload), tf_record(b"last")]
    path = tmp_path / "events.out.tfevents.1.t"
    path.write_bytes(good[0] + garbage + good[1] + good[2])
    with pytest.warns(
        events.CorruptEventFileWarning,
        match="offset 21 .*resuming at offset 300021",
    ):
        got = list(events.read_records(path))
    start = len(good[0]) + len(garbage)
    assert [offset for offset, _ in got] == [
        0,
        start,
        start + len(good[1]),
    ]
    assert [bytes(data) for _, data in got] == [
        b"first",
        long_payload,
        b"last",
    ]


def test_prune_once_sparsity_1_names_its_own_argument():
    """prune_once(model, 1.0) failed with ConstantSparsity's message about
    `target_sparsity`, an argument the caller never passed."""
    with pytest.raises(ValueError, match="prune_once: `sparsity` must be"):
        keras_prune.prune_once(_mlp(), 1.0)
    # Below 1, but 1.0 in float32: the same message, not one that keeps a
    # single weight per tensor.
    with pytest.raises(ValueError, match="prune_once: `sparsity` must be"):
        keras_prune.prune_once(_mlp(), 0.99999999999)


@pytest.mark.parametrize(
    "stop, error",
    [
        (10**30, ValueError),  # OverflowError before
        (-5, ValueError),  # "No mask update before step -5."
        ("10", TypeError),  # accepted
        (2.5, TypeError),  # accepted
        (True, TypeError),
        (float("nan"), TypeError),
    ],
)
def test_describe_schedule_stop_must_be_a_step(stop, error):
    s = keras_prune.ConstantSparsity(0.5, 0)
    with pytest.raises(error, match="stop must be"):
        keras_prune.describe_schedule(s, stop=stop)
    assert "1 mask updates" in keras_prune.describe_schedule(
        s, stop=np.int64(10)
    )


def test_describe_blob_of_a_non_bytes_argument():
    """describe_blob(10**12) called bytes(10**12): a terabyte of zeros."""
    for data in (10**12, None, "abc"):
        with pytest.raises(TypeError, match="expects bytes"):
            _format.describe_blob(data)


def test_remote_reader_matches_local_reader(tmp_path, monkeypatch):
    """The reader of remote files (tensorboard's gfile) keeps the good
    records around a record whose data checksum fails, as the local one
    does, and warns once."""
    from keras_prune.monitoring import events

    bad = bytearray(tf_record(b"middle"))
    bad[-5] ^= 0xFF  # a data byte: the data checksum fails
    path = tmp_path / "events.out.tfevents.1.t"
    path.write_bytes(tf_record(b"first") + bytes(bad) + tf_record(b"last"))

    class GFile(io.FileIO):
        def __init__(self, name, mode):
            super().__init__(name, mode)

    fake = type("TB", (), {"gfile": type("G", (), {"GFile": GFile})})
    monkeypatch.setattr(events, "_tensorboard", lambda: fake)
    with pytest.warns(events.CorruptEventFileWarning, match="checksum"):
        remote = list(events._read_records_remote(path))
    with pytest.warns(events.CorruptEventFileWarning):
        local = list(events.read_records(path))
    assert [body for _, body in remote] == [b"first", b"last"]
    assert remote == local
