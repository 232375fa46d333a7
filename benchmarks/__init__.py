"""keras-prune benchmarks, run from the repository root as
`python -m benchmarks.<name>` (see `benchmarks/harness.py`).

Importing the package silences TensorFlow's C++ logging before any
benchmark module imports keras.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
