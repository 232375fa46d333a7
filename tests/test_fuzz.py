"""Bounded fuzz and property tests of every reader of untrusted input.

Issue 15: the `.kpz` model reader (truncation at every offset, bit flips,
"lying" files whose sizes and shapes are altered with every checksum
recomputed), the array blob codec (round trips of every dtype, shape and
special bit pattern), the TensorBoard event reader and the schedule parser.
Each Hypothesis test is bounded (`max_examples`, derandomized) so the whole
module takes well under a minute per backend.
"""

import copy
import io
import json
import struct
import warnings
import zlib

import keras
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_prune
from keras_prune.core import schedules
from keras_prune.export import _format
from keras_prune.export import compress
from keras_prune.monitoring import events
from keras_prune.monitoring import summaries

from conftest import tf_record
from conftest import to_np

FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
SLOW = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

DTYPES = [
    np.dtype(d)
    for d in (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
] + [
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e5m2),
]


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and (a.tobytes() == b.tobytes())
    )


def with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


# ------------------------------------------------------- array round trips


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
    n = int(np.prod(shape, dtype=np.int64))
    raw = draw(
        st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize)
    )
    if dtype == np.bool_:
        array = (np.frombuffer(raw, np.uint8) & 1).astype(bool)
    else:
        array = np.frombuffer(raw, dtype).copy()
    # Zero out a random share, so every layout (dense, sparse, zeros) and
    # every mask coding is reached.
    keep = np.frombuffer(draw(st.binary(min_size=n, max_size=n)), np.uint8)
    threshold = draw(st.integers(0, 256))
    array[keep < threshold] = np.zeros((), dtype)
    return array.reshape(shape)


@FAST
@given(array=arrays(), codec=st.sampled_from(["lzma", "zlib", "stored"]))
def test_every_dtype_and_shape_roundtrips_bit_for_bit(array, codec):
    blob = keras_prune.compress_array(array, codec=codec)
    out = keras_prune.decompress_array(blob)
    assert same_bits(out, array)


SPECIAL_F32 = np.array(
    [
        0x00000000,
        0x80000000,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0x7FC00001,
        0xFFBFFFFF,
        0x00000001,
        0x80000001,
        0x7F7FFFFF,
    ],
    np.uint32,
).view(np.float32)


def test_special_values_zero_d_and_zero_size():
    for dtype in DTYPES:
        _check_special_values(dtype)


def _check_special_values(dtype):
    if dtype.name.startswith(("float", "bfloat", "complex")):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            specials = SPECIAL_F32.astype(dtype)
        if dtype.itemsize in (4, 8) and dtype.kind == "f":
            # NaN payloads and -0.0 as raw bit patterns of this width.
            unsigned = np.uint32 if dtype.itemsize == 4 else np.uint64
            top = unsigned(1) << unsigned(8 * dtype.itemsize - 1)
            exp_all = np.array(np.inf, dtype).view(unsigned)
            specials = np.array(
                [0, top, exp_all | 1, exp_all | 12345, top | exp_all | 7, 1],
                unsigned,
            ).view(dtype)
    elif dtype == np.bool_:
        specials = np.array([True, False])
    else:
        info = np.iinfo(dtype)
        specials = np.array([0, info.min, info.max, 1], dtype)
    cases = [
        specials,
        specials.reshape(1, -1, 1),
        np.zeros((), dtype),
        specials[:1].reshape(()),
        specials[-1:].reshape(()),
        np.zeros((0,), dtype),
        np.zeros((3, 0, 2), dtype),
        np.zeros((0, 0), dtype),
    ]
    for array in cases:
        for codec in ("lzma", "zlib"):
            out = keras_prune.decompress_array(
                keras_prune.compress_array(array, codec=codec)
            )
            assert same_bits(out, array), (array, out)


# ------------------------------------------------------- array blob lies


def _blob_parts(array):
    blob = keras_prune.compress_array(array)
    return blob[:-4]


