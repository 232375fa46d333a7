"""keras_prune.save_compressed / load_compressed / compress_array."""

import io
import math
import struct
import zlib

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_prune
from keras_prune.export import _format
from keras_prune.export import compress

from conftest import to_np

RNG = np.random.default_rng(0)


def sparse(shape, sparsity, dtype="float32", seed=0, random_bits=False):
    """Exactly `round(n * sparsity)` zeros at random positions.

    Values are Gaussian, or with `random_bits` float32 numbers whose 32 bits
    are uniformly random (incompressible; NaNs included).
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if random_bits:
        w = rng.integers(1, 2**32, n, dtype=np.uint32).view(np.float32)
    else:
        w = rng.standard_normal(n).astype(dtype)
    w[w == 0] = 1
    w[rng.permutation(n)[: round(n * sparsity)]] = 0
    return w.reshape(shape)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and (a.tobytes() == b.tobytes())
    )


def tiny_model(prune=False, sparsity=0.75, compile_=True, train=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="d1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(4, name="out"),
        ]
    )
    if prune:
        model = keras_prune.prune_low_magnitude(
            model,
            pruning_schedule=keras_prune.ConstantSparsity(
                sparsity, 0, frequency=1
            ),
        )
    if compile_:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if train:
        x = RNG.random((32, 8)).astype("float32")
        y = np.arange(32) % 4
        callbacks = [keras_prune.UpdatePruningStep()] if prune else []
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=callbacks)
    return model


X = np.random.default_rng(1).random((10, 8)).astype("float32")


def roundtrip(model, **kwargs):
    buf = io.BytesIO()
    n = keras_prune.save_compressed(model, buf, **kwargs)
    data = buf.getvalue()
    assert n == len(data)
    return keras_prune.load_compressed(data), data


# ----------------------------------------------------------- single arrays


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((3, 4), np.float32),
        np.array([-0.0, 0.0, np.nan, 1.0, -np.inf], np.float32),
        np.float32(3.5),
        np.zeros((0, 5), np.float64),
        np.arange(-64, 64, dtype=np.int8).reshape(8, 16),
        RNG.random((5, 7)) < 0.2,
        RNG.standard_normal(300).astype(np.float16),
        RNG.standard_normal((4, 4)).astype(np.float64),
        RNG.integers(-(2**62), 2**62, 50, dtype=np.int64),
        RNG.integers(0, 2**32, (3, 3), dtype=np.uint32),
        sparse((3, 3, 8, 16), 0.9),
    ],
)
def test_array_roundtrip_bit_exact(array):
    out = keras_prune.decompress_array(keras_prune.compress_array(array))
    assert same_bits(out, array)


def test_bfloat16_and_negative_zero_bits():
    import ml_dtypes

    a = sparse((32, 16), 0.8).astype(ml_dtypes.bfloat16)
    a[0, 0] = -0.0
    out = keras_prune.decompress_array(keras_prune.compress_array(a))
    assert same_bits(out, a)
    assert np.signbit(out[0, 0].astype(np.float32))


def test_accepts_backend_tensors():
    w = sparse((16, 8), 0.5)
    blob = keras_prune.compress_array(keras.ops.convert_to_tensor(w))
    assert same_bits(keras_prune.decompress_array(blob), w)
    v = keras.Variable(w)
    assert keras_prune.compress_array(v) == blob


def test_layouts_chosen():
    info = _format.describe_blob(
        keras_prune.compress_array(np.zeros((100, 100), np.float32))
    )
    assert info["layout"] == "zeros" and info["bytes"] == 4 + 3 + 2 + 1 + 4
    info = _format.describe_blob(
        keras_prune.compress_array(np.ones((10, 10), np.float32))
    )
    assert info["layout"] == "dense"
    info = _format.describe_blob(
        keras_prune.compress_array(sparse((256, 256), 0.99))
    )
    assert info["layout"] == "sparse" and info["nnz"] == 655
    assert info["mask"] == "rice"  # i.i.d. positions: Rice codes win
    info = _format.describe_blob(
        keras_prune.compress_array(sparse((256, 256), 0.5))
    )
    assert info["layout"] == "sparse" and info["mask"] == "bitmap"


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_array_size_near_information_bound(sparsity):
    """Random 32-bit values are incompressible: the bound is exact."""
    w = sparse((512, 512), sparsity, seed=3, random_bits=True)
    n = w.size
    h = -(
        sparsity * math.log2(sparsity)
        + (1 - sparsity) * math.log2(1 - sparsity)
    )
    bound = (32 * (1 - sparsity) * n + h * n) / 8
    size = len(keras_prune.compress_array(w))
    assert size <= 1.05 * bound, (size, bound)
    assert size >= 0.99 * bound, (size, bound)  # nobody beats entropy
    # Gaussian values have redundant exponent bits: smaller than the bound.
    gaussian = len(keras_prune.compress_array(sparse((512, 512), sparsity)))
    assert gaussian < 0.97 * bound, (gaussian, bound)


def test_mask_coding_near_entropy():
    """The mask part alone (bool array) costs at most 5% over H(s) bits."""
    for s in (0.5, 0.8, 0.9, 0.95, 0.99):
        mask = sparse((1024, 256), s, seed=5) != 0
        h = -(s * math.log2(s) + (1 - s) * math.log2(1 - s))
        size = len(keras_prune.compress_array(mask))
        assert size <= 1.05 * h * mask.size / 8 + 40, (s, size)
        assert size >= 0.99 * h * mask.size / 8, (s, size)


def test_zlib_codec_roundtrip_and_larger():
    w = sparse((128, 128), 0.9)
    small = keras_prune.compress_array(w)
    fast = keras_prune.compress_array(w, codec="zlib")
    assert same_bits(keras_prune.decompress_array(fast), w)
    assert len(small) <= len(fast)
    with pytest.raises(ValueError, match="codec"):
        keras_prune.compress_array(w, codec="brotli")


def test_unsupported_dtype_is_typeerror():
    with pytest.raises(TypeError, match="dtype"):
        keras_prune.compress_array(np.array(["a"]))
    with pytest.raises(TypeError, match="dtype"):
        keras_prune.compress_array(np.zeros(3, "datetime64[s]"))
    # complex64/complex128 are supported since issue 15 ("every dtype").
    for dtype in (np.complex64, np.complex128):
        z = np.array([0, -0.0 + 1j, complex(np.nan, -0.0)], dtype)
        assert same_bits(
            keras_prune.decompress_array(keras_prune.compress_array(z)), z
        )


# ------------------------------------------------------------ whole models


def test_stripped_model_roundtrip_bit_identical():
    pruned = tiny_model(prune=True)
    model = keras_prune.strip_pruning(pruned)
    # strip_pruning returns an uncompiled model (issue 17 item 9); the
    # file keeps the compile settings of a model compiled for export.
    assert not model.compiled
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loaded, _ = roundtrip(model)
    assert [v.name for v in loaded.weights] == [v.name for v in model.weights]
    for a, b in zip(model.weights, loaded.weights):
        assert same_bits(to_np(a), to_np(b))
    assert same_bits(model.predict(X, verbose=0), loaded.predict(X, verbose=0))
    kernel = to_np(loaded.get_layer("d1").kernel)
    assert np.count_nonzero(kernel == 0) == 96  # 75% of 8 * 16
    assert loaded.compiled and loaded.loss == "sparse_categorical_crossentropy"


def test_pruning_model_roundtrip_keeps_wrappers_and_resumes():
    model = tiny_model(prune=True)
    loaded, data = roundtrip(model)
    wrappers = keras_prune.integration.strip.pruning_wrappers(loaded)
    assert len(wrappers) == 2
    for a, b in zip(model.weights, loaded.weights):
        assert same_bits(to_np(a), to_np(b)), a.path
    assert int(to_np(wrappers[0].pruning_step)) == 2
    assert same_bits(model.predict(X, verbose=0), loaded.predict(X, verbose=0))
    # Masks are stored as references to their kernel's non-zeros: free.
    header, _ = compress._parse(data, "t", 1 << 30)
    refs = [e for e in header["tensors"] if "nonzero_of" in e]
    assert len(refs) == 2 and all(e["size"] == 0 for e in refs)
    # Training continues from the stored step.
    x = RNG.random((16, 8)).astype("float32")
    loaded.fit(
        x,
        np.arange(16) % 4,
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    assert int(to_np(wrappers[0].pruning_step)) == 3


def test_mask_differing_from_kernel_is_stored():
    model = tiny_model(prune=True, train=False)
    wrapper = keras_prune.integration.strip.pruning_wrappers(model)[0]
    kernel = to_np(wrapper.pruned_weights[0])
    kernel[0, 0] = 0.0  # kept by the (all-ones) mask, yet zero
    wrapper.pruned_weights[0].assign(kernel)
    loaded, data = roundtrip(model)
    header, _ = compress._parse(data, "t", 1 << 30)
    assert not any(
        "nonzero_of" in e and e["path"].endswith("prune_low_magnitude_d1/vars")
        for e in header["tensors"]
    )
    mask = to_np(
        keras_prune.integration.strip.pruning_wrappers(loaded)[0].masks[0]
    )
    assert mask.all()
    assert same_bits(model.predict(X, verbose=0), loaded.predict(X, verbose=0))


def test_optimizer_state_optional():
    model = tiny_model(prune=False)
    loaded, small = roundtrip(model)
    assert loaded.compiled
    assert int(to_np(loaded.optimizer.iterations)) == 0
    loaded, big = roundtrip(model, include_optimizer=True)
    assert int(to_np(loaded.optimizer.iterations)) == 2
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        assert same_bits(to_np(a), to_np(b))
    assert len(big) > len(small)


def test_uncompiled_and_compile_false():
    model = tiny_model(compile_=False, train=False)
    loaded, data = roundtrip(model)
    assert not loaded.compiled
    compiled = tiny_model(train=False)
    buf = io.BytesIO()
    keras_prune.save_compressed(compiled, buf)
    assert not keras_prune.load_compressed(
        buf.getvalue(), compile=False
    ).compiled


def test_functional_and_conv_model_roundtrip(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, name="c")(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, name="o")(h)
    model = keras.Model(inputs, outputs)
    pruned = keras_prune.prune_low_magnitude(
        model, pruning_schedule=keras_prune.ConstantSparsity(0.5, 0)
    )
    pruned(np.zeros((1, 6, 6, 2), "float32"), training=True)
    final = keras_prune.strip_pruning(pruned)
    path = tmp_path / "m.kpz"
    keras_prune.save_compressed(final, str(path))
    assert compress.is_compressed_file(str(path))
    loaded = keras_prune.load_compressed(str(path))
    x = RNG.random((2, 6, 6, 2)).astype("float32")
    assert same_bits(final.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert np.count_nonzero(to_np(loaded.get_layer("c").kernel)) == 36


def test_int8_quantized_model_keeps_zeros_and_roundtrips():
    final = keras_prune.strip_pruning(tiny_model(prune=True, sparsity=0.75))
    kernel = to_np(final.get_layer("d1").kernel)
    final.quantize("int8")
    layer = final.get_layer("d1")
    q = to_np(layer._kernel)
    assert q.dtype == np.int8
    # Symmetric abs-max quantization maps 0 to 0 and nothing else to 0
    # unless it is tiny relative to the channel's maximum.
    assert np.array_equal(q == 0, kernel == 0)
    scale = to_np(layer.kernel_scale)
    expected = np.clip(np.round(kernel * scale), -127, 127).astype(np.int8)
    assert np.array_equal(q, expected)
    loaded, _ = roundtrip(final)
    assert to_np(loaded.get_layer("d1")._kernel).dtype == np.int8
    for a, b in zip(final.weights, loaded.weights):
        assert same_bits(to_np(a), to_np(b))
    assert same_bits(final.predict(X, verbose=0), loaded.predict(X, verbose=0))


def test_rejects_unbuilt_and_non_models():
    with pytest.raises(ValueError, match="built"):
        keras_prune.save_compressed(
            keras.Sequential([keras.layers.Dense(2)]), io.BytesIO()
        )
    with pytest.raises(ValueError, match="keras.Model"):
        keras_prune.save_compressed(keras.layers.Dense(2), io.BytesIO())


def test_lambda_layers_are_refused_on_load():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Lambda(lambda x: x * 2),
            keras.layers.Dense(2),
        ]
    )
    buf = io.BytesIO()
    keras_prune.save_compressed(model, buf)
    with pytest.raises(
        keras_prune.CompressedFormatError, match="cannot be deserialised safely"
    ):
        keras_prune.load_compressed(buf.getvalue())


# ---------------------------------------------- size targets (synthetic)


def dense_mlp_with(kernels_sparsity, seed=0):
    """The digits MLP shape with Gaussian-like weights, pruned exactly."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(512, name="a"),
            keras.layers.Dense(10, name="b"),
        ]
    )
    for i, layer in enumerate(model.layers):
        layer.kernel.assign(
            sparse(tuple(layer.kernel.shape), kernels_sparsity, seed=seed + i)
            * 0.05
        )
    return model


