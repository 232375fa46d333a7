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

import collections.abc
import copy
import io
import json
import os
import stat
import struct
import sys
import warnings
import zlib

import numpy as np

from keras_prune import _files
from keras_prune._keywords import keywords_checked
from keras_prune.export import _format
from keras_prune.export._format import CompressedFormatError
from keras_prune.export._format import compress_array
from keras_prune.export._format import decompress_array

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
# Deepest nesting of the header JSON (a Keras config nests about 10-30
# levels; Keras deserialises recursively).
MAX_HEADER_DEPTH = 100
# Peak memory of the loader (see docs/design.md, "Loading untrusted
# files"): at most about LOAD_MEMORY_FACTOR x max(max_bytes, file size),
# plus the fixed cost of Keras and the backend.
LOAD_MEMORY_FACTOR = 8
# Packages whose modules Keras imports by name from a config, and the parts
# of them a model file may name. Other modules of these packages are
# refused unless already imported (a config naming, say,
# `keras.src.backend.torch.core` would import torch).
_IMPORTING_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp")
_MODEL_MODULES = tuple(
    f"{package}.{part}"
    for package, parts in (
        (
            "keras",
            (
                "layers",
                "models",
                "optimizers",
                "losses",
                "metrics",
                "initializers",
                "regularizers",
                "constraints",
                "activations",
                "applications",
                "dtype_policies",
                "quantizers",
                "random",
                "ops",
                "src.layers",
                "src.models",
                "src.optimizers",
                "src.losses",
                "src.metrics",
                "src.initializers",
                "src.regularizers",
                "src.constraints",
                "src.activations",
                "src.applications",
                "src.dtype_policies",
                "src.quantizers",
                "src.random",
                "src.ops",
            ),
        ),
        (
            "keras_hub",
            (
                "layers",
                "models",
                "tokenizers",
                "samplers",
                "src.layers",
                "src.models",
                "src.tokenizers",
                "src.samplers",
            ),
        ),
        ("keras_cv", ("layers", "models", "src.layers", "src.models")),
        ("keras_nlp", ("layers", "models", "src.layers", "src.models")),
    )
    for part in parts
)
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
            key, (tuple(int(d) for d in shape), _dtype_name(value))
        )


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
        model,
        weights_store=store,
        assets_store=None,
        inner_path="",
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
            _format._nonzero_bits(value.ravel()), mask.ravel()
        ):
            return index
    return None


@keywords_checked
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
            f"save_compressed expects a keras.Model, got {model!r}."
        )
    _format.check_codec(codec)
    _format.check_flag(include_optimizer, "include_optimizer")
    path = _save_target(path)
    if not model.built:
        raise ValueError(
            "save_compressed needs a built model: call it on data or build "
            "it first."
        )
    layer = _has_assets(model)
    if layer is not None:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) saves assets "
            "(e.g. a vocabulary), which keras-prune's compressed format does "
            "not store. Use model.save('model.keras') for this model."
        )
    config = _serialize_config(model)
    state = _collect_state(model, include_optimizer)
    arrays = [
        np.require(_to_numpy(value), requirements="C")
        for value in state.values()
    ]
    candidates = [(i, a) for i, a in enumerate(arrays) if a.dtype != np.bool_]
    table, blobs = [], []
    for (inner_path, key), array in zip(state, arrays):
        entry = {
            "path": inner_path,
            "key": key,
            "dtype": _format._dtype(np.dtype(array.dtype).name).name,
            "shape": list(array.shape),
        }
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
    body = b"".join(
        [
            MAGIC,
            struct.pack("<H", VERSION),
            _format.encode_stream(header_json, codec, "mask"),
            *blobs,
        ]
    )
    data = body + struct.pack("<I", zlib.crc32(body))
    if hasattr(path, "write"):
        path.write(data)
    else:
        write_atomic(path, data)
    return len(data)


# Extensions of other formats: a `.kpz` written there would be read as
# (and replace) a file of that format.
_FOREIGN_EXTENSIONS = (".keras", ".h5", ".hdf5", ".zip", ".json", ".npz")