@SLOW
@given(
    pos=st.integers(0, 10**6),
    value=st.integers(0, 255),
    which=st.integers(0, 2),
)
def test_lying_array_blobs_with_valid_crc(pos, value, which):
    """Any byte changed, checksum recomputed: an error or an array of the
    declared size, never anything else (and never above the cap)."""
    arrays_ = [
        np.arange(40, dtype=np.float32).reshape(5, 8) % 3,
        (np.arange(300) % 7 == 0),
        np.zeros((0, 4), np.int16),
    ]
    body = bytearray(_blob_parts(arrays_[which]))
    body[pos % len(body)] = value
    try:
        out = keras_prune.decompress_array(
            with_crc(bytes(body)), max_bytes=1 << 16
        )
    except keras_prune.CompressedFormatError:
        return
    assert out.nbytes <= 1 << 16
    if out.dtype == np.bool_:
        assert set(np.unique(out.view(np.uint8))) <= {0, 1}


def test_rice_gap_overflow_is_rejected():
    """A rice-coded gap whose quotient shifted by k overflows int64 would
    wrap to a small, plausible position: it must be refused."""
    n, k = 1 << 20, 40
    head = _format.ARRAY_MAGIC + bytes([1, 1, 1]) + _format.write_varint(n)
    # One non-zero; its gap = (q << 40) | r with q = 2**23 + 1 wraps int64.
    q = (1 << 23) + 1
    unary = np.ones(q + 1, bool)
    unary[-1] = False
    raw = (
        np.packbits(unary).tobytes() + np.packbits(np.zeros(k, bool)).tobytes()
    )
    body = (
        bytes([_format.SPARSE, _format.C_ORDER])
        + _format.write_varint(1)
        + bytes([_format.RICE, k])
        + _format.write_varint(q + 1)
        + _format.encode_stream(raw, "zlib", "mask")
    )
    with pytest.raises(keras_prune.CompressedFormatError, match="rice"):
        keras_prune.decompress_array(with_crc(head + body), max_bytes=1 << 30)
    # With a plausible k the quotient bound catches the wrap too.
    for k in (0, 3):
        unary = np.ones(q + 1, bool)
        unary[-1] = False
        raw = (
            np.packbits(unary).tobytes()
            + np.packbits(np.zeros(k, bool)).tobytes()
        )
        body = (
            bytes([_format.SPARSE, _format.C_ORDER])
            + _format.write_varint(1)
            + bytes([_format.RICE, k])
            + _format.write_varint(q + 1)
            + _format.encode_stream(raw, "zlib", "mask")
        )
        with pytest.raises(
            keras_prune.CompressedFormatError, match="past the|cannot code"
        ):
            keras_prune.decompress_array(
                with_crc(head + body), max_bytes=1 << 30
            )


def test_dense_bool_bytes_other_than_0_1_are_rejected():
    array = np.ones(16, bool)
    blob = keras_prune.compress_array(array, codec="stored")
    info = _format.describe_blob(blob)
    assert info["layout"] == "dense"
    body = bytearray(blob[:-4])
    body[-1] = 2  # last value byte: neither False nor True
    with pytest.raises(
        keras_prune.CompressedFormatError, match="neither 0 nor 1"
    ):
        keras_prune.decompress_array(with_crc(bytes(body)))


def test_stream_declaring_raw_length_0_does_not_inflate():
    """zlib reads max_length=0 as "unlimited": the cap must be raw + 1."""
    import tracemalloc

    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros, ~64 KB
    head = _format.ARRAY_MAGIC + bytes([1, 12, 1]) + _format.write_varint(0)
    body = (
        bytes([_format.DENSE, _format.C_ORDER, 1, _format.ZLIB])
        + _format.write_varint(0)
        + _format.write_varint(len(bomb))
        + bomb
    )
    tracemalloc.start()
    try:
        with pytest.raises(
            keras_prune.CompressedFormatError, match="corrupt zlib"
        ):
            keras_prune.decompress_array(with_crc(head + body))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_describe_blob_raises_only_format_errors():
    blob = keras_prune.compress_array(np.arange(12.0).reshape(3, 4))
    for cut in range(len(blob)):
        try:
            _format.describe_blob(blob[:cut])
        except keras_prune.CompressedFormatError:
            pass


