"""TensorBoard event files without TensorFlow: writing and reading them back.

`EventFileWriter` writes records with the `tensorboard` package's own
record format and protos; `read_records`, `read_scalars` and `read_config`
read them back with a bounded, validating reader of their own.
"""

import functools
import itertools
import json
import os
import socket
import stat
import struct
import time
import types
import warnings

import numpy as np

#: Subdirectory of `log_dir` holding the pruning scalars (tfmot's name).
PRUNING_RUN = "metrics"


#: Tag of the text summary describing the pruned weights and schedules.
CONFIG_TAG = "keras_prune/config"


_SUFFIXES = ("/sparsity", "/threshold", "/target_sparsity")


_uid = itertools.count()


@functools.lru_cache(maxsize=None)
def _tensorboard():
    """Imports the TF-free parts of tensorboard, with a helpful error."""
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.compat.proto import tensor_pb2
        from tensorboard.compat.proto import tensor_shape_pb2
        from tensorboard.compat.proto import types_pb2
        from tensorboard.compat.tensorflow_stub import errors
        from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
        from tensorboard.compat.tensorflow_stub.io import gfile
        from tensorboard.summary.writer.record_writer import RecordWriter
        from tensorboard.util import tensor_util
    except ImportError as e:
        raise ImportError(
            "Writing TensorBoard summaries needs the `tensorboard` package "
            "(TensorFlow is not needed): pip install "
            f'"keras-prune[tensorboard]" (or pip install tensorboard). ({e})'
        ) from None

    return types.SimpleNamespace(**locals())


class EventFileWriter:
    """Writes one TensorBoard event file, without TensorFlow.

    The file is what `tensorboard.summary.writer.EventFileWriter` writes
    (same name pattern, records and first event), but written synchronously
    through tensorboard's pure-Python file layer, which never imports
    TensorFlow (tensorboard's own writer does whenever it is installed).

    Args:
        logdir: Directory of the file (created if missing). Local paths, and
            `s3://` or fsspec URLs where tensorboard supports them.
    """

    def __init__(self, logdir):
        self._tb = tb = _tensorboard()
        logdir = os.fspath(logdir)
        tb.gfile.makedirs(logdir)
        self.path = "%s/events.out.tfevents.%010d.%s.%s.%d.keras_prune" % (
            logdir.rstrip("/"),
            time.time(),
            socket.gethostname(),
            os.getpid(),
            next(_uid),
        )
        self._file = tb.gfile.GFile(self.path, "wb")
        self._records = tb.RecordWriter(self._file)
        self._write(
            tb.event_pb2.Event(
                wall_time=time.time(), file_version="brain.Event:2"
            )
        )
        self.flush()

    def _write(self, event):
        self._records.write(event.SerializeToString())

    def add_scalars(self, step, scalars, wall_time=None):
        """Writes `{tag: float}` as one event at `step`."""
        summary_pb2 = self._tb.summary_pb2
        values = [
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in scalars.items()
        ]
        self._add_summary(step, values, wall_time)

    def add_text(self, step, tag, text, wall_time=None):
        """Writes a text summary (TensorBoard's Text tab)."""
        tb = self._tb
        value = tb.summary_pb2.Summary.Value(
            tag=tag,
            metadata=tb.summary_pb2.SummaryMetadata(
                plugin_data=tb.summary_pb2.SummaryMetadata.PluginData(
                    plugin_name="text"
                )
            ),
            tensor=tb.tensor_pb2.TensorProto(
                dtype=tb.types_pb2.DT_STRING,
                tensor_shape=tb.tensor_shape_pb2.TensorShapeProto(),
                string_val=[text.encode("utf-8")],
            ),
        )
        self._add_summary(step, [value], wall_time)

    def _add_summary(self, step, values, wall_time):
        tb = self._tb
        self._write(
            tb.event_pb2.Event(
                wall_time=time.time() if wall_time is None else wall_time,
                step=int(step),
                summary=tb.summary_pb2.Summary(value=values),
            )
        )

    def flush(self):
        self._records.flush()

    def close(self):
        if not self._records.closed:
            self._records.close()