@pytest.mark.parametrize("s,min_ratio", [(0.9, 8.3), (0.99, 60.0)])
def test_whole_model_ratio_vs_dense_keras(tmp_path, s, min_ratio):
    model = dense_mlp_with(s)
    path = tmp_path / "d.keras"
    model.save(str(path))
    dense = path.stat().st_size
    ours = keras_prune.save_compressed(model, io.BytesIO())
    assert dense / ours >= min_ratio, (dense, ours)


def test_int8_size_near_its_bound(tmp_path):
    model = dense_mlp_with(0.9)
    path = tmp_path / "d.keras"
    model.save(str(path))
    dense = path.stat().st_size
    model.quantize("int8")
    ours = keras_prune.save_compressed(model, io.BytesIO())
    h = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    kernels = 64 * 512 + 512 * 10
    scales = 512 + 10  # float32 per output channel; the biases are all 0
    bound = (kernels * (8 * 0.1 + h) + scales * 32) / 8
    # Within 5% of the int8 bound, plus about 1 KB of config and headers.
    assert ours <= 1.05 * bound + 1200, (ours, bound)
    assert dense / ours >= 19.0, (dense, ours)


# ----------------------------------------------------- malformed files


@pytest.fixture(scope="module")
def valid_file():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="d"),
            keras.layers.Dense(2, name="o"),
        ]
    )
    model.get_layer("d").kernel.assign(sparse((3, 4), 0.5))
    buf = io.BytesIO()
    keras_prune.save_compressed(model, buf)
    return buf.getvalue()