def _save_target(path):
    """The checked destination of `save_compressed`, before any work.

    A binary file object is returned as is; a path must be a str or
    os.PathLike naming a file (not a folder) in an existing folder, with
    an extension that is not another format's. A symbolic link is
    written through (its target is replaced, as `open(path, 'wb')`
    would), not replaced by a file.
    """
    if hasattr(path, "write"):
        if isinstance(path, io.TextIOBase):
            raise TypeError(
                "save_compressed needs a path or a binary file object "
                "(open(path, 'wb')), got a text file object."
            )
        return path
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "`path` must be a file path (str or os.PathLike) or a binary "
            f"file object, got {type(path).__name__}: {path!r:.80}."
        )
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise ValueError(
            "`path` is empty: give a file name such as 'model.kpz'."
        )
    lowered = path.lower()
    for ext in _FOREIGN_EXTENSIONS:
        if lowered.endswith(ext):
            raise ValueError(
                f"`path` {path!r} ends with {ext!r}, another format's "
                "extension; save_compressed writes keras-prune's compressed "
                "format: use a name ending with '.kpz' (keras_prune."
                "load_compressed reads it back)."
            )
    if os.path.isdir(path):
        raise IsADirectoryError(
            21,
            f"`path` is a folder; give a file name inside it, e.g. "
            f"{os.path.join(path, 'model.kpz')!r}",
            path,
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            2, f"the folder {folder!r} does not exist; create it first", path
        )
    return os.path.realpath(path) if os.path.islink(path) else path


def write_atomic(path, data):
    """Writes `data` to `path` atomically: all of it, or nothing changes.

    Through `_files.atomic_output`: a temporary file in the same folder,
    fsync'ed and then renamed over `path`; on any failure (disk full, file
    size limit, interrupt) the temporary file is removed and `path` keeps
    its previous content.

    Args:
        path: Destination file path.
        data: bytes, or a callable `write(f)` writing to a binary file.

    Raises:
        OSError: the folder does not exist or cannot be written (as
            `open` raises it).
    """
    with _files.atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)


# ---------------------------------------------------------------- loading


def is_compressed_file(path):
    """Whether `path` starts with the compressed-model magic bytes.

    False for anything but a readable regular file (a FIFO or a device is
    never read, so this never blocks).
    """
    try:
        with _open_regular(path) as f:
            return f.read(len(MAGIC)) == MAGIC
    except (OSError, CompressedFormatError, TypeError):
        return False