class CorruptEventFileWarning(UserWarning):
    """A TensorBoard event file holds a corrupt or truncated record."""


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data):
    """TFRecord's checksum: CRC-32C, rotated and offset ("masked")."""
    crc, table = 0xFFFFFFFF, _CRC32C_TABLE
    if len(data) >= _CRC_BLOCK * 64:
        # Long data (a corrupt file can make the reader check many long
        # candidate records): NumPy, many blocks at once.
        crc = _crc32c_blocks(data)
        data = data[len(data) - len(data) % _CRC_BLOCK :]
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# Block length of the vectorised CRC-32C.
_CRC_BLOCK = 4096


@functools.lru_cache(maxsize=None)
def _crc_shift_tables():
    """Byte tables of the linear map "feed _CRC_BLOCK zero bytes" on the
    CRC register: shift(r) = T0[r & 255] ^ T1[r >> 8 & 255] ^ ..."""
    table = np.asarray(_CRC32C_TABLE, dtype=np.uint32)
    reg = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(_CRC_BLOCK):
        reg = table[reg & np.uint32(0xFF)] ^ (reg >> np.uint32(8))
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256, 8)
    tables = []
    for k in range(4):
        images = reg[8 * k : 8 * k + 8]
        t = np.zeros(256, dtype=np.uint32)
        for b in range(8):
            t ^= np.where(bits[:, b] == 1, images[b], np.uint32(0))
        tables.append([int(v) for v in t])
    return tables


def _crc32c_blocks(data):
    """The CRC-32C register (initial 0xFFFFFFFF, not inverted) after the
    whole `_CRC_BLOCK`-byte blocks of `data`.

    The register update is linear: the blocks are run in parallel from a
    zero register, then chained with the shift map of one block.
    """
    table = np.asarray(_CRC32C_TABLE, dtype=np.uint32)
    n = len(data) // _CRC_BLOCK
    blocks = np.frombuffer(data, np.uint8, count=n * _CRC_BLOCK).reshape(
        n, _CRC_BLOCK
    )
    reg = np.zeros(n, dtype=np.uint32)
    for k in range(_CRC_BLOCK):
        reg = table[(reg ^ blocks[:, k]) & np.uint32(0xFF)] ^ (
            reg >> np.uint32(8)
        )
    t0, t1, t2, t3 = _crc_shift_tables()
    crc = 0xFFFFFFFF
    for raw in reg.tolist():
        crc = (
            t0[crc & 0xFF]
            ^ t1[(crc >> 8) & 0xFF]
            ^ t2[(crc >> 16) & 0xFF]
            ^ t3[crc >> 24]
            ^ raw
        )
    return crc


def _warn_corrupt(path, offset, reason):
    warnings.warn(
        f"{os.fspath(path)}: corrupt event record at byte offset {offset} "
        f"({reason}); skipped",
        CorruptEventFileWarning,
        stacklevel=3,
    )


def _header_ok(header, remaining):
    length, crc = struct.unpack("<QI", header)
    return crc == _masked_crc32c(header[:8]) and length + 4 <= remaining - 12


# Candidate record starts are checked this many at a time when resyncing.
_RESYNC_CHUNK = 1 << 20


