"""TensorBoard summaries of pruning: `PruningSummaries`, and reading them back.

`PruningSummaries` writes real TensorBoard event files on every backend. It
uses the `tensorboard` package's own record format, protos and file layer
(the pure-Python ones that TensorBoard itself falls back to), so TensorFlow
is neither needed nor imported: on JAX and PyTorch it does not have to be
installed.

Layout of a log directory (as tfmot's `PruningSummaries`):

- `LOGDIR/metrics/`: the pruning scalars, per pruned weight
  `<layer>/<weight>/sparsity`, `.../threshold`, `.../target_sparsity`, and
  `model/sparsity`, `model/target_sparsity`; plus a text summary
  `keras_prune/config` (each pruned weight's size and schedule), shown in
  TensorBoard's Text tab and used by `report`.
- `LOGDIR/train/`, `LOGDIR/validation/`: the `fit` metrics, named as
  `keras.callbacks.TensorBoard` names them (`epoch_loss`, `batch_loss`, ...).

The step (x-axis) of the pruning scalars is `model.optimizer.iterations`: the
number of batches trained.
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

import keras
import numpy as np

from keras_prune.core import schedules as schedules_lib
from keras_prune.integration import strip

#: Subdirectory of `log_dir` holding the pruning scalars (tfmot's name).
PRUNING_RUN = "metrics"
#: Tag of the text summary describing the pruned weights and schedules.
CONFIG_TAG = "keras_prune/config"

_SUFFIXES = ("/sparsity", "/threshold", "/target_sparsity")
_TENSORBOARD_OPTIONS = {
    # keras.callbacks.TensorBoard argument -> value meaning "off".
    "histogram_freq": 0,
    "write_graph": None,  # accepted, nothing to write (no TF graph)
    "write_images": False,
    "write_steps_per_second": False,
    "profile_batch": 0,
    "embeddings_freq": 0,
    "embeddings_metadata": None,
}
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


# ------------------------------------------------------------ event files


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


# ------------------------------------------------------------ reading
#
# Event files are read by this module's own record reader and protobuf
# decoder, not tensorboard's: they need no package, never allocate more
# than the file holds (a record's length is checked against the bytes left
# before it is read; a tensor declaring 5e8 elements is not a scalar and is
# not expanded), warn about each corrupt record naming the file and offset
# and go on with the next good one, and never open anything but regular
# files (a FIFO would block; symlinked folders are followed once each).


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
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


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


def _resync(f, path, offset, size):
    """Offset of the next record whose header and data check out, or None.

    Reads at most the rest of the file (bounded by its size).
    """
    f.seek(offset)
    rest = f.read(size - offset)
    for start in range(1, len(rest) - 15):
        header = rest[start : start + 12]
        if not _header_ok(header, len(rest) - start):
            continue
        length = struct.unpack("<Q", header[:8])[0]
        body = rest[start + 12 : start + 12 + length]
        crc = struct.unpack(
            "<I", rest[start + 12 + length : start + 16 + length]
        )[0]
        if crc == _masked_crc32c(body):
            return offset + start
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
        length = struct.unpack("<Q", header[:8])[0]
        body = data[offset + 12 : offset + 12 + length]
        crc = struct.unpack(
            "<I", data[offset + 12 + length : offset + 16 + length]
        )[0]
        if crc != _masked_crc32c(body):
            _warn_corrupt(path, offset, "data checksum mismatch")
        else:
            yield offset, body
        offset += 16 + length
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
    """
    log_dir = os.fspath(log_dir)
    if not log_dir:
        raise ValueError(
            "log_dir is empty; pass the log_dir given to PruningSummaries."
        )
    if "://" in log_dir:
        return _remote_event_files(log_dir)
    found = []
    if not os.path.isdir(log_dir):
        return found
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
                    stack.append(entry.path)
                elif "tfevents" in entry.name and entry.is_file():
                    found.append((run, entry.path))
            except OSError:
                continue
    # Names start with events.out.tfevents.<time>: sorting is chronological.
    return sorted(found, key=lambda item: (item[0], os.path.basename(item[1])))


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
    out = {}
    for run, path in event_files(log_dir):
        for step, values in decoded_events(path):
            for tag, scalar, _ in values:
                if scalar is not None:
                    out.setdefault(_key(run, tag), []).append(
                        (int(step), scalar)
                    )
    for values in out.values():
        values.sort(key=lambda item: item[0])
    return out


