import os

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def pytest_report_header(config):
    return f"KERAS_BACKEND={BACKEND} keras={keras.__version__}"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