def _open_regular(path):
    """`path` opened for binary reading; refuses what is not a regular file
    (a directory, FIFO, socket or device) without blocking on it."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(
            "expected a file path (str or os.PathLike), a binary file "
            f"object or the file's bytes, got {type(path).__name__}"
        )
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CompressedFormatError(
                f"{os.fspath(path)}: not a regular file (a folder, FIFO or "
                "device); pass the path of a .kpz file"
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_bytes_are_a_file(data):
    """Bytes are a file's contents: bytes without the magic that name an
    existing file were meant as its path (`b"model.kpz"`)."""
    if not isinstance(data, bytes) or data.startswith(MAGIC):
        return
    try:
        is_path = len(data) < 4096 and os.path.exists(data)
    except (ValueError, OSError):  # a NUL byte, a name too long
        is_path = False
    if is_path:
        raise TypeError(
            f"bytes are read as the contents of a compressed file, and "
            f"{data!r:.80} is the name of a file: pass it as a str or "
            f"pathlib.Path ({os.fsdecode(data)!r:.80})."
        )


def _read_bytes(path, max_bytes):
    max_bytes = _format.check_max_bytes(max_bytes)
    limit = _format.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(path, (bytes, bytearray, memoryview)):
        return bytes(path)
    if hasattr(path, "read"):
        if isinstance(path, io.TextIOBase):
            # read() would decode the bytes (UnicodeDecodeError).
            raise TypeError(
                "load_compressed needs a binary file object (open(path, "
                "'rb')), got a text file object"
            )
        data = path.read(limit + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(
                "load_compressed needs a binary file object (open(path, "
                f"'rb')); read() returned {type(data).__name__}"
            )
    else:
        with _open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise CompressedFormatError(
                    f"{path}: file of {size} bytes exceeds max_bytes={limit}"
                )
            # At most one byte past the limit, even if the file grows
            # while it is read.
            data = f.read(limit + 1)
    if len(data) > limit:
        raise CompressedFormatError(f"file exceeds max_bytes={limit}")
    return bytes(data)


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
        for field, types in (
            ("path", str),
            ("key", str),
            ("dtype", str),
            ("shape", list),
            ("size", int),
        ):
            if not isinstance(entry.get(field), types) or isinstance(
                entry.get(field), bool
            ):
                raise CompressedFormatError(
                    f"{where}: field {field!r} missing or not a "
                    f"{types.__name__}"
                )
        if len(entry["shape"]) > _format.MAX_NDIM or not all(
            isinstance(d, int)
            and not isinstance(d, bool)
            and 0 <= d < (1 << 48)
            for d in entry["shape"]
        ):
            raise CompressedFormatError(
                f"{where}: invalid shape {entry['shape']!r}"
            )
        if entry["dtype"] not in _format._CODE_OF_DTYPE:
            raise CompressedFormatError(
                f"{where}: unsupported dtype {entry['dtype']!r}"
            )
        if entry["size"] < 0:
            raise CompressedFormatError(f"{where}: negative size")
        ref = entry.get("nonzero_of")
        if ref is not None:
            if (
                not isinstance(ref, int)
                or isinstance(ref, bool)
                or not 0 <= ref < len(table)
                or ref == i
                or not isinstance(table[ref], dict)
                or entry["size"] != 0
                or entry["dtype"] != "bool"
                or table[ref].get("nonzero_of") is not None
                or table[ref].get("shape") != entry["shape"]
            ):
                raise CompressedFormatError(
                    f"{where}: invalid mask reference {ref!r}"
                )
        name = (entry["path"], entry["key"])
        if name in seen:
            raise CompressedFormatError(
                f"{where}: duplicate entry {entry['path']}/{entry['key']}"
            )
        seen.add(name)


def _parse(data, what, max_bytes, verify=True):
    """Checks the container; returns `(header, [(entry, offset)])`."""
    if len(data) < _MIN_FILE:
        _fail(
            what,
            f"truncated: {len(data)} bytes is shorter than the "
            "smallest compressed model file",
        )
    if data[: len(MAGIC)] != MAGIC:
        if data[:2] == b"PK":
            _fail(
                what,
                "wrong magic: this is a zip file (a .keras model, or an "
                ".npz archive), not a keras-prune compressed model; use "
                "keras.saving.load_model for a .keras file",
            )
        if data[:4] == _format.ARRAY_MAGIC:
            _fail(
                what,
                "wrong magic: this is one array compressed by "
                "keras_prune.compress_array, not a model; read it with "
                "keras_prune.decompress_array",
            )
        _fail(
            what,
            f"wrong magic {data[: len(MAGIC)]!r}: not a keras-prune "
            "compressed model",
        )
    version = struct.unpack("<H", data[len(MAGIC) : len(MAGIC) + 2])[0]
    if version != VERSION:
        _fail(
            what,
            f"unsupported format version {version} (this "
            f"keras-prune reads version {VERSION})",
        )
    if verify:
        _format.verify_crc(data, what)
    reader = _format.Reader(
        data, what, offset=len(MAGIC) + 2, end=len(data) - 4
    )
    raw = _format.decode_stream(
        reader,
        None,
        "header",
        length_range=(
            2,
            min(
                MAX_HEADER_BYTES, _format.expansion_limit(len(data), max_bytes)
            ),
        ),
    )
    header = _parse_json(
        raw, what, _format.expansion_limit(len(data), max_bytes)
    )
    if not isinstance(header, dict):
        _fail(what, "header is not a JSON object")
    if header.get("format") != FORMAT_NAME:
        _fail(
            what,
            f"header format is {header.get('format')!r}, expected "
            f"{FORMAT_NAME!r}",
        )
    if header.get("version") != VERSION:
        _fail(
            what,
            f"header version {header.get('version')!r} does not "
            f"match the file version {VERSION}",
        )
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
            _fail(
                what,
                f"truncated: tensor #{i} ({entry['path']}/"
                f"{entry['key']}) needs {entry['size']} bytes, only "
                f"{reader.remaining} remain",
            )
        n = 1
        for d in entry["shape"]:
            n *= d
        total_bytes += n * _format._dtype(entry["dtype"]).itemsize
        if total_bytes > limit:
            _fail(
                what,
                f"tensors decode to more than {limit} bytes, the "
                "limit for this file (pass a larger max_bytes to "
                "load it)",
            )
        reader.pos += entry["size"]
    if reader.remaining:
        _fail(
            what,
            f"{reader.remaining} unexpected bytes after the last "
            "tensor (the table's sizes do not add up)",
        )
    return header, offsets


def _json_cost(raw):
    """An upper bound on the memory `json.loads(raw)` takes (bytes).

    Measured with tracemalloc: each container costs at most ~110 bytes, each
    value after a comma ~40, each key ~170 (the duplicate-key check holds
    the pairs of an object in a list first), and strings at most twice
    their UTF-8 length. Counting brackets and separators also inside
    strings only overestimates.
    """
    containers = raw.count(b"{") + raw.count(b"[")
    return (
        160 * containers
        + 48 * raw.count(b",")
        + 184 * raw.count(b":")
        + 2 * len(raw)
        + 1024
    )


class _DuplicateKey(Exception):
    pass


def _no_dups(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _parse_json(raw, what, limit):
    """The header object, within a memory budget and a nesting depth."""
    cost = _json_cost(raw)
    if cost > limit:
        _fail(
            what,
            f"the header JSON ({len(raw)} bytes) would take about "
            f"{cost} bytes of memory to parse, more than the limit "
            f"of {limit} (pass a larger max_bytes to load it)",
        )
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_dups)
    except _DuplicateKey as e:
        _fail(
            what,
            f"header JSON repeats the key {str(e)[:100]!r} in one object "
            "(parsers disagree on which value counts)",
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        _fail(
            what,
            f"header is not valid UTF-8 JSON ({type(e).__name__}: "
            f"{str(e)[:200]})",
        )
    # Depth, iteratively (Keras deserialises recursively).
    stack = [(header, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_HEADER_DEPTH:
            _fail(
                what, f"header JSON nests deeper than {MAX_HEADER_DEPTH} levels"
            )
        if isinstance(node, dict):
            stack.extend(
                (v, depth + 1)
                for v in node.values()
                if isinstance(v, (dict, list))
            )
        elif isinstance(node, list):
            stack.extend(
                (v, depth + 1) for v in node if isinstance(v, (dict, list))
            )
    return header


def _config_dicts(config):
    """Every dict nested in a JSON config (lists and dicts walked, without
    recursion: a deeply nested file cannot overflow the stack). Dicts met
    are expanded after they are yielded, so a caller may edit them."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
        elif isinstance(node, dict):
            yield node
            stack.extend(
                v for v in node.values() if isinstance(v, (dict, list))
            )