# ------------------------------------------------------------ .kpz files


@pytest.fixture(scope="module")
def kpz():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="d"),
            keras.layers.Dense(2, name="o"),
        ]
    )
    kernel = np.arange(12, dtype=np.float32).reshape(3, 4) % 3
    model.get_layer("d").kernel.assign(kernel)
    buf = io.BytesIO()
    keras_prune.save_compressed(model, buf)
    return buf.getvalue(), kernel


def reassemble(data, header=None, blobs=None, fix_sizes=True):
    """A file from (altered) parts, every size and checksum recomputed."""
    header0, offsets = compress._parse(data, "t", 1 << 30)
    if blobs is None:
        blobs = [
            data[o : o + e["size"]] for e, o in zip(header0["tensors"], offsets)
        ]
    header = header0 if header is None else header
    if fix_sizes:
        for entry, blob in zip(header["tensors"], blobs):
            entry["size"] = len(blob)
    raw = json.dumps(header).encode()
    return with_crc(
        b"".join(
            [
                compress.MAGIC,
                struct.pack("<H", compress.VERSION),
                _format.encode_stream(raw, "zlib", "mask"),
                *blobs,
            ]
        )
    )


def test_truncation_at_every_offset(kpz):
    data, _ = kpz
    for cut in range(len(data)):
        with pytest.raises(keras_prune.CompressedFormatError):
            keras_prune.load_compressed(data[:cut])


def test_bit_flip_at_every_bit_of_the_header_and_table(kpz):
    data, _ = kpz
    for pos in range(min(len(data), 600)):
        for bit in (0, 3, 7):
            out = bytearray(data)
            out[pos] ^= 1 << bit
            with pytest.raises(keras_prune.CompressedFormatError):
                keras_prune.load_compressed(bytes(out))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
TABLE_FIELDS = ["path", "key", "dtype", "shape", "size", "nonzero_of"]


@SLOW
@given(
    index=st.integers(0, 10),
    field=st.sampled_from(TABLE_FIELDS),
    value=JSON_VALUES
    | st.integers(0, 1 << 62)
    | st.lists(st.integers(-3, 1 << 30), max_size=4),
    fix=st.booleans(),
)
def test_lying_table_with_valid_checksums(kpz, index, field, value, fix):
    data, kernel = kpz
    header = compress._parse(data, "t", 1 << 30)[0]
    table = header["tensors"]
    entry = table[index % len(table)]
    entry[field] = value
    lie = reassemble(data, header=header, fix_sizes=fix and field != "size")
    try:
        model = keras_prune.load_compressed(lie)
    except keras_prune.CompressedFormatError:
        return
    # Only a lie that changes nothing the loader uses may load, and then
    # the weights are the true ones.
    assert same_bits(to_np(model.get_layer("d").kernel), kernel)


@SLOW
@given(
    which=st.integers(0, 10),
    pos=st.integers(0, 10**6),
    value=st.integers(0, 255),
)
def test_lying_blobs_with_valid_checksums(kpz, which, pos, value):
    data, _ = kpz
    header, offsets = compress._parse(data, "t", 1 << 30)
    blobs = [
        data[o : o + e["size"]] for e, o in zip(header["tensors"], offsets)
    ]
    which %= len(blobs)
    if not blobs[which]:
        return
    body = bytearray(blobs[which][:-4])
    body[pos % len(body)] = value
    blobs[which] = with_crc(bytes(body))
    lie = reassemble(data, header=header, blobs=blobs)
    try:
        model = keras_prune.load_compressed(lie)
    except keras_prune.CompressedFormatError:
        return
    for v in model.weights:
        assert np.asarray(to_np(v)).size <= 16


