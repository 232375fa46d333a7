"""Regression tests of the third hostile-input pass (issue 15).

Each test reproduces one finding: arrays too large to compress, read-only
decoded arrays, the atomic writer's odd targets, CLI arguments and files
that are valid zip/npz/.keras but not `.kpz`. Models are tiny and shared.
"""

import numpy as np
import pytest

import keras_prune
from keras_prune.export import _format

# ------------------------------------------------- compress_array sizes


def test_huge_broadcast_view_gets_a_clear_error_not_a_memory_error():
    """Before: a 4 TiB zero-stride view ended in NumPy's MemoryError
    (materialised by np.require)."""
    huge = np.broadcast_to(np.float32(1), (2**40,))
    with pytest.raises(ValueError, match=r"4398046511104 bytes \(4\.0 TiB\)"):
        keras_prune.export.compress_array(huge)
    with pytest.raises(ValueError, match="in parts"):
        keras_prune.compress_array(huge.reshape(2**20, 2**20))


def test_broadcast_view_of_zeros_is_compressed_without_materialising():
    huge = np.broadcast_to(np.float32(0), (2**40,))
    blob = keras_prune.compress_array(huge)
    assert len(blob) == 18
    info = _format.describe_blob(blob)
    assert (info["layout"], info["shape"]) == ("zeros", (2**40,))
    # Loading it back needs max_bytes: the default cap names the size.
    with pytest.raises(keras_prune.CompressedFormatError, match="max_bytes"):
        keras_prune.decompress_array(blob)
    # -0.0 is not a zero: its bits must come back.
    neg = np.broadcast_to(np.float32(-0.0), (3, 4))
    back = keras_prune.decompress_array(keras_prune.compress_array(neg))
    np.testing.assert_array_equal(back.view(np.uint32), neg.view(np.uint32))
    # Small broadcast views of non-zeros still round-trip.
    view = np.broadcast_to(np.arange(3, dtype="float32"), (4, 3))
    back = keras_prune.decompress_array(keras_prune.compress_array(view))
    np.testing.assert_array_equal(back, view)


# ------------------------------------------------- writable arrays


DTYPES = ["bool", "int8", "int16", "float32", "bfloat16", "complex128"]


@pytest.mark.parametrize("codec", ["lzma", "zlib", "stored"])
def test_decompressed_arrays_are_writable(codec):
    """Before: dense arrays came back read-only (views of the decoded
    bytes), unlike np.load's; 0-d and 1-element arrays too."""
    for dtype in DTYPES:
        _check_writable(dtype, codec)


def _check_writable(dtype, codec):
    cases = [
        np.ones((3, 4), dtype),  # dense
        np.array(np.ones((), dtype)),  # 0-d dense, one byte plane each
        np.ones((1, 1), dtype),
        np.eye(9, dtype=dtype),  # sparse
        np.zeros((2, 2), dtype),  # zeros
        np.zeros((0, 3), dtype),  # empty
        np.ones((70, 3), dtype),  # channel-major candidate
    ]
    for array in cases:
        back = keras_prune.decompress_array(
            keras_prune.compress_array(array, codec=codec)
        )
        assert back.flags.writeable and back.flags.c_contiguous, array.shape
        assert back.dtype == array.dtype and back.shape == array.shape
        assert back.tobytes() == array.tobytes()
        back[...] = 0  # writing must not touch another decoded array
        assert not back.any()