def _check_modules(config, what):
    """Refuses configs naming modules Keras would import that a model file
    has no business naming (see `_MODEL_MODULES`). A backend's own
    optimizer module is mapped to `keras.optimizers` (in place)."""
    for node in _config_dicts(config):
        module = node.get("module")
        if (
            isinstance(module, str)
            and module not in sys.modules
            and module.startswith("keras.src.backend.")
            and ".optimizers" in module
            and _public_optimizer(node.get("class_name"))
        ):
            # An optimizer saved on another backend (PyTorch names its own
            # `keras.src.backend.torch.optimizers.torch_adam`): the public
            # class of the same name, as Keras' own loader would need
            # torch for it.
            node["module"] = module = "keras.optimizers"
        if (
            isinstance(module, str)
            and module.split(".")[0] in _IMPORTING_PACKAGES
            and module not in sys.modules
            and (
                _is_test_module(module)
                or not (
                    module in _MODEL_MODULES
                    or module.startswith(tuple(m + "." for m in _MODEL_MODULES))
                )
            )
        ):
            _fail(
                what,
                f"the config names module {module!r}, which is "
                "not a module of layers, models, optimizers, losses "
                "or metrics; refusing to import it",
            )


def _is_test_module(module):
    """Whether `module` is (inside) a test module: Keras ships its tests
    next to its layers (`keras.src.layers.core.dense_test`); importing one
    pulls in pytest, and some TensorFlow."""
    return any(
        part in ("test", "tests", "testing", "conftest")
        or part.endswith("_test")
        or part.startswith("test_")
        for part in module.split(".")
    )