def with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


def rebuild(data, header=None, blobs=None, magic=None, version=None):
    """Reassembles a file from (possibly altered) parts, valid CRC."""
    header0, offsets = compress._parse(data, "t", 1 << 30)
    if blobs is None:
        blobs = [
            data[o : o + e["size"]] for e, o in zip(header0["tensors"], offsets)
        ]
    import json

    header = header0 if header is None else header
    raw = json.dumps(header).encode()
    body = b"".join(
        [
            magic or compress.MAGIC,
            struct.pack("<H", compress.VERSION if version is None else version),
            _format.encode_stream(raw, "lzma", "mask"),
            *blobs,
        ]
    )
    return with_crc(body)


def err(data, match):
    with pytest.raises(keras_prune.CompressedFormatError, match=match):
        keras_prune.load_compressed(data)


def test_valid_file_loads(valid_file):
    model = keras_prune.load_compressed(valid_file)
    assert same_bits(to_np(model.get_layer("d").kernel), sparse((3, 4), 0.5))
    # The test helper that reassembles files produces loadable files.
    again = keras_prune.load_compressed(rebuild(valid_file))
    assert same_bits(to_np(again.get_layer("d").kernel), sparse((3, 4), 0.5))


def test_error_is_valueerror_subclass():
    assert issubclass(keras_prune.CompressedFormatError, ValueError)


