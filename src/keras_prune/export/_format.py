"""The keras-prune compressed tensor format (one array per blob).

Pure NumPy and the standard library (`zlib`, `lzma`, `struct`): no pickle,
no Keras. `docs/compression.md` has the byte-level specification; in short,
an array blob is

    magic "KPRA" | version u8 | dtype u8 | ndim u8 | dims (varints)
    | layout u8 | layout body | CRC-32 of everything before (u32 LE)

with three layouts:

- DENSE: `order u8 | shuffle u8 | stream` (all values);
- SPARSE: `order u8 | nnz varint | mask-coding u8 | mask stream |
  shuffle u8 | values stream` (the non-zero values only; no values stream
  for bool);
- ZEROS: nothing (every element is zero).

A *stream* is `codec u8 | [lzma properties u8] | raw length varint |
stored length varint | bytes`. "Zero" means an all-zero bit pattern, so
`-0.0` and NaN payloads survive bit for bit. Orders: 0 = C order,
1 = channel-major (the last axis moved first, i.e. one output channel after
another). Mask codings: 0 = bitmap (`np.packbits`, big-endian bit order),
1 = gaps (LEB128 varints of the number of zeros before each non-zero),
2 = Rice-coded gaps (parameter k; the unary parts of all gaps, then their
k-bit remainders, as two bit strings). The encoder keeps the smallest.
Shuffle 1 = byte planes: the k-th bytes (little-endian) of all values, then
the (k+1)-th bytes, ...

Every length is checked against the bytes that remain and against caps
before anything is allocated; every decoded stream must produce exactly the
declared number of bytes. All failures raise `CompressedFormatError`.
"""

import lzma
import os
import struct
import zlib

import numpy as np

from keras_prune._keywords import keywords_checked

ARRAY_MAGIC = b"KPRA"
ARRAY_VERSION = 1

# Layouts.
DENSE, SPARSE, ZEROS = 0, 1, 2
_LAYOUT_NAMES = {DENSE: "dense", SPARSE: "sparse", ZEROS: "zeros"}
# Element orders.
C_ORDER, CHANNEL_MAJOR = 0, 1
# Mask codings.
BITMAP, GAPS, RICE = 0, 1, 2
_MASK_NAMES = {BITMAP: "bitmap", GAPS: "gaps", RICE: "rice"}
# Stream codecs.
STORED, ZLIB, LZMA = 0, 1, 2
_CODEC_NAMES = {STORED: "stored", ZLIB: "zlib", LZMA: "lzma"}

MAX_NDIM = 32
# Largest product of an array's non-zero dimensions and item size: NumPy
# refuses more (even for a 0-size array).
_MAX_EXTENT = int(np.iinfo(np.intp).max)
# Default cap on the decoded size of one array (and, in model files, of all
# arrays together): 16 GiB.
DEFAULT_MAX_BYTES = 1 << 34
# A blob may not decode to more than this many times the length of the
# input it came from (plus `_EXPANSION_FLOOR`). Legitimate data stays far
# below: a 99.99%-sparse float32 tensor expands about 7,000x.
MAX_EXPANSION = 1 << 16
_EXPANSION_FLOOR = 1 << 20
_MAX_LZMA_DICT = 1 << 26
_MIN_LZMA_DICT = 1 << 12

# LZMA literal-context properties tried for each stream: (lc, lp, pb).
# lc=0/pb=0 suits byte planes of float values and int8 values; (3, 0, 2)
# (the LZMA default) suits bitmaps and varints.
_LZMA_PROPS = {"values": (0, 0, 0), "mask": (3, 0, 2)}

try:  # ml_dtypes ships with Keras (bfloat16, float8).
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover
    _ml_dtypes = None

_DTYPE_CODES = {
    1: "bool",
    2: "int8",
    3: "uint8",
    4: "int16",
    5: "uint16",
    6: "int32",
    7: "uint32",
    8: "int64",
    9: "uint64",
    10: "float16",
    11: "bfloat16",
    12: "float32",
    13: "float64",
    14: "float8_e4m3fn",
    15: "float8_e5m2",
    16: "complex64",
    17: "complex128",
}
_CODE_OF_DTYPE = {name: code for code, name in _DTYPE_CODES.items()}


class CompressedFormatError(ValueError):
    """A compressed keras-prune file or array blob is malformed.

    Raised for every problem found while reading: truncation, wrong magic,
    unknown version, lengths that do not add up, shapes that do not match
    the model, corrupt compressed streams, checksum mismatches. The message
    names the part of the file that is wrong.
    """


def _dtype(name):
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        if _ml_dtypes is None:  # pragma: no cover
            raise CompressedFormatError(
                f"dtype {name} needs the ml_dtypes package"
            )
        return np.dtype(getattr(_ml_dtypes, name))
    return np.dtype(name)


def dtype_code(dtype):
    """The format's code for a NumPy dtype; raises `TypeError` if unknown."""
    name = np.dtype(dtype).name
    if name not in _CODE_OF_DTYPE:
        raise TypeError(
            f"compress_array cannot store dtype {name!r}; supported: "
            f"{sorted(_CODE_OF_DTYPE)}."
        )
    return _CODE_OF_DTYPE[name]