def test_config_lies_are_refused_before_allocating(kpz):
    """A config declaring a 2**24-unit Dense, table unchanged: refused
    while listing the config's weights, nothing built for real."""
    data, _ = kpz
    header = compress._parse(data, "t", 1 << 30)[0]
    config = header["config"]["config"]["layers"]
    dense = [layer for layer in config if layer["class_name"] == "Dense"]
    dense[-1]["config"]["units"] = 1 << 24
    built = []
    original = compress._build_model

    def spy(*args, **kwargs):
        from keras.src.backend.common.stateless_scope import in_stateless_scope

        built.append(in_stateless_scope())
        return original(*args, **kwargs)

    lie = reassemble(data, header=header)
    compress._build_model = spy
    try:
        for max_bytes in (None, 100_000):
            with pytest.raises(
                keras_prune.CompressedFormatError,
                match="more than|does not match",
            ):
                keras_prune.load_compressed(lie, max_bytes=max_bytes)
    finally:
        compress._build_model = original
    assert built == [True, True]  # only the allocation-free listing ran


def test_config_may_not_import_arbitrary_keras_modules(kpz):
    import sys

    module = "keras.src.backend.numpy.core"
    if module in sys.modules:
        pytest.skip(f"{module} already imported")
    data, _ = kpz
    header = compress._parse(data, "t", 1 << 30)[0]
    layer = header["config"]["config"]["layers"][1]
    layer["module"] = module
    with pytest.raises(
        keras_prune.CompressedFormatError, match="refusing to import"
    ):
        keras_prune.load_compressed(reassemble(data, header=header))
    assert module not in sys.modules


@pytest.mark.parametrize(
    "raw",
    [
        b"[" + b"{}," * 3_000_000 + b"{}]",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ],
    ids=["many-objects", "deep-lists", "deep-objects"],
)
def test_header_json_bombs(raw):
    import tracemalloc

    data = with_crc(
        b"".join(
            [
                compress.MAGIC,
                struct.pack("<H", compress.VERSION),
                _format.encode_stream(raw, "zlib", "mask"),
            ]
        )
    )
    assert len(data) < 20_000
    tracemalloc.start()
    try:
        for max_bytes in (None, 1 << 20):
            with pytest.raises(
                keras_prune.CompressedFormatError,
                match="memory|deeper|JSON|possible range",
            ):
                keras_prune.load_compressed(data, max_bytes=max_bytes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The raw JSON itself (up to 9 MB here) is the only large allocation.
    assert peak < 3 * len(raw) + (8 << 20), peak


# -------------------------------------------------------- schedule parser

SCHEDULE_TEXT = st.text(
    alphabet="PolynomialDecyConstSpr(),.-+e0123456789_= *[]{}'\"x\n",
    max_size=300,
)


@FAST
@given(
    text=SCHEDULE_TEXT
    | st.builds(
        lambda name, args: f"{name}({args})",
        st.sampled_from(
            [
                "PolynomialDecay",
                "ConstantSparsity",
                "ExponentialDecay",
                "CosineDecay",
                "Nope",
            ]
        ),
        SCHEDULE_TEXT,
    )
)
def test_schedule_parser_raises_only_value_or_type_errors(text):
    try:
        schedule = schedules.get(text)
    except (ValueError, TypeError):
        return
    assert isinstance(schedule, schedules.PruningSchedule)


@pytest.mark.parametrize(
    "text",
    [
        "-" * 100_000 + "1",
        "ConstantSparsity(" + "-" * 100_000 + "0.5, 0)",
        "ConstantSparsity(" + "(" * 5000 + "0.5" + ")" * 5000 + ", 0)",
        "ConstantSparsity(0.5, " + "9" * 5000 + ")",
        "ConstantSparsity(**{'a': 1})",
    ],
)
def test_schedule_parser_hostile_strings(text):
    with pytest.raises((ValueError, TypeError)):
        schedules.get(text)


# ------------------------------------------------------ TensorBoard reader


def _varint(n):
    return _format.write_varint(n)


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def scalar_event(step, tag, value):
    value_msg = (
        _field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value)
    )
    return _varint(2 << 3) + _varint(step) + _field(5, _field(1, value_msg))