def test_malformed_catalogue(valid_file):
    import copy

    d = valid_file
    err(b"", "truncated")
    err(d[:10], "truncated")
    err(d[:-1], "checksum")
    err(d + b"\0", "checksum")
    err(b"XXXXXXXX" + d[8:], "wrong magic")
    err(b"PK\x03\x04" + d[4:], "zip")
    err(d[:8] + struct.pack("<H", 9) + d[10:], "version 9")
    flipped = bytearray(d)
    flipped[len(d) // 2] ^= 0x10
    err(bytes(flipped), "checksum")
    header, offsets = compress._parse(d, "t", 1 << 30)

    def altered(fn):
        h = copy.deepcopy(header)
        fn(h)
        return rebuild(d, header=h)

    err(rebuild(d, magic=None, version=2), "version 2")
    err(altered(lambda h: h.update(format="zip")), "format")
    err(altered(lambda h: h.update(version=7)), "header version")
    err(altered(lambda h: h.pop("config")), "config")
    err(altered(lambda h: h.update(tensors="x")), "not a list")
    err(altered(lambda h: h["tensors"][0].pop("shape")), "'shape'")
    err(
        altered(lambda h: h["tensors"][0].update(shape=[-1, 4])),
        "invalid shape",
    )
    err(
        altered(lambda h: h["tensors"][0].update(dtype="object")),
        "unsupported dtype",
    )
    err(altered(lambda h: h["tensors"][0].update(size=10**9)), "truncated")
    err(
        altered(
            lambda h: h["tensors"][0].update(size=h["tensors"][0]["size"] - 1)
        ),
        "unexpected bytes|truncated",
    )
    err(
        altered(lambda h: h["tensors"][1].update(nonzero_of=5)),
        "mask reference",
    )
    err(
        altered(lambda h: h["tensors"].append(dict(h["tensors"][0]))),
        "duplicate|truncated",
    )
    # The table must match the model built from the config.
    err(
        altered(lambda h: h["tensors"][0].update(shape=[4, 3])),
        "model expects float32\\[3, 4\\]",
    )
    err(
        altered(lambda h: h["tensors"][0].update(key="9")),
        "does not match the model",
    )
    err(
        altered(
            lambda h: h["config"]["config"]["layers"][2]["config"].update(
                units=3
            )
        ),
        "model expects float32\\[4, 3\\]",
    )
    err(
        altered(lambda h: h["config"].update(class_name="NoSuchModel")),
        "cannot be deserialised",
    )
    # Table/blob disagreement (blob shape differs from table shape).
    blobs = [d[o : o + e["size"]] for e, o in zip(header["tensors"], offsets)]
    other = keras_prune.compress_array(np.ones((3, 5), np.float32))
    h = copy.deepcopy(header)
    h["tensors"][0]["size"] = len(other)
    err(
        rebuild(d, header=h, blobs=[other] + blobs[1:]),
        "the file's table says float32\\[3, 4\\]",
    )
    # A corrupt compressed stream inside a blob, with valid checksums.
    bad = with_crc(
        _format.ARRAY_MAGIC
        + bytes([1, 12, 2, 3, 4, 0, 0, 1, _format.LZMA, 0, 48, 5])
        + b"\xff" * 5
    )
    h = copy.deepcopy(header)
    h["tensors"][0]["size"] = len(bad)
    err(
        rebuild(d, header=h, blobs=[bad] + blobs[1:]),
        "tensor #0 .*corrupt lzma stream",
    )
    # Header stream corrupt (valid outer CRC).
    body = (
        d[:10]
        + bytes([_format.LZMA, 93])
        + _format.write_varint(50)
        + _format.write_varint(5)
        + b"\x00\x01\x02\x03\x04"
    )
    err(with_crc(body), "header")
    # Header too large for the file.
    body = d[:10] + bytes([_format.STORED]) + _format.write_varint(2**40)
    err(with_crc(body), "header: raw length")
    # Header not JSON / not an object.
    for raw, match in ((b"\xff\xfe", "UTF-8 JSON"), (b"[1, 2]", "object")):
        body = d[:10] + _format.encode_stream(raw, "stored")
        err(with_crc(body), match)


def test_array_blob_catalogue():
    good = keras_prune.compress_array(sparse((8, 8), 0.75))

    def e(data, match, verify=True):
        with pytest.raises(keras_prune.CompressedFormatError, match=match):
            _format.decompress_array(data, verify=verify)

    e(b"", "truncated")
    e(good[:-1], "checksum")
    e(b"NOPE" + good[4:], "wrong magic")
    body = bytearray(good[:-4])
    body[4] = 2
    e(with_crc(bytes(body)), "version 2")
    body = bytearray(good[:-4])
    body[5] = 99
    e(with_crc(bytes(body)), "dtype code 99")
    # Huge declared shape: refused before any allocation.
    huge = (
        _format.ARRAY_MAGIC
        + bytes([1, 12, 2])
        + _format.write_varint(2**40)
        + _format.write_varint(2**40)
        + bytes([_format.ZEROS])
    )
    e(with_crc(huge), "limit")
    e(with_crc(_format.ARRAY_MAGIC + bytes([1, 12, 40]) + bytes(8)), "rank 40")
    e(
        with_crc(_format.ARRAY_MAGIC + bytes([1, 12, 1, 4, 7])),
        "unknown layout 7",
    )
    e(
        with_crc(_format.ARRAY_MAGIC + bytes([1, 12, 1, 4, 0, 1])),
        "invalid element order",
    )
    # nnz larger than the array.
    e(
        with_crc(_format.ARRAY_MAGIC + bytes([1, 12, 1, 4, 1, 0, 9])),
        "9 non-zeros in an array of 4",
    )
    # Stored stream shorter than claimed.
    e(
        with_crc(
            _format.ARRAY_MAGIC
            + bytes([1, 12, 1, 2, 0, 0, 0, 0])
            + _format.write_varint(8)
            + _format.write_varint(8)
            + b"1234"
        ),
        "truncated",
    )
    e(
        with_crc(
            _format.ARRAY_MAGIC
            + bytes([1, 12, 1, 2, 0, 0, 0, 0])
            + _format.write_varint(7)
            + _format.write_varint(7)
            + b"1234567"
        ),
        "raw length 7",
    )
    # Bitmap with more bits set than nnz says.
    mask = np.packbits(np.array([1, 1, 1, 0], bool)).tobytes()
    blob = (
        _format.ARRAY_MAGIC
        + bytes([1, 12, 1, 4, 1, 0, 2, 0])
        + bytes([_format.STORED])
        + _format.write_varint(1)
        + _format.write_varint(1)
        + mask
    )
    e(with_crc(blob), "3 bits set")
    # Gaps pointing past the end.
    gaps = _format.encode_varints([0, 9])
    blob = (
        _format.ARRAY_MAGIC
        + bytes([1, 12, 1, 4, 1, 0, 2, 1])
        + bytes([_format.STORED])
        + _format.write_varint(len(gaps))
        + _format.write_varint(len(gaps))
        + gaps
    )
    e(with_crc(blob), "past the 4 elements")
    # Unknown codec; invalid lzma properties; trailing bytes.
    e(
        with_crc(_format.ARRAY_MAGIC + bytes([1, 12, 1, 2, 0, 0, 0, 9])),
        "unknown codec 9",
    )
    e(
        with_crc(_format.ARRAY_MAGIC + bytes([1, 12, 1, 2, 0, 0, 0, 2, 250])),
        "invalid lzma properties",
    )
    e(with_crc(good[:-4] + b"\0"), "unexpected bytes")
    # A stored zero in the non-zero values.
    blob = (
        _format.ARRAY_MAGIC
        + bytes([1, 2, 1, 4, 1, 0, 1, 0])
        + bytes([_format.STORED, 1, 1])
        + bytes([0x80])
        + bytes([0, _format.STORED, 1, 1, 0])
    )
    e(with_crc(blob), "stored non-zero value is zero")
    with pytest.raises(TypeError):
        keras_prune.decompress_array("not bytes")


def test_expansion_cap():
    big = np.zeros((2048, 2048), np.float32)  # 16 MiB of zeros
    big[0, 0] = 1
    blob = keras_prune.compress_array(big)
    assert len(blob) < 200
    # 16 MiB from < 200 bytes is past the default expansion limit ...
    with pytest.raises(keras_prune.CompressedFormatError, match="limit"):
        keras_prune.decompress_array(blob)
    with pytest.raises(keras_prune.CompressedFormatError, match="limit"):
        keras_prune.decompress_array(blob, max_bytes=1 << 20)
    # ... and loads when allowed explicitly.
    assert same_bits(keras_prune.decompress_array(blob, max_bytes=1 << 25), big)


# ------------------------------------------------------------------ fuzz


def mutate(data, op, pos, value, length):
    pos %= len(data) + 1
    if op == "flip":
        pos %= len(data)
        out = bytearray(data)
        out[pos] ^= 1 << (value % 8)
        return bytes(out)
    if op == "truncate":
        return data[:pos]
    if op == "insert":
        return data[:pos] + bytes([value % 256]) * length + data[pos:]
    if op == "delete":
        return data[:pos] + data[pos + length :]
    out = bytearray(data)
    for i in range(pos, min(pos + length, len(out))):
        out[i] = value % 256
    return bytes(out)


MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]),
    st.integers(0, 10**6),
    st.integers(0, 255),
    st.integers(1, 16),
)
FUZZ = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzz_model_file(valid_file, mutations):
    data = valid_file
    for m in mutations:
        data = mutate(data, *m)
    try:
        model = keras_prune.load_compressed(data)
    except keras_prune.CompressedFormatError:
        return
    # Only a no-op mutation (e.g. overwrite with the same byte) can load.
    assert data == valid_file
    assert model.get_layer("d").kernel.shape == (3, 4)