# ---------------------------------------------------------------- varints


def write_varint(value):
    """LEB128 encoding of a non-negative int."""
    if value < 0:
        raise ValueError(f"varint must be >= 0, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_varints(values):
    """LEB128 encoding of a 1-D array of non-negative integers (vectorised)."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size == 0:
        return b""
    nbytes = np.ones(values.shape, dtype=np.int64)
    rest = values >> np.uint64(7)
    while np.any(rest):
        nbytes += rest > 0
        rest >>= np.uint64(7)
    ends = np.cumsum(nbytes)
    starts = ends - nbytes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    remaining = values.copy()
    for k in range(int(nbytes.max())):
        active = nbytes > k
        chunk = (remaining[active] & np.uint64(0x7F)).astype(np.uint8)
        more = nbytes[active] > k + 1
        out[starts[active] + k] = chunk | (more.astype(np.uint8) << 7)
        remaining = remaining >> np.uint64(7)
    return out.tobytes()


def decode_varints(data, count, what):
    """Decodes exactly `count` LEB128 varints (each < 2**63) from `data`
    (with `count=None`, all of them: `data` must end with a whole one)."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if count is None:
        count = len(ends)
    if (
        len(ends) != count
        or (count and ends[-1] != len(b) - 1)
        or (count == 0 and len(b))
    ):
        raise CompressedFormatError(
            f"{what}: expected {count} varints in {len(b)} bytes, found "
            f"{len(ends)} terminated ones"
        )
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.concatenate([[-1], ends]))
    if lengths.max() > 9:
        raise CompressedFormatError(f"{what}: varint longer than 9 bytes")
    starts = ends - lengths + 1
    pos = np.arange(len(b)) - np.repeat(starts, lengths)
    parts = (b & 0x7F).astype(np.int64) << (7 * pos).astype(np.int64)
    return np.add.reduceat(parts, starts)


class Reader:
    """Bounds-checked reads from a bytes object; errors name the field."""

    def __init__(self, data, what, offset=0, end=None):
        self.data = data
        self.pos = offset
        self.end = len(data) if end is None else end
        self.what = what

    @property
    def remaining(self):
        return self.end - self.pos

    def take(self, n, field):
        if n < 0 or n > self.remaining:
            raise CompressedFormatError(
                f"{self.what}: truncated: {field} needs {n} bytes at offset "
                f"{self.pos}, only {self.remaining} remain"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, field):
        return self.take(1, field)[0]

    def u16(self, field):
        return struct.unpack("<H", self.take(2, field))[0]

    def varint(self, field, limit=1 << 63):
        value, shift = 0, 0
        for _ in range(10):
            byte = self.u8(field)
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value > limit:
                    raise CompressedFormatError(
                        f"{self.what}: {field} = {value} exceeds the limit "
                        f"{limit}"
                    )
                return value
            shift += 7
        raise CompressedFormatError(f"{self.what}: {field} varint too long")


# ---------------------------------------------------------------- streams


def _lzma_filters(raw_len, props):
    lc, lp, pb = props
    dict_size = _MIN_LZMA_DICT
    while dict_size < raw_len and dict_size < _MAX_LZMA_DICT:
        dict_size <<= 1
    return [
        {
            "id": lzma.FILTER_LZMA2,
            "preset": 9,
            "dict_size": dict_size,
            "lc": lc,
            "lp": lp,
            "pb": pb,
        }
    ]


CODECS = ("lzma", "zlib", "stored")