def _header_crcs(window):
    """Masked CRC-32C of the 8 bytes at every start of `window` (vectorised:
    8 table look-ups over all starts at once, not a Python loop per byte),
    and the u32 stored right after them."""
    b = np.frombuffer(window, np.uint8)
    n = len(b) - 11
    table = np.asarray(_CRC32C_TABLE, dtype=np.uint32)
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for k in range(8):
        crc = table[(crc ^ b[k : k + n]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(
        0xA282EAD8
    )
    stored = np.zeros(n, dtype=np.uint32)
    for k in range(4):
        stored |= b[8 + k : 8 + k + n].astype(np.uint32) << np.uint32(8 * k)
    return masked, stored


def _checked_body(buf, start):
    """The data of the record at `start` of `buf` (its header checked by
    `_header_ok`), or None when the data's checksum does not match."""
    length = struct.unpack("<Q", buf[start : start + 8])[0]
    body = buf[start + 12 : start + 12 + length]
    crc = struct.unpack("<I", buf[start + 12 + length : start + 16 + length])
    return body if crc[0] == _masked_crc32c(body) else None


def _resync(f, path, offset, size):
    """Offset of the next record whose header and data check out, or None.

    Reads at most the rest of the file (bounded by its size). Header
    checksums are computed for all candidate starts at once, a chunk at a
    time: a megabyte of garbage costs milliseconds, not seconds.
    """
    f.seek(offset)
    rest = f.read(size - offset)
    last = len(rest) - 16  # the last start with room for a header + crc
    lo = 1
    while lo <= last:
        hi = min(lo + _RESYNC_CHUNK, last + 1)
        masked, stored = _header_crcs(rest[lo : hi + 11])
        for i in np.flatnonzero(masked == stored):
            start = lo + int(i)
            header = rest[start : start + 12]
            if not _header_ok(header, len(rest) - start):
                continue
            if _checked_body(rest, start) is not None:
                return offset + start
        lo = hi
    return None


def _open_regular(path):
    """Opens a regular file for reading (never blocks on a FIFO), or None."""
    try:
        fd = os.open(
            os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError as e:
        warnings.warn(
            f"{os.fspath(path)}: cannot be read ({e.strerror}); skipped",
            CorruptEventFileWarning,
            stacklevel=3,
        )
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def read_records(path):
    """Yields the records of one TFRecord (event) file as bytes.

    Every record's length and both checksums are verified. A corrupt record
    is reported with a `CorruptEventFileWarning` naming the file and byte
    offset, and reading resumes at the next record that checks out; a
    record cut short at the end (a file still being written) is reported
    too. Memory never exceeds the file's size.

    Args:
        path: Local path of the file.
    """
    if "://" in os.fspath(path):
        yield from _read_records_remote(path)
        return
    f = _open_regular(path)
    if f is None:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(12)
            if len(header) < 12:
                _warn_corrupt(
                    path,
                    offset,
                    "truncated record header at the end of the file",
                )
                return
            remaining = size - offset
            if not _header_ok(header, remaining):
                length = struct.unpack("<Q", header[:8])[0]
                reason = (
                    f"record length {length} exceeds the "
                    f"{remaining - 16} bytes left"
                    if struct.unpack("<I", header[8:])[0]
                    == _masked_crc32c(header[:8])
                    else "header checksum mismatch"
                )
                nxt = _resync(f, path, offset, size)
                if nxt is None:
                    _warn_corrupt(
                        path,
                        offset,
                        f"{reason}; no readable "
                        f"record in the {remaining} bytes left "
                        "(truncated?)",
                    )
                    return
                _warn_corrupt(
                    path, offset, f"{reason}; resuming at offset {nxt}"
                )
                offset = nxt
                continue
            length = struct.unpack("<Q", header[:8])[0]
            data = f.read(length)
            crc = f.read(4)
            if len(data) < length or len(crc) < 4:
                _warn_corrupt(
                    path, offset, "truncated record at the end of the file"
                )
                return
            if struct.unpack("<I", crc)[0] != _masked_crc32c(data):
                # The length may be what is wrong: look for the next good
                # record right after this header rather than past `length`.
                nxt = _resync(f, path, offset, size)
                _warn_corrupt(
                    path,
                    offset,
                    "data checksum mismatch"
                    + (
                        f"; resuming at offset {nxt}"
                        if nxt is not None
                        else "; no readable record after it"
                    ),
                )
                if nxt is None:
                    return
                offset = nxt
                continue
            yield offset, data
            offset += 16 + length


def _read_records_remote(path):
    """Records of a remote (s3://, ...) file, through tensorboard's gfile."""
    gfile = _tensorboard().gfile
    with gfile.GFile(os.fspath(path), "rb") as f:
        data = f.read()
    offset, size = 0, len(data)
    while offset + 16 <= size:
        header = data[offset : offset + 12]
        if not _header_ok(header, size - offset):
            _warn_corrupt(
                path, offset, "bad record header; rest of the file skipped"
            )
            return
        body = _checked_body(data, offset)
        if body is None:
            _warn_corrupt(path, offset, "data checksum mismatch")
        else:
            yield offset, body
        offset += 16 + struct.unpack("<Q", header[:8])[0]
    if offset < size:
        _warn_corrupt(path, offset, "truncated record at the end of the file")


class _ProtoError(ValueError):
    pass


def _varint(buf, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _ProtoError("bad varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf):
    """Yields `(field number, wire type, value)` of a protobuf message.

    Varints are ints, fixed64/fixed32 are raw bytes, length-delimited
    fields are bytes (within `buf`: lengths are checked).
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > end:
                raise _ProtoError("truncated fixed field")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if n > end - pos:
                raise _ProtoError("length past the end of the message")
            value, pos = buf[pos : pos + n], pos + n
        else:
            raise _ProtoError(f"unsupported wire type {wire}")
        if number == 0:
            raise _ProtoError("field number 0")
        yield number, wire, value


# TensorProto dtype enum -> (NumPy dtype of tensor_content, typed field).
_TF_DTYPES = {
    1: ("<f4", 5),
    2: ("<f8", 6),
    3: ("<i4", 7),
    4: ("u1", 7),
    5: ("<i2", 7),
    6: ("i1", 7),
    9: ("<i8", 10),
    10: ("?", 11),
    17: ("<u2", 7),
    19: ("<f2", 13),
    22: ("<u4", 16),
    23: ("<u8", 17),
}


def _tensor_scalar(buf):
    """The number in a TensorProto holding exactly one element, else None.

    Nothing is allocated from the declared shape: a tensor of more (or
    fewer) than one element is simply not a scalar.
    """
    dtype, dims, content, typed = None, [], None, {}
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            for n2, w2, dim in _fields(value):
                if n2 == 3 and w2 == 0 and value:
                    return None  # unknown rank
                if n2 == 2 and w2 == 2:
                    size = 1
                    for n3, w3, v3 in _fields(dim):
                        if n3 == 1 and w3 == 0:
                            size = v3
                    dims.append(size)
        elif number == 4 and wire == 2:
            content = value
        elif number not in typed:
            typed[number] = (wire, value)
    n = 1
    for d in dims:
        if d >= 1 << 63:  # a negative int64 (unknown size)
            return None
        n *= d
        if n > 1:
            return None
    if n != 1 or dtype not in _TF_DTYPES:
        return None
    np_dtype, field = _TF_DTYPES[dtype]
    np_dtype = np.dtype(np_dtype)
    if content is not None:
        if len(content) != np_dtype.itemsize:
            return None
        return float(np.frombuffer(content, np_dtype)[0])
    if field not in typed:
        return None
    wire, value = typed[field]
    if field in (5, 6):  # float_val (fixed32), double_val (fixed64)
        fmt = "<f" if field == 5 else "<d"
        size = 4 if field == 5 else 8
        if len(value) < size:
            return None
        return float(struct.unpack(fmt, value[:size])[0])
    if wire == 2:  # packed varints
        if not value:
            return None
        value, _ = _varint(value, 0)
    elif wire != 0:
        return None
    if field == 13:  # half_val: the float16 bits in an int32
        return float(np.array([value & 0xFFFF], np.uint16).view(np.float16)[0])
    if field in (7, 10) and value >= 1 << 63:
        value -= 1 << 64  # negative int32/int64 (sign-extended varint)
    if field == 11:
        return float(bool(value))
    return float(value)


def _decode_value(buf):
    """`(tag, scalar or None, text or None)` of a `Summary.Value`."""
    tag, scalar, tensor, plugin = "", None, None, ""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            tag = bytes(value).decode("utf-8", "replace")
        elif number == 2 and wire == 5:
            scalar = float(struct.unpack("<f", value)[0])
        elif number == 8 and wire == 2:
            tensor = value
        elif number == 9 and wire == 2:
            for n2, w2, data in _fields(value):
                if n2 == 1 and w2 == 2:
                    for n3, w3, name in _fields(data):
                        if n3 == 1 and w3 == 2:
                            plugin = bytes(name).decode("utf-8", "replace")
    text = None
    if tensor is not None and scalar is None:
        if plugin in ("scalars", ""):
            scalar = _tensor_scalar(tensor)
        if plugin == "text" or scalar is None:
            for number, wire, value in _fields(tensor):
                if number == 8 and wire == 2:  # the first string_val
                    text = bytes(value)
                    break
    return tag, scalar, text


def _decode_event(buf):
    """`(step, [values])` of an `Event`; values as `_decode_value`."""
    step, values = 0, []
    for number, wire, value in _fields(buf):
        if number == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and wire == 2:
            for n2, w2, v2 in _fields(value):
                if n2 == 1 and w2 == 2:
                    values.append(_decode_value(v2))
    return step, values


def decoded_events(path):
    """Yields `(step, [(tag, scalar, text)])` per event of one event file.

    `scalar` is the float of a scalar summary (simple value or one-element
    tensor), `text` the first string of a string tensor (bytes). Corrupt
    records and undecodable events are skipped with a
    `CorruptEventFileWarning` naming the file and offset. Needs neither
    TensorFlow nor tensorboard.
    """
    for offset, record in read_records(path):
        try:
            yield _decode_event(record)
        except (_ProtoError, struct.error) as e:
            _warn_corrupt(path, offset, f"undecodable event: {e}")


def event_files(log_dir):
    """Every TensorBoard event file under `log_dir` (recursive), sorted.

    Only regular files are listed (FIFOs, sockets and devices are
    skipped); symlinked folders are followed, each real folder once (no
    symlink loops).

    Returns:
        List of `(run, path)`: `run` is the subdirectory relative to
        `log_dir` (`"."` for files directly in it).

    Raises:
        ValueError: `log_dir` is empty.
        FileNotFoundError: `log_dir` does not exist (a misspelt folder
            would otherwise read as a run without scalars).
        NotADirectoryError: `log_dir` is a file that is not an event file.
    """
    if not isinstance(log_dir, (str, bytes, os.PathLike)):
        raise TypeError(
            "log_dir must be a folder path (str or os.PathLike), got "
            f"{type(log_dir).__name__}: {log_dir!r:.80}."
        )
    log_dir = os.fsdecode(os.fspath(log_dir))
    if not log_dir:
        raise ValueError(
            "log_dir is empty; pass the log_dir given to PruningSummaries."
        )
    if "://" in log_dir:
        return _remote_event_files(log_dir)
    found = []
    if "tfevents" in os.path.basename(log_dir) and os.path.isfile(log_dir):
        return [(".", log_dir)]  # one event file
    if not os.path.exists(log_dir):
        raise FileNotFoundError(
            f"Log directory {log_dir!r} does not exist; pass the log_dir "
            "given to PruningSummaries."
        )
    if not os.path.isdir(log_dir):
        raise NotADirectoryError(
            f"{log_dir!r} is neither a folder nor a TensorBoard event file "
            "(`*tfevents*`); pass the log_dir given to PruningSummaries."
        )
    root = os.path.realpath(log_dir)
    seen = set()
    stack = [log_dir]
    while stack:
        directory = stack.pop()
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            warnings.warn(
                f"{directory}: cannot be listed ({e.strerror}); skipped",
                CorruptEventFileWarning,
                stacklevel=2,
            )
            continue
        run = os.path.relpath(directory, log_dir)
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks; loops stopped above
                    if entry.is_symlink() and _contains(entry.path, root):
                        # A link to `/` or `..` would walk everything
                        # above the log folder (all of /proc, say).
                        warnings.warn(
                            f"{entry.path}: a link to a folder holding the "
                            "log folder itself; not followed",
                            CorruptEventFileWarning,
                            stacklevel=2,
                        )
                        continue
                    stack.append(entry.path)
                elif "tfevents" in entry.name and entry.is_file():
                    found.append((run, entry.path))
            except OSError:
                continue
    # Names start with events.out.tfevents.<time>: sorting is chronological.
    return sorted(found, key=lambda item: (item[0], os.path.basename(item[1])))


def _contains(link, root):
    """Whether the folder `link` points to is `root` or one above it."""
    target = os.path.realpath(link)
    return root == target or root.startswith(target.rstrip(os.sep) + os.sep)


def _remote_event_files(log_dir):
    gfile = _tensorboard().gfile
    log_dir = log_dir.rstrip("/")
    found = []
    if not gfile.isdir(log_dir):
        return found
    for directory, _, files in gfile.walk(log_dir):
        directory = os.fspath(directory)
        run = directory[len(log_dir) :].strip("/") or "."
        for name in files:
            if "tfevents" in name:
                found.append((run, f"{directory.rstrip('/')}/{name}"))
    return sorted(found, key=lambda item: (item[0], os.path.basename(item[1])))


def read_events(path):
    """Yields the `Event` protos of one event file (needs tensorboard).

    Records are read and checked as `read_records` does: corrupt ones are
    skipped with a warning naming the file and offset.
    """
    tb = _tensorboard()
    for offset, record in read_records(path):
        try:
            yield tb.event_pb2.Event.FromString(record)
        except Exception as e:  # noqa: BLE001 - protobuf DecodeError
            _warn_corrupt(path, offset, f"undecodable event: {e}")


def _key(run, tag):
    return tag if run in (".", PRUNING_RUN) else f"{run}/{tag}"


def read_scalars(log_dir):
    """Reads every scalar under a log directory, without TensorFlow.

    Works with what `PruningSummaries` writes and with other TensorBoard
    event files (`keras.callbacks.TensorBoard`, `tf.summary`,
    `torch.utils.tensorboard`). Needs no tensorboard package for local
    folders. Corrupt records are skipped with a `CorruptEventFileWarning`
    naming the file and offset; the rest of the file is still read.

    Args:
        log_dir: The directory given to `PruningSummaries` (or any
            TensorBoard log directory, read recursively).

    Returns:
        `{tag: [(step, value), ...]}`, each list sorted by step (stable:
        events at the same step keep file order). The pruning scalars keep
        their tags (`dense/kernel/sparsity`, `model/sparsity`); scalars of
        other runs are prefixed by their subdirectory (`train/epoch_loss`,
        `validation/epoch_loss`).

    Example:

    >>> scalars = keras_prune.monitoring.summaries.read_scalars("logs")
    >>> scalars["model/sparsity"][-1]
    (900, 0.9)
    """
    return read_logs(log_dir)[0]


def read_logs(log_dir):
    """`(read_scalars(log_dir), read_config(log_dir))`, reading each event
    file once (a large or corrupt file costs one pass, and each corrupt
    record is reported once)."""
    out, config = {}, None
    for run, path in event_files(log_dir):
        for step, values in decoded_events(path):
            for tag, scalar, text in values:
                if scalar is not None:
                    out.setdefault(_key(run, tag), []).append(
                        (int(step), scalar)
                    )
                if tag == CONFIG_TAG and text:
                    config = (
                        _parse_config(text.decode("utf-8", "replace")) or config
                    )
    for values in out.values():
        values.sort(key=lambda item: item[0])
    return out, config


def read_config(log_dir):
    """The last `keras_prune/config` written under `log_dir`, or None.

    Returns:
        dict with key `weights`: `{tag: {"params", "shape", "schedule"}}`,
        `schedule` being the Keras serialization of the weight's schedule.
    """
    return read_logs(log_dir)[1]


def _parse_config(text):
    start, end = text.find("```json\n"), text.rfind("```")
    if start < 0 or end <= start:
        return None
    try:
        config = json.loads(text[start + len("```json\n") : end])
    except (ValueError, RecursionError):
        return None
    if not isinstance(config, dict) or not isinstance(
        config.get("weights"), dict
    ):
        return None
    # Each weight's entry must be an object, and its `params` a count: a
    # list entry or a string count crashed the report, and a negative or
    # NaN count was printed and summed.
    weights = {}
    for tag, entry in config["weights"].items():
        if not isinstance(entry, dict):
            warnings.warn(
                f"{CONFIG_TAG}: the entry of weight {tag!r} is not an "
                "object; ignored",
                CorruptEventFileWarning,
                stacklevel=2,
            )
            continue
        params = entry.get("params")
        if params is not None and (
            isinstance(params, bool)
            or not isinstance(params, int)
            or params < 0
        ):
            warnings.warn(
                f"{CONFIG_TAG}: weight {tag!r} has params={params!r}, not "
                "a count; ignored",
                CorruptEventFileWarning,
                stacklevel=2,
            )
            entry = {k: v for k, v in entry.items() if k != "params"}
        weights[tag] = entry
    config["weights"] = weights
    return config