ARRAY_BLOB = keras_prune.compress_array(sparse((6, 9), 0.7))
BITMAP_BLOB = keras_prune.compress_array(sparse((40, 40), 0.5, seed=2))


@FUZZ
@given(
    mutations=st.lists(MUTATION, min_size=1, max_size=3), which=st.booleans()
)
def test_fuzz_array_parser_without_checksum(mutations, which):
    """Skipping the CRC exercises every parser check on garbage."""
    data = ARRAY_BLOB if which else BITMAP_BLOB
    for m in mutations:
        data = mutate(data, *m)
    try:
        out = _format.decompress_array(data, max_bytes=1 << 20, verify=False)
    except keras_prune.CompressedFormatError:
        return
    assert isinstance(out, np.ndarray) and out.nbytes <= 1 << 20


# ------------------------------------------------------ across backends

_LOAD_ELSEWHERE = """
import sys
import numpy as np
import keras
import keras_prune

path, x_path, out = sys.argv[1:]
model = keras_prune.load_compressed(path)
wrappers = keras_prune.integration.strip.pruning_wrappers(model)
np.savez(
    out,
    predictions=model.predict(np.load(x_path), verbose=0),
    step=np.asarray(keras_prune.pruning_step(model)),
    n_wrappers=np.asarray(len(wrappers)),
    **{f"w_{i}": keras.ops.convert_to_numpy(v)
       for i, v in enumerate(model.weights)},
)
"""