def test_crc32c_matches_tensorboard():
    tb = pytest.importorskip(
        "tensorboard.compat.tensorflow_stub.pywrap_tensorflow"
    )
    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3):
        assert events._masked_crc32c(data) == tb.masked_crc32c(data)


def event_file(tmp_path, n=6):
    path = tmp_path / "events.out.tfevents.1.test"
    records = [
        tf_record(scalar_event(i, "model/sparsity", i / 10)) for i in range(n)
    ]
    path.write_bytes(b"".join(records))
    return path, records


@SLOW
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["flip", "truncate", "insert", "delete"]),
            st.integers(0, 10**6),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_event_reader_fuzz(tmp_path_factory, ops):
    tmp = tmp_path_factory.mktemp("ev")
    path, records = event_file(tmp)
    data = path.read_bytes()
    for op, pos, value in ops:
        pos %= len(data) + 1
        if op == "flip" and data:
            pos %= len(data)
            data = (
                data[:pos]
                + bytes([data[pos] ^ (1 << value % 8)])
                + data[pos + 1 :]
            )
        elif op == "truncate":
            data = data[:pos]
        elif op == "insert":
            data = data[:pos] + bytes([value]) * (value % 40) + data[pos:]
        else:
            data = data[:pos] + data[pos + value % 40 :]
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scalars = summaries.read_scalars(tmp)
    points = scalars.get("model/sparsity", [])
    assert all(0 <= step < 6 for step, _ in points)
    # Every intact record still in the file is read.
    intact = [i for i, r in enumerate(records) if r in data]
    assert {s for s, _ in points} >= set(intact)
    # Bytes that are not whole records are always reported.
    read = {s for s, _ in points}
    if sum(len(records[s]) for s in read) != len(data):
        assert caught


