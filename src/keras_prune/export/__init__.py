"""Export: the compressed array format and the `.kpz` model file."""

from keras_prune.export.compress import CompressedFormatError
from keras_prune.export.compress import compress_array
from keras_prune.export.compress import decompress_array
from keras_prune.export.compress import load_compressed
from keras_prune.export.compress import save_compressed

__all__ = [
    "CompressedFormatError",
    "compress_array",
    "decompress_array",
    "load_compressed",
    "save_compressed",
]