def _public_optimizer(class_name):
    import keras

    return isinstance(class_name, str) and isinstance(
        getattr(keras.optimizers, class_name, None), type
    )


def _expected_state(config, what, custom_objects, limit):
    """`{(path, key): (shape, dtype)}` of the model the config describes,
    found without allocating its weights.

    The model is deserialised in a `StatelessScope` that defers variable
    initialisation: variables get shapes, not values. Their total size is
    checked against `limit` before Keras' save walk records them. Optimizer
    variables are not included (the config is built uncompiled).
    """
    import keras
    from keras.src.backend.common import global_state

    config = dict(config)
    config["compile_config"] = None
    previous = global_state.get_global_attribute("uninitialized_variables")
    global_state.set_global_attribute("uninitialized_variables", [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = _build_model(config, what, custom_objects, False)
            total = 0
            for variable in model.variables:
                n = 1
                for d in variable.shape:
                    n *= int(d)
                total += n * _itemsize(_dtype_name(variable))
                if total > limit:
                    _fail(
                        what,
                        "the model built from the config holds "
                        f"more than {limit} bytes of weights, the "
                        "limit for this file (pass a larger "
                        "max_bytes to load it)",
                    )
            try:
                return _collect_state(model, False, shapes_only=True)
            except CompressedFormatError:
                raise
            except Exception as e:  # noqa: BLE001 - anything Keras raises
                _fail(
                    what,
                    "cannot list the weights of the model built "
                    f"from the config: {type(e).__name__}: {e}",
                )
    finally:
        # The deferred variables must never be initialised (by a later
        # StatelessScope exit, say): drop them.
        global_state.set_global_attribute("uninitialized_variables", previous)


def _itemsize(name):
    try:
        return _format._dtype(name).itemsize
    except (TypeError, CompressedFormatError):
        return 8


def _check_against_config(table, expected, what, include_optimizer):
    stored = {
        (e["path"], e["key"]): e
        for e in table
        if include_optimizer or not _is_optimizer_path(e["path"])
    }
    model_stored = {
        k: e for k, e in stored.items() if not _is_optimizer_path(k[0])
    }
    _match_table(expected, stored, model_stored, what)


def _match_table(expected, stored, checked, what):
    """Fails unless the table's `stored` entries are exactly `expected`.

    `expected` maps `(path, key)` to `(shape, dtype)`; `checked` is the part
    of `stored` that must not hold extra tensors.
    """
    missing = [f"{p}/{k}" for (p, k) in expected if (p, k) not in stored]
    extra = [
        f"{p}/{k}"
        for (p, k) in checked
        if (p, k) not in expected and not _is_off_pattern_mark(p, k, expected)
    ]
    if missing or extra:
        _fail(
            what,
            "the tensor table does not match the model built from "
            f"the config: missing {missing[:5]}, unexpected "
            f"{extra[:5]}",
        )
    for name, (shape, dtype) in expected.items():
        entry = stored[name]
        if tuple(entry["shape"]) != shape or entry["dtype"] != dtype:
            _fail(
                what,
                f"tensor {name[0]}/{name[1]}: file has "
                f"{entry['dtype']}{entry['shape']}, the model "
                f"expects {dtype}{list(shape)}",
            )


def _is_off_pattern_mark(path, key, expected):
    """A wrapper's mark that its masks were saved off their pattern on
    purpose (`loading.mark_masks_off_pattern`); the wrapper's loading checks
    its value."""
    from keras_prune.integration.loading import OFF_PATTERN_KEY

    return key == OFF_PATTERN_KEY and (path, "0") in expected


_SEQUENTIAL_KEY = "keras_prune>_LinearTimeSequential"


def _linear_sequential(config, custom_objects):
    """Points every Keras `Sequential` in `config` (in place) at
    `_sequential_class()`, which builds it in time linear in its layers.

    Keras' own `Sequential.from_config` adds the layers one by one, and
    each `add` rebuilds the whole stack: a 2 KB file listing 800 layers
    took two minutes (quadratic). Returns the custom objects to pass.
    """
    found = False
    for node in _config_dicts(config):
        module = node.get("module")
        if (
            node.get("class_name") == "Sequential"
            and isinstance(module, str)
            and module.split(".")[0] == "keras"
            and node.get("registered_name", "Sequential")
            in (None, "Sequential")
            and isinstance(node.get("config"), dict)
        ):
            node["registered_name"] = _SEQUENTIAL_KEY
            found = True
    if not found:
        return custom_objects
    return {**(custom_objects or {}), _SEQUENTIAL_KEY: _sequential_class()}


_SEQUENTIAL_CLASS = []


def _sequential_class():
    """A `keras.Sequential` subclass whose `from_config` returns a plain
    `keras.Sequential`, built once after all its layers are added (as the
    `Sequential(layers)` constructor does) instead of after each one."""
    if _SEQUENTIAL_CLASS:
        return _SEQUENTIAL_CLASS[0]
    import keras
    from keras.src.saving import serialization_lib

    class _LinearTimeSequential(keras.Sequential):
        @classmethod
        def from_config(cls, config, custom_objects=None):
            if "name" not in config or "layers" not in config:
                raise ValueError(
                    "A Sequential model configuration must be a dictionary "
                    "containing the 'name' and 'layers' keys."
                )
            if not isinstance(config["layers"], list):
                raise ValueError("Sequential 'layers' must be a list")
            layers = [
                serialization_lib.deserialize_keras_object(
                    layer_config, custom_objects=custom_objects
                )
                for layer_config in config["layers"]
            ]
            model = keras.Sequential(layers or None, name=config["name"])
            shape = config.get("build_input_shape")
            if (
                not model._functional
                and shape
                and isinstance(shape, (tuple, list))
            ):
                model.build(shape)
            return model

    _SEQUENTIAL_CLASS.append(_LinearTimeSequential)
    return _LinearTimeSequential


def _build_model(config, what, custom_objects, compile):
    import keras
    from keras.src.saving.serialization_lib import ObjectSharingScope

    import keras_prune  # noqa: F401 - registers PruneLowMagnitude

    # Keras consumes parts of the config it deserialises: work on a copy
    # (the config is built twice, first without allocating).
    config = copy.deepcopy(config)
    if not compile:
        config["compile_config"] = None
    custom_objects = _linear_sequential(config, custom_objects)
    try:
        with ObjectSharingScope(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*(compile_from_config|build_from_config)"
            )
            model = keras.saving.deserialize_keras_object(
                config, custom_objects=custom_objects, safe_mode=True
            )
    except CompressedFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - anything Keras raises
        raise CompressedFormatError(
            f"{what}: the model config cannot be deserialised safely: "
            f"{type(e).__name__}: {str(e)[:500]}"
        ) from None
    if not isinstance(model, keras.Model):
        _fail(
            what,
            f"the config describes a {type(model).__name__}, not a keras.Model",
        )
    return model


@keywords_checked
def load_compressed(path, custom_objects=None, compile=True, max_bytes=None):
    """Loads a model written by `save_compressed`: bit-identical weights.

    Safe with untrusted files: no pickle, no code from the file (the config
    is deserialised with `safe_mode=True`, so lambdas are refused, and may
    only name Keras modules of layers, models, optimizers, losses and
    metrics), sizes and shapes checked before any allocation: the weights
    the config describes are listed without allocating them and must match
    the tensor table before the model is built. Loading any file takes at
    most about `LOAD_MEMORY_FACTOR` (8) times `max(max_bytes, file size)`
    of memory beyond Keras' own, and raises only `CompressedFormatError`
    (or `OSError` reading `path`); see docs/design.md.

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
        CompressedFormatError: the file is malformed or does not fit the
            limits; the message says how.
        OSError: `path` cannot be read.
        TypeError, ValueError: an argument other than the file is invalid
            (`custom_objects`, `compile`, `max_bytes`), named in the message.
    """
    what = path if isinstance(path, (str, os.PathLike)) else "compressed model"
    what = str(what)
    _format.check_flag(compile, "compile")
    if custom_objects is not None and not isinstance(
        custom_objects, collections.abc.Mapping
    ):
        raise TypeError(
            "`custom_objects` must be None or a dict of names to classes "
            f"or functions, got {type(custom_objects).__name__}: "
            f"{custom_objects!r:.80}"
        )
    _check_bytes_are_a_file(path)
    data = _read_bytes(path, max_bytes)
    try:
        return _load(data, what, custom_objects, compile, max_bytes)
    except (CompressedFormatError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - MemoryError, RecursionError...
        raise CompressedFormatError(
            f"{what}: cannot be loaded: {type(e).__name__}: {str(e)[:500]}"
        ) from None


def _load(data, what, custom_objects, compile, max_bytes):
    header, offsets = _parse(data, what, max_bytes)
    table = header["tensors"]
    include_optimizer = bool(header.get("include_optimizer"))
    limit = _format.expansion_limit(len(data), max_bytes)
    # Nothing is built before the table has been checked against the
    # config: first the modules the config names, then the weights of the
    # model it describes, found without allocating them.
    _check_modules(header["config"], what)
    _check_against_config(
        table,
        _expected_state(header["config"], what, custom_objects, limit),
        what,
        include_optimizer,
    )
    model = _build_model(header["config"], what, custom_objects, compile)
    expected = _collect_state(model, include_optimizer, shapes_only=True)
    stored = {(e["path"], e["key"]): e for e in table}
    _match_table(expected, stored, stored, what)
    limit = _format.expansion_limit(len(data), max_bytes)
    values = [None] * len(table)
    for i, (entry, offset) in enumerate(zip(table, offsets)):
        if entry.get("nonzero_of") is not None:
            continue
        reader = _format.Reader(
            data,
            f"{what}: tensor #{i} ({entry['path']}/{entry['key']})",
            offset=offset,
            end=offset + entry["size"],
        )
        if entry["size"] < 8:
            raise CompressedFormatError(f"{reader.what}: truncated")
        _format.verify_crc(data[offset : offset + entry["size"]], reader.what)
        reader.end -= 4
        expect = (_format._dtype(entry["dtype"]), tuple(entry["shape"]))
        array = _format.decode_array(reader, limit, expect=expect)
        if reader.remaining:
            raise CompressedFormatError(
                f"{reader.what}: {reader.remaining} unexpected bytes after "
                "the data"
            )
        values[i] = array
    for i, entry in enumerate(table):
        if entry.get("nonzero_of") is not None:
            source = values[entry["nonzero_of"]]
            values[i] = _format._nonzero_bits(source.ravel()).reshape(
                source.shape
            )
    contents = {}
    for entry, value in zip(table, values):
        contents.setdefault(entry["path"] or "__root__", {})[entry["key"]] = (
            value
        )
    store = _make_store(contents=contents)
    failed, errors = set(), {}
    with warnings.catch_warnings():
        if not include_optimizer:
            warnings.filterwarnings(
                "ignore", message="Skipping variable loading for optimizer"
            )
        _saving_lib()._load_state(
            model,
            weights_store=store,
            assets_store=None,
            inner_path="",
            visited_saveables=set(),
            failed_saveables=failed,
            error_msgs=errors,
        )
    if failed:
        details = "; ".join(
            f"{getattr(obj, 'name', obj)}: {err}"
            for obj, err in list(errors.values())[:3]
        )
        _fail(what, f"the stored weights do not fit the model: {details}")
    return model
