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