def check_flag(value, name):
    """Raises `TypeError` unless `value` is a bool: `include_optimizer=
    "no"` or `verify="false"` are true, and would silently do the
    opposite of what was written."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be True or False, got {value!r:.80} of type "
            f"{type(value).__name__}."
        )


def check_codec(codec):
    """Raises `ValueError` unless `codec` is one of `CODECS`.

    Checked up front: an array too small to compress would otherwise never
    reach the codec, and a misspelt name would pass unnoticed.
    """
    if not isinstance(codec, str) or codec not in CODECS:
        raise ValueError(
            f"codec must be 'lzma', 'zlib' or 'stored', got {codec!r}."
        )


def encode_stream(raw, codec="lzma", kind="values"):
    """One stream: the smallest of stored and `codec` (lzma or zlib)."""
    raw = bytes(raw)
    best = (
        bytes([STORED]) + write_varint(len(raw)) + write_varint(len(raw)) + raw
    )
    if codec == "stored" or not raw:
        return best
    if codec == "lzma":
        props = _LZMA_PROPS[kind]
        body = lzma.compress(
            raw, format=lzma.FORMAT_RAW, filters=_lzma_filters(len(raw), props)
        )
        head = bytes([LZMA, (props[2] * 5 + props[1]) * 9 + props[0]])
    elif codec == "zlib":
        body = zlib.compress(raw, 9)
        head = bytes([ZLIB])
    else:
        raise ValueError(
            f"codec must be 'lzma', 'zlib' or 'stored', got {codec!r}"
        )
    candidate = head + write_varint(len(raw)) + write_varint(len(body)) + body
    return candidate if len(candidate) < len(best) else best


def decode_stream(reader, expected_len, field, length_range=None):
    """Reads one stream and returns exactly `expected_len` decoded bytes.

    With `expected_len=None`, any raw length within `length_range`
    (inclusive) is accepted.
    """
    codec = reader.u8(f"{field} codec")
    if codec not in _CODEC_NAMES:
        raise CompressedFormatError(
            f"{reader.what}: {field}: unknown codec {codec}"
        )
    props = None
    if codec == LZMA:
        p = reader.u8(f"{field} lzma properties")
        lc, rest = p % 9, p // 9
        lp, pb = rest % 5, rest // 5
        if pb > 4 or lc + lp > 4:
            raise CompressedFormatError(
                f"{reader.what}: {field}: invalid lzma properties {p}"
            )
        props = (lc, lp, pb)
    raw_len = reader.varint(f"{field} raw length")
    if expected_len is None:
        lo, hi = length_range
        if not lo <= raw_len <= hi:
            raise CompressedFormatError(
                f"{reader.what}: {field}: raw length {raw_len} outside the "
                f"possible range [{lo}, {hi}]"
            )
    elif raw_len != expected_len:
        raise CompressedFormatError(
            f"{reader.what}: {field}: raw length {raw_len} does not match "
            f"the {expected_len} bytes the header implies"
        )
    stored_len = reader.varint(f"{field} stored length")
    body = reader.take(stored_len, f"{field} data")
    if codec == STORED:
        if stored_len != raw_len:
            raise CompressedFormatError(
                f"{reader.what}: {field}: stored stream of {stored_len} "
                f"bytes, expected {raw_len}"
            )
        return body
    # The output is capped before the first byte is inflated: at most one
    # byte more than declared (so an over-long stream is detected), never
    # "no limit" (zlib reads max_length=0 as unlimited).
    try:
        if codec == ZLIB:
            d = zlib.decompressobj()
            out = d.decompress(body, raw_len + 1)
            complete = d.eof and not d.unconsumed_tail and not d.unused_data
        else:
            d = lzma.LZMADecompressor(
                format=lzma.FORMAT_RAW, filters=_lzma_filters(raw_len, props)
            )
            out = d.decompress(body, raw_len + 1)
            # A raw LZMA2 stream ends with an end marker; it must be there,
            # right at the end of the stored bytes.
            if len(out) == raw_len and not d.eof:
                out += d.decompress(b"", 1)
            complete = d.eof and not d.unused_data
    except (zlib.error, lzma.LZMAError, MemoryError, ValueError) as e:
        raise CompressedFormatError(
            f"{reader.what}: {field}: corrupt {_CODEC_NAMES[codec]} stream "
            f"({e})"
        ) from None
    if len(out) != raw_len or not complete:
        raise CompressedFormatError(
            f"{reader.what}: {field}: corrupt {_CODEC_NAMES[codec]} stream "
            f"(decoded {len(out)} of {raw_len} bytes"
            f"{'' if complete else ', stream not properly terminated'})"
        )
    return out


# ---------------------------------------------------------------- arrays


def _shuffle(values):
    """Byte planes of a 1-D array (little-endian)."""
    itemsize = values.dtype.itemsize
    le = values.astype(values.dtype.newbyteorder("<"), copy=False)
    if itemsize == 1:
        return le.view(np.uint8).tobytes()
    return le.view(np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(raw, dtype, count, shuffled, writable=True):
    """The `count` values of `dtype` in `raw` (byte planes when
    `shuffled`). `writable`: as a new writable array (`raw` is immutable
    bytes, NumPy's view of it is read-only); one copy either way.
    Otherwise unshuffled values may be a read-only view."""
    little = dtype.newbyteorder("<")
    if shuffled and dtype.itemsize > 1:
        planes = np.frombuffer(raw, np.uint8).reshape(dtype.itemsize, count)
        values = planes.T.copy(order="C").view(little).reshape(count)
    else:
        values = np.frombuffer(raw, dtype=little)
        if writable:
            values = values.copy()
    return values.astype(dtype, copy=False)


def _ordered(array, order):
    if order == CHANNEL_MAJOR:
        return np.moveaxis(array, -1, 0).ravel()
    return array.ravel()


def _unordered(flat, shape, order):
    if order == CHANNEL_MAJOR:
        moved = (shape[-1],) + tuple(shape[:-1])
        return np.ascontiguousarray(np.moveaxis(flat.reshape(moved), 0, -1))
    return flat.reshape(shape)


def _nonzero_bits(flat):
    """True where the bit pattern is not all zero (so -0.0 counts)."""
    if flat.dtype == np.bool_:
        return flat.copy()
    itemsize = flat.dtype.itemsize
    if itemsize == 16:  # complex128: two 8-byte halves
        halves = np.ascontiguousarray(flat).view(np.uint64).reshape(-1, 2)
        return (halves[:, 0] != 0) | (halves[:, 1] != 0)
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
    return flat.view(unsigned[itemsize]) != 0


def _rice_parts(gaps, k):
    """Unary bit string (q ones then a zero per gap) and k-bit remainders."""
    q = gaps >> k
    n_unary = int(q.sum()) + len(q)
    unary = np.ones(n_unary, dtype=bool)
    unary[np.cumsum(q + 1) - 1] = False
    if k:
        shifts = np.arange(k - 1, -1, -1, dtype=np.int64)
        bits = ((gaps[:, None] >> shifts) & 1).astype(bool).ravel()
    else:
        bits = np.zeros(0, dtype=bool)
    return n_unary, np.packbits(unary).tobytes() + np.packbits(bits).tobytes()


def _rice_k(gaps):
    """The Rice parameter minimising the coded length."""
    mean = float(gaps.mean()) if len(gaps) else 0.0
    guess = int(np.log2(mean * 0.69 + 1))
    best = None
    for k in range(max(0, guess - 2), min(guess + 3, 41)):
        bits = int((gaps >> k).sum()) + len(gaps) * (k + 1)
        if best is None or bits < best[0]:
            best = (bits, k)
    return best[1]


def _encode_mask(mask, nnz, codec):
    """Smallest of the bitmap, gap and Rice codings of a flat bool mask."""
    options = [
        bytes([BITMAP])
        + encode_stream(np.packbits(mask).tobytes(), codec, "mask")
    ]
    positions = np.flatnonzero(mask)
    gaps = np.diff(positions, prepend=-1) - 1
    options.append(
        bytes([GAPS]) + encode_stream(encode_varints(gaps), codec, "mask")
    )
    k = _rice_k(gaps)
    n_unary, raw = _rice_parts(gaps, k)
    options.append(
        bytes([RICE, k])
        + write_varint(n_unary)
        + encode_stream(raw, codec, "mask")
    )
    return min(options, key=len)


# Gaps are turned into mask positions this many at a time, so decoding a
# mask never holds more than a few MiB of int64 temporaries beyond the mask.
_GAP_CHUNK = 1 << 18


def _mask_from_gap_chunks(reader, chunks, n, nnz):
    """The bool mask of `n` elements from gap arrays, a chunk at a time.

    Every gap must be in [0, n) (so `gap + 1` cannot overflow) and every
    position (running sum) below n. Positions stay below n + n * chunk
    length < 2**63 within a chunk, so nothing wraps.
    """
    mask = np.zeros(n, dtype=bool)
    start, count = 0, 0
    for gaps in chunks:
        if not len(gaps):
            continue
        if int(gaps.min()) < 0 or int(gaps.max()) >= n:
            raise CompressedFormatError(
                f"{reader.what}: mask gaps point past the {n} elements"
            )
        positions = np.cumsum(gaps + 1) + (start - 1)
        if int(positions[-1]) >= n:
            raise CompressedFormatError(
                f"{reader.what}: mask gaps point past the {n} elements"
            )
        mask[positions] = True
        start = int(positions[-1]) + 1
        count += len(gaps)
    if count != nnz:
        raise CompressedFormatError(
            f"{reader.what}: mask holds {count} gaps, expected {nnz}"
        )
    return mask


def _varint_chunks(reader, raw, nnz):
    """Yields the gap varints of `raw` as int64 arrays, chunk by chunk."""
    b = np.frombuffer(raw, dtype=np.uint8)
    if nnz == 0:
        if len(b):
            raise CompressedFormatError(
                f"{reader.what}: mask gaps: {len(b)} bytes for no gaps"
            )
        return
    if len(b) == 0 or b[-1] >= 0x80:
        raise CompressedFormatError(
            f"{reader.what}: mask gaps: the last varint is not terminated"
        )
    lo, found = 0, 0
    while lo < len(b):
        hi = min(lo + _GAP_CHUNK, len(b))
        if hi < len(b):
            # Extend to the end of the varint that straddles the cut.
            ends = np.flatnonzero(b[hi - 1 : min(hi + 9, len(b))] < 0x80)
            if not len(ends):
                raise CompressedFormatError(
                    f"{reader.what}: mask gaps: varint longer than 9 bytes"
                )
            hi = hi - 1 + int(ends[0]) + 1
        values = decode_varints(
            bytes(b[lo:hi]), None, f"{reader.what}: mask gaps"
        )
        found += len(values)
        if found > nnz:
            raise CompressedFormatError(
                f"{reader.what}: mask gaps: more than {nnz} varints"
            )
        yield values
        lo = hi
    if found != nnz:
        raise CompressedFormatError(
            f"{reader.what}: mask gaps: expected {nnz} varints, found {found}"
        )


def _rice_chunks(reader, raw, unary_len, n_unary, nnz, k, n):
    """Yields Rice-coded gaps as int64 arrays, chunk by chunk."""
    unary_bytes = np.frombuffer(raw[:unary_len], np.uint8)
    rem_bytes = np.frombuffer(raw[unary_len:], np.uint8)
    if n_unary % 8 and unary_bytes[-1] & ((1 << (8 - n_unary % 8)) - 1):
        raise CompressedFormatError(
            f"{reader.what}: rice unary bits set past the end"
        )
    # The quotient may be at most (n - 1) >> k: `q << k` of a larger one
    # would overflow int64 and could wrap to a plausible position.
    q_max = (n - 1) >> k if n else 0
    weights = np.int64(1) << np.arange(k - 1, -1, -1, dtype=np.int64)
    last_end, index = -1, 0
    chunk_bytes = _GAP_CHUNK // 8
    for lo in range(0, unary_len, chunk_bytes):
        hi = min(lo + chunk_bytes, unary_len)
        bits = np.unpackbits(
            unary_bytes[lo:hi], count=min(8 * (hi - lo), n_unary - 8 * lo)
        )
        ends = np.flatnonzero(bits == 0) + 8 * lo
        if not len(ends):
            if 8 * hi - last_end > q_max + 1 and 8 * lo < n_unary:
                raise CompressedFormatError(
                    f"{reader.what}: a rice-coded gap points past the {n} "
                    "elements"
                )
            continue
        q = np.diff(ends, prepend=last_end) - 1
        last_end = int(ends[-1])
        if index + len(q) > nnz:
            raise CompressedFormatError(
                f"{reader.what}: rice unary bits hold more than {nnz} codes"
            )
        if int(q.max()) > q_max:
            raise CompressedFormatError(
                f"{reader.what}: a rice-coded gap points past the {n} elements"
            )
        gaps = q.astype(np.int64)
        if k:
            first_bit, last_bit = index * k, (index + len(q)) * k
            part = np.unpackbits(
                rem_bytes[first_bit // 8 : (last_bit + 7) // 8]
            )
            part = part[first_bit % 8 : first_bit % 8 + len(q) * k]
            gaps = (gaps << k) | (
                part.reshape(len(q), k).astype(np.int64) * weights
            ).sum(axis=1)
        index += len(q)
        yield gaps
    if index != nnz or (nnz and last_end != n_unary - 1):
        raise CompressedFormatError(
            f"{reader.what}: rice unary bits hold {index} codes, expected {nnz}"
        )


def _decode_mask(reader, n, nnz):
    coding = reader.u8("mask coding")
    if coding == BITMAP:
        raw = decode_stream(reader, (n + 7) // 8, "mask bitmap")
        mask = np.unpackbits(np.frombuffer(raw, np.uint8), count=n).astype(bool)
        if (
            n % 8
            and np.unpackbits(np.frombuffer(raw[-1:], np.uint8))[n % 8 :].any()
        ):
            raise CompressedFormatError(
                f"{reader.what}: mask bitmap has bits set past the end"
            )
        if int(np.count_nonzero(mask)) != nnz:
            raise CompressedFormatError(
                f"{reader.what}: mask bitmap has {np.count_nonzero(mask)} "
                f"bits set, header says {nnz} non-zeros"
            )
        return mask
    if coding == GAPS:
        # One byte per gap, plus one per 7 bits above the first 7: a gap g
        # takes 1 + floor(log128(g)) <= 1 + g / 128 bytes, and the gaps sum
        # to at most n - nnz. So the stream is at most about n / 128 bytes
        # longer than nnz: its size is bounded by the array's, not 9x it.
        raw = decode_stream(
            reader,
            None,
            "mask gaps",
            length_range=(nnz, nnz + (n - nnz) // 128 + 1),
        )
        return _mask_from_gap_chunks(
            reader, _varint_chunks(reader, raw, nnz), n, nnz
        )
    if coding == RICE:
        k = reader.u8("rice parameter")
        # The encoder picks k near log2 of the mean gap, which is at most
        # n / nnz: 2**k <= 8 * (n // nnz + 1) always holds for its output,
        # and bounds the remainder bits by about n / 2.
        if k > 40 or (1 << k) > 8 * (n // max(nnz, 1) + 1):
            raise CompressedFormatError(
                f"{reader.what}: rice parameter {k} is impossible for {nnz} "
                f"gaps in {n} elements"
            )
        n_unary = reader.varint("rice unary bits", limit=1 << 50)
        if not nnz <= n_unary <= nnz + n:
            raise CompressedFormatError(
                f"{reader.what}: {n_unary} unary bits cannot code {nnz} "
                f"gaps in {n} elements"
            )
        unary_len = (n_unary + 7) // 8
        raw = decode_stream(
            reader, unary_len + (nnz * k + 7) // 8, "mask rice bits"
        )
        return _mask_from_gap_chunks(
            reader,
            _rice_chunks(reader, raw, unary_len, n_unary, nnz, k, n),
            n,
            nnz,
        )
    raise CompressedFormatError(f"{reader.what}: unknown mask coding {coding}")


def _encode_body(array, order, codec):
    flat = _ordered(array, order)
    nonzero = _nonzero_bits(flat)
    nnz = int(np.count_nonzero(nonzero))
    shuffle = 1 if flat.dtype.itemsize > 1 else 0
    if nnz == flat.size:
        return bytes([DENSE, order, shuffle]) + encode_stream(
            _shuffle(flat) if shuffle else flat.tobytes(), codec, "values"
        )
    # With any zero, SPARSE is used: removing the zeros from the values
    # costs less than the mask adds (the mask of a nearly dense array
    # gap-codes to almost nothing).
    parts = [
        bytes([SPARSE, order]),
        write_varint(nnz),
        _encode_mask(nonzero, nnz, codec),
    ]
    if flat.dtype != np.bool_:
        values = flat[nonzero]
        parts += [
            bytes([shuffle]),
            encode_stream(
                _shuffle(values) if shuffle else values.tobytes(),
                codec,
                "values",
            ),
        ]
    return b"".join(parts)


def _distinct_part(array):
    """`array` with each broadcast axis (stride 0) cut to length 1: the
    same elements, without the repeats (a view, nothing is copied)."""
    index = tuple(
        slice(0, 1) if stride == 0 and length > 1 else slice(None)
        for stride, length in zip(array.strides, array.shape)
    )
    return array[index]


# `compress_array` holds about this many copies of the array's bytes at
# once (the contiguous array, its flat order, the shuffled byte planes and
# the codec's input and output).
_COMPRESS_COPIES = 3


def _physical_memory():
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _human_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _too_large_message(array, memory):
    nbytes = array.size * array.dtype.itemsize
    where = (
        f", more than this machine's {_human_bytes(memory)}"
        if memory
        else " and ran out of memory"
    )
    return (
        f"compress_array: the array of shape {tuple(array.shape)} and dtype "
        f"{array.dtype.name} holds {nbytes} bytes "
        f"({_human_bytes(nbytes)}); compressing it needs about "
        f"{_COMPRESS_COPIES} times that in memory{where}. Compress it in "
        "parts (one slice along the first axis per call) or on a machine "
        "with more memory. (A broadcast view of zeros, np.broadcast_to(0, "
        "shape), needs no memory.)"
    )


def _check_fits_in_memory(array):
    """Raises `ValueError` (naming the size and what to do) before any
    work when compressing `array` cannot fit in physical memory: NumPy
    would end in a MemoryError, or the system would kill the process."""
    memory = _physical_memory()
    nbytes = array.size * array.dtype.itemsize
    if memory and nbytes * _COMPRESS_COPIES > memory:
        raise ValueError(_too_large_message(array, memory))


@keywords_checked
def compress_array(array, codec="lzma"):
    """Losslessly compresses one NumPy array (or Keras/backend tensor).

    Sparse arrays are stored as a mask (bitmap or gap-coded positions,
    whichever is smaller) plus the non-zero values, byte-plane shuffled;
    dense arrays as shuffled values. Each part is LZMA-compressed (or kept
    as is when that is smaller). Both C order and channel-major order (one
    output channel after another) are tried for arrays of rank >= 2.

    Args:
        array: Array-like of a supported dtype (bool, int8..int64,
            uint8..uint64, float16, bfloat16, float32, float64, float8).
        codec: `'lzma'` (default, smallest), `'zlib'` (faster) or
            `'stored'`.

    Returns:
        bytes, readable by `decompress_array`, which returns the same
        values bit for bit (NaN payloads and -0.0 included), shape and
        dtype, in native byte order (a big-endian `>f4` array comes back
        as `float32` holding the same values).

    Raises:
        ValueError: unsupported dtype or rank, unknown codec, or an array
            too large to compress in this machine's memory (the message
            gives its size; compress it in parts). A broadcast view of
            zeros of any size is compressed without materialising it.
        TypeError: a dtype that is not a number (object, str), or a
            `numpy.ma.MaskedArray` (its mask would be lost).

    Example:

    >>> blob = keras_prune.compress_array(kernel)
    >>> np.array_equal(keras_prune.decompress_array(blob), kernel)
    True
    """
    if not isinstance(
        array, (np.ndarray, np.generic, list, tuple, int, float, bool)
    ):
        try:
            import keras

            from keras_prune._backend import resolved

            array = keras.ops.convert_to_numpy(resolved(array))
        except Exception as error:  # noqa: BLE001 - not a tensor: NumPy's
            if hasattr(array, "dtype") and hasattr(array, "shape"):
                # A tensor NumPy cannot hold (torch float8): say so, not
                # NumPy's "unsupported ScalarType".
                raise TypeError(
                    f"compress_array cannot read a {type(array).__name__} "
                    f"of dtype {array.dtype} as a NumPy array ({error}). "
                    "Cast it to a dtype NumPy holds (e.g. float32) first."
                ) from error
    check_codec(codec)
    if isinstance(array, np.ma.MaskedArray):
        # np.asarray keeps the data and drops the mask: not lossless.
        raise TypeError(
            "compress_array stores plain arrays; the mask of a "
            "numpy.ma.MaskedArray would be lost. Compress "
            "`array.filled(value)` and `np.ma.getmaskarray(array)` "
            "separately."
        )
    array = np.asarray(array)
    code = dtype_code(array.dtype)
    if array.ndim > MAX_NDIM:
        raise ValueError(f"arrays of rank > {MAX_NDIM} are not supported")
    head = [ARRAY_MAGIC, bytes([ARRAY_VERSION, code, array.ndim])]
    head += [write_varint(int(d)) for d in array.shape]
    # A broadcast view (np.broadcast_to) repeats a smaller array: look at
    # that one for zeros, so that a view of zeros of any size is coded
    # without materialising it.
    if array.size and not _nonzero_bits(_distinct_part(array).ravel()).any():
        body = bytes([ZEROS])
    else:
        _check_fits_in_memory(array)
        try:
            array = np.require(array, requirements="C")
            orders = [C_ORDER]
            if array.ndim >= 2 and array.shape[-1] > 1 and array.size > 64:
                orders.append(CHANNEL_MAJOR)
            body = min((_encode_body(array, o, codec) for o in orders), key=len)
        except MemoryError:
            raise ValueError(_too_large_message(array, None)) from None
    blob = b"".join(head) + body
    return blob + struct.pack("<I", zlib.crc32(blob))


def read_array_header(reader):
    """Parses magic, version, dtype and shape; returns `(dtype, shape)`."""
    if reader.take(4, "magic") != ARRAY_MAGIC:
        raise CompressedFormatError(
            f"{reader.what}: wrong magic (not a keras-prune array blob)"
        )
    version = reader.u8("version")
    if version != ARRAY_VERSION:
        raise CompressedFormatError(
            f"{reader.what}: unsupported array format version {version} "
            f"(this keras-prune reads version {ARRAY_VERSION})"
        )
    code = reader.u8("dtype")
    if code not in _DTYPE_CODES:
        raise CompressedFormatError(f"{reader.what}: unknown dtype code {code}")
    ndim = reader.u8("rank")
    if ndim > MAX_NDIM:
        raise CompressedFormatError(
            f"{reader.what}: rank {ndim} exceeds the maximum {MAX_NDIM}"
        )
    shape = tuple(
        reader.varint(f"dimension {i}", limit=1 << 48) for i in range(ndim)
    )
    return _dtype(_DTYPE_CODES[code]), shape


def check_size(what, dtype, shape, max_bytes):
    n = 1
    extent = dtype.itemsize  # NumPy refuses a shape whose non-zero
    for d in shape:  # dimensions overflow, even with a 0 among them
        n *= d
        extent *= max(d, 1)
    nbytes = n * dtype.itemsize
    if nbytes > max_bytes:
        raise CompressedFormatError(
            f"{what}: shape {shape} of {dtype.name} needs {nbytes} bytes, "
            f"more than the limit of {max_bytes} (by default 65,536 times "
            "the input's length + 1 MiB, at most 16 GiB; pass max_bytes to "
            "load it)"
        )
    if extent > _MAX_EXTENT:
        raise CompressedFormatError(
            f"{what}: shape {shape} of {dtype.name} is too large for any "
            "array (its non-zero dimensions multiply past 2**63 bytes)"
        )
    return n, nbytes


def check_max_bytes(max_bytes):
    """`max_bytes` if it is None or an int >= 0; raises otherwise (NaN
    compared false with every size: it meant no limit at all)."""
    if max_bytes is None:
        return None
    if isinstance(max_bytes, (bool, np.bool_)) or not isinstance(
        max_bytes, (int, np.integer)
    ):
        raise TypeError(
            "max_bytes must be None or an integer number of bytes, got "
            f"{max_bytes!r} of type {type(max_bytes).__name__}"
        )
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    return int(max_bytes)


def expansion_limit(input_len, max_bytes):
    """The decode limit: `max_bytes` when given, else the default cap and
    at most `MAX_EXPANSION` times the input (+1 MiB)."""
    max_bytes = check_max_bytes(max_bytes)
    if max_bytes is not None:
        return max_bytes
    return min(DEFAULT_MAX_BYTES, _EXPANSION_FLOOR + MAX_EXPANSION * input_len)


def decode_array(reader, max_bytes, expect=None):
    """Decodes one array blob from `reader` (checksum verified by caller)."""
    dtype, shape = read_array_header(reader)
    if expect is not None and (dtype, shape) != expect:
        raise CompressedFormatError(
            f"{reader.what}: holds {dtype.name}{list(shape)}, the file's "
            f"table says {expect[0].name}{list(expect[1])}"
        )
    n, _ = check_size(reader.what, dtype, shape, max_bytes)
    layout = reader.u8("layout")
    if layout == ZEROS:
        return np.zeros(shape, dtype=dtype)
    if layout not in (DENSE, SPARSE):
        raise CompressedFormatError(f"{reader.what}: unknown layout {layout}")
    order = reader.u8("order")
    if order not in (C_ORDER, CHANNEL_MAJOR) or (
        order == CHANNEL_MAJOR and len(shape) < 2
    ):
        raise CompressedFormatError(
            f"{reader.what}: invalid element order {order} for rank "
            f"{len(shape)}"
        )
    if layout == DENSE:
        shuffle = reader.u8("shuffle")
        if shuffle not in (0, 1):
            raise CompressedFormatError(
                f"{reader.what}: invalid shuffle flag {shuffle}"
            )
        raw = decode_stream(reader, n * dtype.itemsize, "values")
        if (
            dtype == np.bool_
            and np.frombuffer(raw, np.uint8).max(initial=0) > 1
        ):
            # NumPy would keep the byte: such a "bool" is neither True nor
            # False (TensorFlow's logical_not of it is True).
            raise CompressedFormatError(
                f"{reader.what}: a bool value is neither 0 nor 1"
            )
        flat = _unshuffle(raw, dtype, n, shuffle)
        return _unordered(flat, shape, order)
    nnz = reader.varint("non-zero count")
    if nnz > n:
        raise CompressedFormatError(
            f"{reader.what}: {nnz} non-zeros in an array of {n} elements"
        )
    mask = _decode_mask(reader, n, nnz)
    flat = np.zeros(n, dtype=dtype)
    if dtype == np.bool_:
        flat[mask] = True
    else:
        shuffle = reader.u8("shuffle")
        if shuffle not in (0, 1):
            raise CompressedFormatError(
                f"{reader.what}: invalid shuffle flag {shuffle}"
            )
        raw = decode_stream(reader, nnz * dtype.itemsize, "values")
        values = _unshuffle(raw, dtype, nnz, shuffle, writable=False)
        if not _nonzero_bits(values).all():
            raise CompressedFormatError(
                f"{reader.what}: a stored non-zero value is zero"
            )
        flat[mask] = values
    return _unordered(flat, shape, order)


def verify_crc(data, what):
    if len(data) < 4:
        raise CompressedFormatError(
            f"{what}: truncated: {len(data)} bytes, too short for a checksum"
        )
    stored = struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(data[:-4]) != stored:
        raise CompressedFormatError(
            f"{what}: checksum mismatch (the data is corrupt or truncated)"
        )


@keywords_checked
def decompress_array(data, max_bytes=None, verify=True):
    """Inverse of `compress_array`: the exact array, bit for bit.

    Args:
        data: bytes from `compress_array`.
        max_bytes: Refuse arrays larger than this many bytes when decoded.
            Default: 65,536 times the blob's length + 1 MiB, at most 16 GiB
            (a 99.99%-sparse float32 tensor expands about 7,000 times).
        verify: Check the CRC-32 first (leave True; False is for tests of
            the parser).

    Returns:
        np.ndarray with the original dtype and shape.

    Raises:
        CompressedFormatError: `data` is not a valid blob (message says why).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"decompress_array expects bytes, got {type(data).__name__}"
        )
    data = bytes(data)
    what = "array blob"
    # The smallest blob: a 0-d array of zeros (magic, version, dtype, rank,
    # layout, checksum).
    if len(data) < 4 + 3 + 1 + 4:
        raise CompressedFormatError(
            f"{what}: truncated: {len(data)} bytes is shorter than the "
            "smallest blob"
        )
    check_flag(verify, "verify")
    if verify:
        if data[:4] != ARRAY_MAGIC:
            raise CompressedFormatError(
                f"{what}: wrong magic {data[:4]!r} (not a keras-prune array "
                "blob)"
            )
        verify_crc(data, what)
    reader = Reader(data, what, end=len(data) - 4)
    array = decode_array(reader, expansion_limit(len(data), max_bytes))
    if reader.remaining:
        raise CompressedFormatError(
            f"{what}: {reader.remaining} unexpected bytes after the data"
        )
    return array


def describe_blob(data):
    """Layout summary of an array blob (for `inspect` and tests)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        # bytes(10**12) would allocate a terabyte of zeros.
        raise TypeError(
            f"describe_blob expects bytes, got {type(data).__name__}"
        )
    if len(data) < 4 + 3 + 1 + 4:
        raise CompressedFormatError(
            f"array blob: truncated: {len(data)} bytes is shorter than the "
            "smallest blob"
        )
    reader = Reader(bytes(data), "array blob", end=len(data) - 4)
    dtype, shape = read_array_header(reader)
    layout = reader.u8("layout")
    info = {
        "dtype": dtype.name,
        "shape": shape,
        "layout": _LAYOUT_NAMES.get(layout, "?"),
        "bytes": len(data),
    }
    if layout in (DENSE, SPARSE):
        order = reader.u8("order")
        info["order"] = {C_ORDER: "C", CHANNEL_MAJOR: "channel-major"}.get(
            order, "?"
        )
    if layout == SPARSE:
        info["nnz"] = reader.varint("nnz")
        info["mask"] = _MASK_NAMES.get(reader.u8("mask coding"), "?")
    return info