@pytest.mark.parametrize(
    "other",
    [b for b in ("jax", "tensorflow", "torch") if b != keras.backend.backend()],
)
def test_compressed_file_loads_on_other_backend(other, tmp_path):
    import os
    import subprocess
    import sys

    model = tiny_model(prune=True)
    path = tmp_path / "m.kpz"
    keras_prune.save_compressed(model, str(path))
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "out.npz"
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _LOAD_ELSEWHERE,
            str(path),
            str(tmp_path / "x.npy"),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    got = dict(np.load(out))
    assert int(got["n_wrappers"]) == 2
    assert int(got["step"]) == 2
    assert sum(k.startswith("w_") for k in got) == len(model.weights)
    for i, v in enumerate(model.weights):
        assert same_bits(got[f"w_{i}"], to_np(v)), v.path
    # Same weights; a different backend may round the forward pass apart.
    np.testing.assert_allclose(
        got["predictions"], model.predict(X, verbose=0), rtol=1e-6, atol=1e-6
    )


# ------------------------------------- hostile files, atomic writes (#15)

_MEMORY_PROBE = r"""
import io, json, resource, struct, sys, zlib
import numpy as np
import keras
import keras_prune
from keras_prune.export import _format, compress

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def crc(body):
    return body + struct.pack("<I", zlib.crc32(body))

def file_with(header, blobs):
    raw = json.dumps(header).encode()
    return crc(b"".join([compress.MAGIC, struct.pack("<H", 1),
                         _format.encode_stream(raw, "zlib", "mask"), *blobs]))

model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(4, name="d")])
model.compile("adam", "mse")
buf = io.BytesIO()
keras_prune.save_compressed(model, buf)
data = buf.getvalue()
keras_prune.load_compressed(data)          # warm up: imports, compilation
header, offsets = compress._parse(data, "t", 1 << 30)
blobs = [data[o:o + e["size"]] for e, o in zip(header["tensors"], offsets)]
hostile = {}
h = json.loads(json.dumps(header))
h["config"]["config"]["layers"][-1]["config"]["units"] = 1 << 24
hostile["dense-2^24"] = file_with(h, blobs)
h = json.loads(json.dumps(header))
h["config"]["config"]["layers"][-1]["config"]["units"] = 1 << 24
h["config"]["config"]["layers"][-1]["config"]["use_bias"] = False
hostile["dense-2^24-no-bias"] = file_with(h, blobs)
hostile["json-objects"] = crc(b"".join([
    compress.MAGIC, struct.pack("<H", 1),
    _format.encode_stream(
        b"[" + b"{}," * 20_000_000 + b"{}]", "zlib", "mask")]))
zeros = zlib.compress(b"\0" * (256 << 20), 9)
hostile["zlib-raw-0"] = crc(b"".join([
    compress.MAGIC, struct.pack("<H", 1), bytes([_format.ZLIB]),
    _format.write_varint(0), _format.write_varint(len(zeros)), zeros]))
before = peak_mb()
out = {}
for name, blob in hostile.items():
    for max_bytes in (None, 100_000):
        try:
            keras_prune.load_compressed(blob, max_bytes=max_bytes)
            out[f"{name}/{max_bytes}"] = "loaded"
        except keras_prune.CompressedFormatError as e:
            out[f"{name}/{max_bytes}"] = "refused"
        except BaseException as e:
            out[f"{name}/{max_bytes}"] = type(e).__name__
out["sizes"] = {k: len(v) for k, v in hostile.items()}
out["growth_mb"] = peak_mb() - before
print(json.dumps(out))
"""


