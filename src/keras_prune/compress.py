"""Compressed, lossless model files: `save_compressed` / `load_compressed`.

A model file holds the model's Keras config (JSON, the same dict a `.keras`
file holds), and every array Keras itself would save (the same walk over
layers and their `save_own_variables`), each compressed with
`compress_array`: sparse tensors as a mask plus their non-zero values. The
loaded model has bit-identical weights, so it predicts bit-identically.

Layout (all integers little-endian, varints LEB128; see
docs/compression.md):

    magic        8 bytes  b"\\x89KPRZ\\r\\n\\x1a"
    version      u16      1
    header       stream   (codec u8, [props u8], raw len, stored len, bytes)
                          UTF-8 JSON: config, tensor table, versions
    tensors      blobs    one `compress_array` blob per table entry, in
                          table order, each `size` bytes; or none for an
                          entry that is a reference (a pruning mask equal
                          to the non-zero pattern of another tensor)
    crc32        u32      of every byte before it

Reading never unpickles and never runs code from the file: the config is
deserialised with Keras' `safe_mode=True` (no lambdas), every length is
checked against the bytes left and against caps before anything is
allocated, the tensor table is checked against the shapes the rebuilt model
expects before any tensor is decoded, and every problem raises
`CompressedFormatError`.
"""

import json
import os
import struct
import warnings
import zlib

import numpy as np

from keras_prune import _format
from keras_prune._format import CompressedFormatError
from keras_prune._format import compress_array
from keras_prune._format import decompress_array

__all__ = [
    "CompressedFormatError",
    "compress_array",
    "decompress_array",
    "is_compressed_file",
    "load_compressed",
    "save_compressed",
]

MAGIC = b"\x89KPRZ\r\n\x1a"
VERSION = 1
FORMAT_NAME = "keras-prune-compressed"
MAX_HEADER_BYTES = 1 << 26  # 64 MiB of JSON
_MIN_FILE = len(MAGIC) + 2 + 3 + 4


# ----------------------------------------------------------- Keras stores


def _saving_lib():
    from keras.src.saving import saving_lib

    return saving_lib


def _store_base():
    # Keras checks the store type; an `NpzIOStore` subclass passes the check
    # and gets the plain dict interface (`make` / `get`) Keras uses.
    return _saving_lib().NpzIOStore


class _MemoryStore:
    """In-memory weights store: `{inner_path: {key: value}}`."""

    def __init__(self, contents=None, shapes_only=False):
        self.contents = {} if contents is None else contents
        self.shapes_only = shapes_only
        self.mode = "w"

    def make(self, path, metadata=None):
        del metadata
        store = _ShapeDict() if self.shapes_only else {}
        self.contents[path or "__root__"] = store
        return store

    def get(self, path):
        return dict(self.contents.get(path or "__root__", {}))

    def has_path(self, path):
        return (path or "__root__") in self.contents

    def close(self):
        pass


class _ShapeDict(dict):
    """Records `(shape, dtype)` instead of values (for the shape check)."""

    def __setitem__(self, key, value):
        shape = getattr(value, "shape", None)
        if shape is None:
            shape = np.shape(value)
        super().__setitem__(
            key, (tuple(int(d) for d in shape), _dtype_name(value)))


def _dtype_name(value):
    import keras

    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    try:
        return keras.backend.standardize_dtype(dtype)
    except Exception:  # noqa: BLE001
        return np.dtype(dtype).name


def _make_store(**kwargs):
    base = _store_base()
    cls = type("KerasPruneMemoryStore", (_MemoryStore, base), {})
    obj = cls.__new__(cls)
    _MemoryStore.__init__(obj, **kwargs)
    return obj


def _collect_state(model, include_optimizer, shapes_only=False):
    """`{(path, key): value}` of everything Keras saves for `model`."""
    store = _make_store(shapes_only=shapes_only)
    _saving_lib()._save_state(
        model, weights_store=store, assets_store=None, inner_path="",
        visited_saveables=set(),
    )
    out = {}
    for path, values in store.contents.items():
        if not include_optimizer and _is_optimizer_path(path):
            continue
        for key, value in values.items():
            out[(path, key)] = value
    return out


def _is_optimizer_path(path):
    return path == "optimizer" or path.startswith("optimizer/")


def _to_numpy(value):
    import keras

    if isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


# ---------------------------------------------------------------- saving


def _serialize_config(model):
    import keras
    from keras.src.saving.serialization_lib import ObjectSharingScope

    with ObjectSharingScope():
        config = keras.saving.serialize_keras_object(model)
    return config