def test_event_reader_warns_and_keeps_reading(tmp_path):
    path, records = event_file(tmp_path)
    data = bytearray(b"".join(records))
    # Corrupt record 2's data and record 4's header.
    start2 = sum(len(r) for r in records[:2])
    data[start2 + 14] ^= 0xFF
    start4 = sum(len(r) for r in records[:4])
    data[start4 + 3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.warns(events.CorruptEventFileWarning) as caught:
        points = summaries.read_scalars(tmp_path)["model/sparsity"]
    assert [s for s, _ in points] == [0, 1, 3, 5]
    messages = [str(w.message) for w in caught]
    assert any(f"offset {start2}" in m and str(path) in m for m in messages)
    assert any(f"offset {start4}" in m for m in messages)


def test_event_reader_huge_record_length_and_huge_tensor(tmp_path):
    import tracemalloc

    # A record claiming 2**40 bytes.
    header = struct.pack("<Q", 1 << 40)
    bad = header + struct.pack("<I", events._masked_crc32c(header))
    good = tf_record(scalar_event(7, "x", 0.5))
    (tmp_path / "events.out.tfevents.1.a").write_bytes(bad + b"\0" * 8 + good)
    # A ~50-byte summary whose tensor declares 5e8 float elements.
    shape = _field(2, _field(2, _varint(1 << 3) + _varint(500_000_000)))
    tensor = (
        _varint(1 << 3)
        + _varint(1)
        + shape
        + _varint(5 << 3 | 5)
        + struct.pack("<f", 1.0)
    )
    value = _field(1, b"big") + _field(8, tensor)
    event = _varint(2 << 3) + _varint(3) + _field(5, _field(1, value))
    assert len(event) < 60
    (tmp_path / "events.out.tfevents.2.b").write_bytes(tf_record(event))
    tracemalloc.start()
    try:
        with pytest.warns(
            events.CorruptEventFileWarning, match="1099511627776"
        ):
            scalars = summaries.read_scalars(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scalars == {"x": [(7, 0.5)]}
    assert peak < 1 << 20, peak


def test_event_files_skip_fifos_and_symlink_loops(tmp_path):
    import os

    path, _ = event_file(tmp_path)
    os.mkfifo(tmp_path / "events.out.tfevents.9.fifo")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.symlink(tmp_path / "sub", tmp_path / "sub" / "loop2")
    files = summaries.event_files(tmp_path)
    assert files == [(".", str(path))]
    assert len(summaries.read_scalars(tmp_path)["model/sparsity"]) == 6
    with pytest.raises(ValueError, match="empty"):
        summaries.event_files("")
    with pytest.raises(ValueError, match="empty"):
        summaries.report("")


def test_reader_needs_no_tensorboard(tmp_path, monkeypatch):
    event_file(tmp_path)

    def missing():
        raise ImportError("no tensorboard")

    monkeypatch.setattr(events, "_tensorboard", missing)
    assert len(summaries.read_scalars(tmp_path)["model/sparsity"]) == 6
    assert "log dir" in summaries.report(tmp_path)


def test_missing_tensorboard_message_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for name in list(sys.modules):
        if name.startswith("tensorboard."):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(
        ImportError, match=r'pip install "keras-prune\[tensorboard\]"'
    ):
        events._tensorboard.__wrapped__()


def test_json_cost_bounds_real_parse():
    import tracemalloc

    config = copy.deepcopy(
        {
            "layers": [
                {
                    "class_name": "Dense",
                    "config": {
                        "units": i,
                        "name": f"d{i}",
                        "kernel": [1.5, 2, None, "x"] * 3,
                    },
                }
                for i in range(2000)
            ]
        }
    )
    for raw in (
        json.dumps(config).encode(),
        b"[" + b"{}," * 50000 + b"1]",
        b"{" + b",".join(b'"%d":[]' % i for i in range(50000)) + b"}",
    ):
        tracemalloc.start()
        try:
            json.loads(raw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert compress._json_cost(raw) >= peak - len(raw)


@SLOW
@given(
    n=st.integers(0, 3000),
    density=st.floats(0, 1),
    coding=st.sampled_from([_format.BITMAP, _format.GAPS, _format.RICE]),
    dtype=st.sampled_from(["bool", "float32", "int8"]),
    seed=st.integers(0, 2**31),
)
def test_each_mask_coding_in_small_chunks(n, density, coding, dtype, seed):
    """Every mask coding, forced, decoded in chunks of 64 gaps (so varints
    and unary runs straddle chunk boundaries)."""
    rng = np.random.default_rng(seed)
    array = (rng.random(n) < density).astype(dtype)
    if dtype != "bool":
        array *= rng.integers(1, 100, n).astype(dtype)

    def forced_min(*args, **kwargs):
        if len(args) == 1 and kwargs.get("key") is len:
            items = list(args[0])
            if len(items) == 3:  # _encode_mask's bitmap, gaps, rice
                return items[coding]
            return min(items, key=len)
        return min(*args, **kwargs)

    import unittest.mock

    with (
        unittest.mock.patch.object(_format, "min", forced_min, create=True),
        unittest.mock.patch.object(_format, "_GAP_CHUNK", 64),
    ):
        blob = keras_prune.compress_array(array)
        out = keras_prune.decompress_array(blob)
        info = _format.describe_blob(blob)
    assert same_bits(out, array)
    if info["layout"] == "sparse":
        assert info["mask"] == ["bitmap", "gaps", "rice"][coding]


def test_other_backends_optimizer_module_maps_to_public_class():
    import sys

    module = "keras.src.backend.torch.optimizers.torch_adam"
    if module in sys.modules:
        pytest.skip("the torch optimizer module is imported here")
    config = {
        "compile_config": {
            "optimizer": {"module": module, "class_name": "Adam", "config": {}}
        }
    }
    compress._check_modules(config, "t")
    assert config["compile_config"]["optimizer"]["module"] == "keras.optimizers"
    assert module not in sys.modules
    bad = {
        "module": "keras.src.backend.torch.optimizers.torch_adam",
        "class_name": "NotAnOptimizer",
    }
    with pytest.raises(
        keras_prune.CompressedFormatError, match="refusing to import"
    ):
        compress._check_modules(bad, "t")