def read_config(log_dir):
    """The last `keras_prune/config` written under `log_dir`, or None.

    Returns:
        dict with key `weights`: `{tag: {"params", "shape", "schedule"}}`,
        `schedule` being the Keras serialization of the weight's schedule.
    """
    config = None
    for _, path in event_files(log_dir):
        for _, values in decoded_events(path):
            for tag, _, text in values:
                if tag == CONFIG_TAG and text:
                    config = (
                        _parse_config(text.decode("utf-8", "replace")) or config
                    )
    return config


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
    return config


# ------------------------------------------------------- measuring a model


def _weight_tags(wrappers):
    """`(wrapper, index, tag)` per pruned weight; `tag` = `<layer>/<weight>`.

    `<weight>` is the weight's path inside the wrapped layer (`kernel`,
    `forward_lstm/lstm_cell/kernel`); tags are made unique within the model.
    """
    tags, seen = [], set()
    for wrapper in wrappers:
        layer = wrapper.layer
        prefix = getattr(layer, "path", layer.name)
        for i, weight in enumerate(wrapper.pruned_weights):
            # The variable may sit under the model's scope as well
            # (`sequential/d/kernel` for a layer whose path is `d`).
            scoped = "/" + weight.path
            at = scoped.find(f"/{prefix}/")
            rel = scoped[at + len(prefix) + 2 :] if at >= 0 else weight.path
            tag = f"{layer.name}/{rel}"
            unique, n = tag, 1
            while unique in seen:
                unique, n = f"{tag}_{n}", n + 1
            seen.add(unique)
            tags.append((wrapper, i, unique))
    return tags


def last_update(schedule, last_step, first_step=0):
    """The latest mask update of `schedule` at a step in `[first, last]`.

    Searches backward in growing chunks (vectorised for built-in schedules),
    so it costs about `frequency` evaluations, not `last_step`.

    Args:
        schedule: A `PruningSchedule`.
        last_step: Last step considered (int).
        first_step: First step considered (int).

    Returns:
        `(step, sparsity)`, with `sparsity` the float32 value of
        `schedules.evaluate(schedule, step)`; or None when no step in the
        range updates masks.
    """
    from keras_prune.monitoring.explain import sparsity_curve

    hi, size = int(last_step), 256
    while hi >= first_step:
        lo = max(int(first_step), hi - size + 1)
        steps = np.arange(lo, hi + 1, dtype=np.int64)
        should_prune, _ = sparsity_curve(schedule, steps)
        hits = np.flatnonzero(should_prune)
        if hits.size:
            step = int(steps[hits[-1]])
            return step, schedules_lib.evaluate(schedule, step)[1]
        hi, size = lo - 1, size * 4
    return None


class _TargetTracker:
    """Remembers each wrapper's last mask update between log points."""

    def __init__(self):
        self._state = {}  # id(wrapper) -> (last step scanned, (step, s))

    def target(self, wrapper, pruning_step):
        """Schedule sparsity of the last update at a step < `pruning_step`.

        `pruning_step` batches have run (steps 0 .. pruning_step - 1), so the
        masks in effect come from the last update among those steps; 0.0
        when none has happened yet.
        """
        last = pruning_step - 1
        scanned, found = self._state.get(id(wrapper), (-1, None))
        if last < scanned:  # step went back (reset or reloaded): rescan
            scanned, found = -1, None
        if last > scanned:
            newer = last_update(wrapper.pruning_schedule, last, scanned + 1)
            found = newer or found
            self._state[id(wrapper)] = (last, found)
        return float(found[1]) if found else 0.0