def _has_assets(model):
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if hasattr(layer, "save_assets"):
            return layer
    return None


def _find_mask_source(mask, candidates):
    """Index of an earlier non-bool tensor whose non-zeros equal `mask`."""
    for index, value in candidates:
        if value.shape == mask.shape and np.array_equal(
                _format._nonzero_bits(value.ravel()), mask.ravel()):
            return index
    return None


def save_compressed(model, path, include_optimizer=False, codec="lzma"):
    """Saves a whole model, losslessly, in keras-prune's compressed format.

    Stores the model's Keras config (architecture; compile config when
    compiled), every weight (sparse ones as mask + non-zero values), and
    the optimizer's variables when `include_optimizer=True`. Works for
    stripped models, models still being pruned (wrappers, masks, thresholds
    and the pruning step are kept, so training can resume; a mask equal to
    its kernel's non-zero pattern costs a few bytes), and models quantized
    with `model.quantize("int8")`.

    Args:
        model: A built `keras.Model`.
        path: File path (by convention `.kpz`) or writable binary file object.
        include_optimizer: Also store the optimizer's variables.
        codec: `'lzma'` (default, smallest) or `'zlib'` (faster).

    Returns:
        The number of bytes written.

    Raises:
        ValueError: the model is not built, or has assets (lookup
            vocabularies), which this format does not store.

    Example:

    ```python
    final = keras_prune.strip_pruning(pruned)
    keras_prune.save_compressed(final, "model.kpz")
    same = keras_prune.load_compressed("model.kpz")
    ```
    """
    import keras

    import keras_prune

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"save_compressed expects a keras.Model, got {model!r}.")
    if not model.built:
        raise ValueError(
            "save_compressed needs a built model: call it on data or build "
            "it first.")
    layer = _has_assets(model)
    if layer is not None:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) saves assets "
            "(e.g. a vocabulary), which keras-prune's compressed format does "
            "not store. Use model.save('model.keras') for this model.")
    config = _serialize_config(model)
    state = _collect_state(model, include_optimizer)
    arrays = [np.require(_to_numpy(value), requirements="C")
              for value in state.values()]
    candidates = [(i, a) for i, a in enumerate(arrays)
                  if a.dtype != np.bool_]
    table, blobs = [], []
    for (inner_path, key), array in zip(state, arrays):
        entry = {"path": inner_path, "key": key,
                 "dtype": _format._dtype(np.dtype(array.dtype).name).name,
                 "shape": list(array.shape)}
        source = None
        if array.dtype == np.bool_ and array.size:
            # A pruning mask is usually the non-zero pattern of its kernel
            # (stored elsewhere in the table): store a reference instead.
            source = _find_mask_source(array, candidates)
        if source is not None:
            entry["nonzero_of"] = source
            entry["size"] = 0
        else:
            blob = compress_array(array, codec=codec)
            blobs.append(blob)
            entry["size"] = len(blob)
        table.append(entry)
    header = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "keras_version": keras.__version__,
        "keras_prune_version": keras_prune.__version__,
        "backend": keras.backend.backend(),
        "include_optimizer": bool(include_optimizer),
        "config": config,
        "tensors": table,
    }
    header_json = json.dumps(header, separators=(",", ":")).encode("utf-8")
    body = b"".join([MAGIC, struct.pack("<H", VERSION),
                     _format.encode_stream(header_json, codec, "mask"),
                     *blobs])
    data = body + struct.pack("<I", zlib.crc32(body))
    if hasattr(path, "write"):
        path.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return len(data)


# ---------------------------------------------------------------- loading