def test_hostile_files_refused_within_memory_bound(tmp_path):
    """Config bombs, header JSON bombs and an unbounded zlib stream: each
    refused with CompressedFormatError, the process's peak memory growing
    by far less than any of them would take (measured in a fresh process:
    ru_maxrss only ever grows)."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    sizes = out.pop("sizes")
    growth = out.pop("growth_mb")
    assert set(out.values()) == {"refused"}, out
    assert max(sizes.values()) < 300_000, sizes
    # 2**24 x 100 float32 is 6.4 GiB; 20M JSON objects about 1.4 GiB;
    # the zlib stream 256 MiB.
    assert growth < 150, growth


def test_save_compressed_is_atomic(tmp_path, monkeypatch):
    import os

    model = tiny_model(train=False)
    path = tmp_path / "m.kpz"
    keras_prune.save_compressed(model, str(path))
    good = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        keras_prune.save_compressed(model, str(path), codec="zlib")
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["m.kpz"]
    # Permissions as a plain open() would give them, not mkstemp's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


_FSIZE_PROBE = r"""
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of a kill
from keras_prune.export.compress import write_atomic
path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_atomic(path, b"x" * 100_000)
except OSError as e:
    print("OSError", e.errno)
else:
    print("written")
"""


def test_write_atomic_under_file_size_limit(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "m.kpz"
    path.write_bytes(b"previous good file")
    result = subprocess.run(
        [sys.executable, "-c", _FSIZE_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == "OSError"
    assert path.read_bytes() == b"previous good file"
    assert os.listdir(tmp_path) == ["m.kpz"]