def pruned_weight_stats(model, _tracker=None):
    """Measures every pruned weight of a model, as `PruningSummaries` logs it.

    On JAX, call this on a synced model (outside `fit`, or `self.model` in a
    callback).

    Args:
        model: A model holding pruning wrappers.

    Returns:
        List of dicts, one per pruned weight: `tag` (`<layer>/<weight>`),
        `layer`, `weight`, `shape`, `params`, `zeros` (of `weight * mask`,
        what the forward pass uses), `sparsity` (`zeros / params`),
        `threshold` (the wrapper's threshold: the smallest magnitude kept at
        the last mask update), `target_sparsity` (the schedule's sparsity at
        the last mask update that has run; 0.0 before the first one) and
        `step` (the wrapper's `pruning_step`: batches it has trained).
    """
    tracker = _tracker or _TargetTracker()
    wrappers = [w for w in strip.pruning_wrappers(model) if w.built]
    rows = []
    index = {}
    for wrapper, i, tag in _weight_tags(wrappers):
        if id(wrapper) not in index:
            step = int(keras.ops.convert_to_numpy(wrapper.pruning_step))
            index[id(wrapper)] = (step, tracker.target(wrapper, step))
        step, target = index[id(wrapper)]
        weight = wrapper.pruned_weights[i]
        value = np.asarray(keras.ops.convert_to_numpy(weight))
        keep = np.asarray(keras.ops.convert_to_numpy(wrapper.masks[i]))
        zeros = int(value.size - np.count_nonzero(np.where(keep, value, 0)))
        rows.append(
            dict(
                tag=tag,
                layer=wrapper.layer.name,
                weight=tag[len(wrapper.layer.name) + 1 :],
                shape=tuple(weight.shape),
                params=int(value.size),
                zeros=zeros,
                sparsity=zeros / value.size if value.size else 0.0,
                threshold=float(
                    keras.ops.convert_to_numpy(wrapper.thresholds[i])
                ),
                target_sparsity=target,
                step=step,
            )
        )
    return rows


def model_scalars(rows):
    """The scalars logged for `pruned_weight_stats` rows: `{tag: value}`."""
    scalars = {}
    for r in rows:
        scalars[f"{r['tag']}/sparsity"] = r["sparsity"]
        scalars[f"{r['tag']}/threshold"] = r["threshold"]
        scalars[f"{r['tag']}/target_sparsity"] = r["target_sparsity"]
    params = sum(r["params"] for r in rows)
    if params:
        scalars["model/sparsity"] = sum(r["zeros"] for r in rows) / params
        scalars["model/target_sparsity"] = (
            sum(r["target_sparsity"] * r["params"] for r in rows) / params
        )
    return scalars


def _config_text(model):
    weights = {}
    for wrapper, i, tag in _weight_tags(
        [w for w in strip.pruning_wrappers(model) if w.built]
    ):
        weight = wrapper.pruned_weights[i]
        weights[tag] = dict(
            params=int(np.prod(weight.shape)),
            shape=list(weight.shape),
            schedule=keras.saving.serialize_keras_object(
                wrapper.pruning_schedule
            ),
            schedule_repr=repr(wrapper.pruning_schedule),
        )
    body = json.dumps({"weights": weights}, indent=1, default=str)
    lines = ["Pruned weights and their schedules (keras-prune).", ""]
    for tag, w in weights.items():
        lines.append(f"- `{tag}` {tuple(w['shape'])}: {w['schedule_repr']}")
    return "\n".join(lines) + "\n\n```json\n" + body + "\n```"