def is_compressed_file(path):
    """Whether `path` starts with the compressed-model magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _read_bytes(path, max_bytes):
    max_bytes = _format.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(path, (bytes, bytearray, memoryview)):
        return bytes(path)
    if hasattr(path, "read"):
        data = path.read(max_bytes + 1)
    else:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise CompressedFormatError(
                f"{path}: file of {size} bytes exceeds max_bytes={max_bytes}")
        with open(path, "rb") as f:
            data = f.read()
    if len(data) > max_bytes:
        raise CompressedFormatError(
            f"file exceeds max_bytes={max_bytes}")
    return data


def _fail(what, message):
    raise CompressedFormatError(f"{what}: {message}")


def _check_table(table, what):
    if not isinstance(table, list):
        _fail(what, "header 'tensors' is not a list")
    seen = set()
    for i, entry in enumerate(table):
        where = f"{what}: tensor #{i}"
        if not isinstance(entry, dict):
            raise CompressedFormatError(f"{where} is not an object")
        for field, types in (("path", str), ("key", str), ("dtype", str),
                             ("shape", list), ("size", int)):
            if not isinstance(entry.get(field), types) or isinstance(
                    entry.get(field), bool):
                raise CompressedFormatError(
                    f"{where}: field {field!r} missing or not a "
                    f"{types.__name__}")
        if len(entry["shape"]) > _format.MAX_NDIM or not all(
                isinstance(d, int) and not isinstance(d, bool)
                and 0 <= d < (1 << 48) for d in entry["shape"]):
            raise CompressedFormatError(
                f"{where}: invalid shape {entry['shape']!r}")
        if entry["dtype"] not in _format._CODE_OF_DTYPE:
            raise CompressedFormatError(
                f"{where}: unsupported dtype {entry['dtype']!r}")
        if entry["size"] < 0:
            raise CompressedFormatError(f"{where}: negative size")
        ref = entry.get("nonzero_of")
        if ref is not None:
            if (not isinstance(ref, int) or isinstance(ref, bool)
                    or not 0 <= ref < len(table) or ref == i
                    or not isinstance(table[ref], dict)
                    or entry["size"] != 0
                    or entry["dtype"] != "bool"
                    or table[ref].get("nonzero_of") is not None
                    or table[ref].get("shape") != entry["shape"]):
                raise CompressedFormatError(
                    f"{where}: invalid mask reference {ref!r}")
        name = (entry["path"], entry["key"])
        if name in seen:
            raise CompressedFormatError(
                f"{where}: duplicate entry {entry['path']}/{entry['key']}")
        seen.add(name)


def _parse(data, what, max_bytes, verify=True):
    """Checks the container; returns `(header, [(entry, offset)])`."""
    if len(data) < _MIN_FILE:
        _fail(what, f"truncated: {len(data)} bytes is shorter than the "
                    "smallest compressed model file")
    if data[:len(MAGIC)] != MAGIC:
        if data[:2] == b"PK":
            _fail(what, "wrong magic: this is a zip (.keras) file, not a "
                        "keras-prune compressed model; use "
                        "keras.saving.load_model")
        _fail(what, f"wrong magic {data[:len(MAGIC)]!r}: not a keras-prune "
                    "compressed model")
    version = struct.unpack("<H", data[len(MAGIC):len(MAGIC) + 2])[0]
    if version != VERSION:
        _fail(what, f"unsupported format version {version} (this "
                    f"keras-prune reads version {VERSION})")
    if verify:
        _format.verify_crc(data, what)
    reader = _format.Reader(data, what, offset=len(MAGIC) + 2,
                            end=len(data) - 4)
    raw = _format.decode_stream(
        reader, None, "header",
        length_range=(2, min(MAX_HEADER_BYTES,
                             _format.expansion_limit(len(data), max_bytes))))
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        _fail(what, f"header is not valid UTF-8 JSON ({e})")
    if not isinstance(header, dict):
        _fail(what, "header is not a JSON object")
    if header.get("format") != FORMAT_NAME:
        _fail(what, f"header format is {header.get('format')!r}, expected "
                    f"{FORMAT_NAME!r}")
    if header.get("version") != VERSION:
        _fail(what, f"header version {header.get('version')!r} does not "
                    f"match the file version {VERSION}")
    if not isinstance(header.get("config"), dict):
        _fail(what, "header has no model 'config' object")
    table = header.get("tensors")
    _check_table(table, what)
    offsets = []
    total_bytes = 0
    limit = _format.expansion_limit(len(data), max_bytes)
    for i, entry in enumerate(table):
        offsets.append(reader.pos)
        if entry["size"] > reader.remaining:
            _fail(what, f"truncated: tensor #{i} ({entry['path']}/"
                        f"{entry['key']}) needs {entry['size']} bytes, only "
                        f"{reader.remaining} remain")
        n = 1
        for d in entry["shape"]:
            n *= d
        total_bytes += n * _format._dtype(entry["dtype"]).itemsize
        if total_bytes > limit:
            _fail(what, f"tensors decode to more than {limit} bytes, the "
                        "limit for this file (pass a larger max_bytes to "
                        "load it)")
        reader.pos += entry["size"]
    if reader.remaining:
        _fail(what, f"{reader.remaining} unexpected bytes after the last "
                    "tensor (the table's sizes do not add up)")
    return header, offsets


def _build_model(config, what, custom_objects, compile):
    import keras
    from keras.src.saving.serialization_lib import ObjectSharingScope

    import keras_prune  # noqa: F401 - registers PruneLowMagnitude

    config = dict(config)
    if not compile:
        config["compile_config"] = None
    try:
        with ObjectSharingScope(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*(compile_from_config|build_from_config)")
            return keras.saving.deserialize_keras_object(
                config, custom_objects=custom_objects, safe_mode=True)
    except CompressedFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - anything Keras raises
        raise CompressedFormatError(
            f"{what}: the model config cannot be deserialised safely: "
            f"{type(e).__name__}: {e}") from None


def load_compressed(path, custom_objects=None, compile=True,
                    max_bytes=None):
    """Loads a model written by `save_compressed`: bit-identical weights.

    Safe with untrusted files: no pickle, no code from the file (the config
    is deserialised with `safe_mode=True`, so lambdas are refused), sizes
    and shapes checked before any allocation.

    Args:
        path: File path, binary file object, or the file's bytes.
        custom_objects: As for `keras.saving.load_model`.
        compile: Compile the model from its stored compile config.
        max_bytes: Refuse files, and all tensors together, larger than this
            many bytes. Default: 65,536 times the file's length + 1 MiB, at
            most 16 GiB.

    Returns:
        The `keras.Model`.

    Raises:
        CompressedFormatError: the file is malformed; the message says how.
    """
    what = path if isinstance(path, (str, os.PathLike)) else "compressed model"
    what = str(what)
    data = _read_bytes(path, max_bytes)
    header, offsets = _parse(data, what, max_bytes)
    table = header["tensors"]
    include_optimizer = bool(header.get("include_optimizer"))
    model = _build_model(header["config"], what, custom_objects, compile)
    expected = _collect_state(model, include_optimizer, shapes_only=True)
    stored = {(e["path"], e["key"]): e for e in table}
    missing = [f"{p}/{k}" for (p, k) in expected if (p, k) not in stored]
    extra = [f"{p}/{k}" for (p, k) in stored if (p, k) not in expected]
    if missing or extra:
        _fail(what, "the tensor table does not match the model built from "
                    f"the config: missing {missing[:5]}, unexpected "
                    f"{extra[:5]}")
    for name, (shape, dtype) in expected.items():
        entry = stored[name]
        if tuple(entry["shape"]) != shape or entry["dtype"] != dtype:
            _fail(what, f"tensor {name[0]}/{name[1]}: file has "
                        f"{entry['dtype']}{entry['shape']}, the model "
                        f"expects {dtype}{list(shape)}")
    limit = _format.expansion_limit(len(data), max_bytes)
    values = [None] * len(table)
    for i, (entry, offset) in enumerate(zip(table, offsets)):
        if entry.get("nonzero_of") is not None:
            continue
        reader = _format.Reader(
            data, f"{what}: tensor #{i} ({entry['path']}/{entry['key']})",
            offset=offset, end=offset + entry["size"])
        if entry["size"] < 8:
            raise CompressedFormatError(f"{reader.what}: truncated")
        _format.verify_crc(data[offset:offset + entry["size"]], reader.what)
        reader.end -= 4
        expect = (_format._dtype(entry["dtype"]), tuple(entry["shape"]))
        array = _format.decode_array(reader, limit, expect=expect)
        if reader.remaining:
            raise CompressedFormatError(
                f"{reader.what}: {reader.remaining} unexpected bytes after "
                "the data")
        values[i] = array
    for i, entry in enumerate(table):
        if entry.get("nonzero_of") is not None:
            source = values[entry["nonzero_of"]]
            values[i] = _format._nonzero_bits(source.ravel()).reshape(
                source.shape)
    contents = {}
    for entry, value in zip(table, values):
        contents.setdefault(entry["path"] or "__root__", {})[
            entry["key"]] = value
    store = _make_store(contents=contents)
    failed, errors = set(), {}
    with warnings.catch_warnings():
        if not include_optimizer:
            warnings.filterwarnings(
                "ignore", message="Skipping variable loading for optimizer")
        _saving_lib()._load_state(
            model, weights_store=store, assets_store=None, inner_path="",
            visited_saveables=set(), failed_saveables=failed,
            error_msgs=errors,
        )
    if failed:
        details = "; ".join(
            f"{getattr(obj, 'name', obj)}: {err}"
            for obj, err in list(errors.values())[:3])
        _fail(what, f"the stored weights do not fit the model: {details}")
    return model