def _iterations(model):
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    if iterations is not None:
        return int(keras.ops.convert_to_numpy(iterations))
    from keras_prune.integration.callbacks import pruning_step

    return pruning_step(model) or 0


# ---------------------------------------------------------------- callback


class PruningSummaries(keras.callbacks.Callback):
    """Writes pruning summaries for TensorBoard, on every backend.

    tfmot's `PruningSummaries`, without TensorFlow: event files are written
    with the `tensorboard` package alone (`pip install tensorboard`), on JAX,
    TensorFlow and PyTorch. At each log point it writes, under
    `log_dir/metrics`, for every pruned weight:

    - `<layer>/<weight>/sparsity`: fraction of zeros of `weight * mask`, the
      tensor the forward pass uses (tfmot logs the mask's zeros only);
    - `<layer>/<weight>/threshold`: the smallest magnitude kept at the last
      mask update;
    - `<layer>/<weight>/target_sparsity`: the schedule's sparsity at the last
      mask update that has run (the latest step `s < pruning_step` at which
      the schedule said to prune; 0 before the first update). This is the
      sparsity the masks in effect were built for, so it equals `sparsity`
      up to rounding to whole weights;

    and `model/sparsity`, `model/target_sparsity` over all pruned weights
    (weighted by size). The step is `model.optimizer.iterations`, the number
    of batches trained (the wrapper's `pruning_step` when the model has no
    optimizer). A text summary `keras_prune/config` lists each pruned weight
    with its schedule.

    Unless `write_metrics=False`, the `fit` metrics are also written, as
    `keras.callbacks.TensorBoard` writes them (`train/` and `validation/`,
    `epoch_<name>` at step = epoch, and `batch_<name>` at step = iterations
    when logging per batch), so this callback replaces the TensorBoard
    callback, as tfmot's did. Do not use both with one `log_dir`.

    Reading the model costs a state sync on JAX, so it is only read at log
    points: at epoch ends (free there) or every `update_freq` batches.

    Args:
        log_dir: Directory of the event files (non-empty string or path).
        update_freq: `'epoch'` (log at each epoch end), `'batch'` (after
            every batch) or an int `N` (whenever `iterations` reaches a
            multiple of `N`).
        write_metrics: Also write the `fit` metrics (`loss`, ...).
        **kwargs: `keras.callbacks.TensorBoard` arguments, accepted for tfmot
            compatibility; histograms, images, embeddings and profiling are
            not written (a warning says so).

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[
        keras_prune.UpdatePruningStep(),
        keras_prune.PruningSummaries(log_dir="logs"),
    ])
    # tensorboard --logdir logs
    print(keras_prune.monitoring.summaries.report("logs", plot="pruning.png"))
    ```

    In a custom training loop, call `set_model(model)` and then
    `log(step)` when you want a point (or, as in tfmot's guide,
    `on_epoch_begin(epoch)` without `on_train_begin`, which logs at once).
    """

    def __init__(
        self, log_dir, update_freq="epoch", write_metrics=True, **kwargs
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(
            log_dir
        ):
            raise ValueError(
                "`log_dir` must be a non-empty string. You passed `log_dir`="
                f"{log_dir}."
            )
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (
            isinstance(update_freq, bool)
            or not isinstance(update_freq, (int, np.integer))
            or update_freq < 1
        ):
            raise ValueError(
                "`update_freq` must be 'epoch', 'batch' or a positive "
                f"integer. You passed `update_freq`={update_freq!r}."
            )
        for name, value in kwargs.items():
            if name not in _TENSORBOARD_OPTIONS:
                raise TypeError(
                    "PruningSummaries got an unexpected keyword argument "
                    f"{name!r}."
                )
            off = _TENSORBOARD_OPTIONS[name]
            if name != "write_graph" and value != off and value:
                warnings.warn(
                    f"PruningSummaries does not write what {name}={value!r} "
                    "asks for (only scalars). Use keras.callbacks.TensorBoard "
                    "(needs TensorFlow) with another log_dir for that.",
                    stacklevel=2,
                )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        if update_freq == "epoch":
            # Nothing to do per batch: look like the default hook, so that
            # `fit` keeps dispatching batch callbacks asynchronously.
            self.on_train_batch_end = (
                keras.callbacks.Callback.on_train_batch_end.__get__(self)
            )
        self.write_metrics = write_metrics
        self._writers = {}
        self._tracker = _TargetTracker()
        self._in_fit = False
        self._iteration = None
        self._epoch_start = 0
        self._config_written = False

    # ------------------------------------------------------------- writers

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = EventFileWriter(
                os.path.join(self.log_dir, run)
            )
        return self._writers[run]

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    def _close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ------------------------------------------------------------- logging

    def log(self, step=None, model=None):
        """Writes the pruning scalars now.

        Args:
            step: x-axis step (default: `model.optimizer.iterations`, or the
                pruning step when there is no optimizer).
            model: Default: the callback's model (synced on JAX).

        Returns:
            The `{tag: value}` written.
        """
        model = self.model if model is None else model
        if step is None:
            step = _iterations(model)
        writer = self._writer(PRUNING_RUN)
        if not self._config_written:
            writer.add_text(step, CONFIG_TAG, _config_text(model))
            self._config_written = True
        scalars = model_scalars(pruned_weight_stats(model, self._tracker))
        if scalars:
            writer.add_scalars(step, scalars)
        writer.flush()
        return scalars

    def set_model(self, model):
        super().set_model(model)
        self._config_written = False

    def on_train_begin(self, logs=None):
        self._in_fit = True
        model = self.model
        self._config_written = False
        if not strip.pruning_wrappers(model):
            warnings.warn(
                "PruningSummaries: the model has no pruning wrappers; no "
                "pruning scalars will be written.",
                stacklevel=2,
            )
        self._iteration = _iterations(model)

    def on_epoch_begin(self, epoch, logs=None):
        if not self._in_fit:  # tfmot's custom-loop recipe: log right away
            self.log()
            return
        self._epoch_start = self._iteration

    def on_train_batch_end(self, batch, logs=None):
        if not self._in_fit:
            return
        done = self._epoch_start + batch + 1
        previous, self._iteration = self._iteration, done
        if self.update_freq == "epoch":
            return
        n = int(self.update_freq)
        if done // n > previous // n:
            model = self.model  # syncs JAX state: only at log points
            step = _iterations(model)
            self._iteration = step
            self.log(step, model)
            if self.write_metrics and isinstance(logs, dict):
                self._write_logs("train", "batch_", step, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._model is None:
            return
        model = self.model  # already synced by fit at epoch end on JAX
        if self.update_freq == "epoch" and self._in_fit:
            self.log(model=model)
        if self.write_metrics and logs:
            train = {k: v for k, v in logs.items() if not k.startswith("val_")}
            lr = _learning_rate(model)
            if lr is not None and "learning_rate" not in train:
                train["learning_rate"] = lr
            val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
            self._write_logs("train", "epoch_", epoch, train)
            self._write_logs("validation", "epoch_", epoch, val)
        self._flush()

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._close()

    def _write_logs(self, run, prefix, step, logs):
        scalars = {}
        for name, value in logs.items():
            try:
                value = np.asarray(keras.ops.convert_to_numpy(value))
            except Exception:  # noqa: BLE001 - not a number: skip it
                continue
            if value.size == 1 and value.dtype.kind in "fiub":
                scalars[prefix + name] = float(value.reshape(()))
        if scalars:
            self._writer(run).add_scalars(step, scalars)


def _learning_rate(model):
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - no optimizer / not a scalar
        return None


# ------------------------------------------------------------------ report


def last_values(scalars):
    """`{tag: (step, value)}`: the last point of each `read_scalars` list."""
    return {tag: points[-1] for tag, points in scalars.items() if points}


def weight_rows_from_logs(scalars, config=None):
    """Per-weight rows (as `pruned_weight_stats`) from the last logged values.

    Args:
        scalars: `read_scalars(log_dir)`.
        config: `read_config(log_dir)` (gives `params`), optional.

    Returns:
        List of dicts with `tag`, `sparsity`, `threshold`,
        `target_sparsity`, `step`, and `params` when known.
    """
    last = last_values(scalars)
    params = {}
    if config:
        params = {t: w.get("params") for t, w in config["weights"].items()}
    rows = {}
    for tag, (step, value) in last.items():
        for suffix in _SUFFIXES:
            base = tag[: -len(suffix)]
            # `<layer>/<weight>/<suffix>`; `model/sparsity` has no weight.
            if tag.endswith(suffix) and "/" in base:
                row = rows.setdefault(base, dict(tag=base, step=step))
                row[suffix[1:]] = value
                row["step"] = max(row["step"], step)
    out = []
    for base, row in rows.items():
        if "sparsity" not in row:
            continue
        if params.get(base):
            row["params"] = params[base]
        out.append(row)
    return out


def report(log_dir, plot=None):
    """A text report of a run's pruning logs; optionally both plots as PNG.

    Args:
        log_dir: The `log_dir` given to `PruningSummaries`.
        plot: Optional PNG path: the training curve (schedule and measured
            model sparsity) next to the per-weight sparsity bars.

    Returns:
        str: a table of the last value of each pruning scalar per weight,
        the model totals, and the last value of every other scalar.

    Raises:
        FileNotFoundError: no event file under `log_dir`.
    """
    if not event_files(log_dir):
        raise FileNotFoundError(
            f"No TensorBoard event files under {os.fspath(log_dir)!r}."
        )
    scalars = read_scalars(log_dir)
    config = read_config(log_dir)
    rows = weight_rows_from_logs(scalars, config)
    last = last_values(scalars)
    lines = [f"log dir: {os.fspath(log_dir)}"]
    if rows:
        header = (
            f"{'weight':<40} {'params':>9} {'sparsity':>8} "
            f"{'target':>8} {'threshold':>11} {'step':>8}"
        )
        lines += ["", header, "-" * len(header)]
        for r in rows:
            lines.append(
                f"{r['tag'][:40]:<40} {r.get('params', ''):>9} "
                f"{r['sparsity']:>8.4f} "
                f"{_fmt(r.get('target_sparsity'), '.4f'):>8} "
                f"{_fmt(r.get('threshold'), '.5g'):>11} {r['step']:>8}"
            )
        lines.append("-" * len(header))
        if "model/sparsity" in last:
            step, value = last["model/sparsity"]
            target = last.get("model/target_sparsity", (None, None))[1]
            total = sum(r.get("params", 0) for r in rows) or ""
            lines.append(
                f"{'model (all pruned weights)':<40} {total:>9} "
                f"{value:>8.4f} {_fmt(target, '.4f'):>8} {'':>11} {step:>8}"
            )
    else:
        lines += ["", "No keras-prune pruning scalars found."]
    pruning = {f"{r['tag']}{s}" for r in rows for s in _SUFFIXES}
    pruning |= {"model/sparsity", "model/target_sparsity"}
    others = sorted(t for t in last if t not in pruning)
    if others:
        lines += ["", "other scalars (last value):"]
        width = min(max(len(t) for t in others), 40)
        for tag in others:
            step, value = last[tag]
            lines.append(f"  {tag:<{width}}  step {step:>8}  {value:.6g}")
    if plot is not None:
        from keras_prune.monitoring import plots

        plots.plot_report(log_dir, path=plot, scalars=scalars, config=config)
        lines += ["", f"wrote {os.fspath(plot)}"]
    return "\n".join(lines)


def _fmt(value, spec):
    return "" if value is None else format(value, spec)
