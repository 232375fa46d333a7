import gc

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def pytest_report_header(config):
    return f"KERAS_BACKEND={BACKEND} keras={keras.__version__}"


def pytest_collection_finish(session):
    """Moves everything alive after collection out of the garbage collector.

    Keras, the backends, Keras-Hub and the collected tests are ~500,000
    objects that live until the end: every `gc.collect()` (one per test in
    `clear_session`, below) walked them all, 0.25-0.4 s of CPU each time.
    `gc.freeze()` leaves them out of every later collection; what the tests
    create is collected as before.
    """
    gc.collect()  # garbage from collection is freed, not frozen
    gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _computes_on_cpu():
    if BACKEND == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if BACKEND == "torch":
        from keras.src.backend.torch.core import get_device

        return get_device() == "cpu"
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")
    return True


# CI and every number in the docs are CPU. `benchmarks/gpu_check.sh` runs the
# suite on a GPU, where a few comparisons must differ (see the helpers).
ON_CPU = _computes_on_cpu()


def assert_same_outputs(got, want):
    """Outputs of two separately compiled programs: bit for bit on CPU.

    On a GPU each program gets its own matmul kernels (XLA fuses the mask
    multiply into the matmul and autotunes), so the same math may round
    differently: there they must agree to 2e-6 (TF32 off, as gpu_check.sh
    runs the suite).
    """
    got, want = to_np(got), to_np(want)
    if ON_CPU:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def assert_schedule_values_match(got, want):
    """Schedule values computed in compiled code against the host's.

    Bit for bit on CPU. XLA on an NVIDIA GPU divides float32 approximately
    (within 2 ulp; `40 / 200.0` gives 0.19999999 there), and a schedule's
    power and scale carry that into the sparsity: up to 8 ulp seen on an
    H100, so there the values must agree to 1e-6.
    """
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    if ON_CPU:
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def cli_error(argv, capsys, rc=2):
    """Runs `keras-prune argv`; asserts it ends with exit code `rc` and one
    line `error: ...` on stderr, no traceback.

    Returns:
        That line, for the caller to check what it says.
    """
    from keras_prune import cli

    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == rc, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def tf_record(payload):
    """`payload` framed as one TFRecord: length, masked CRC-32C of the
    length, payload, masked CRC-32C of the payload (an event file's
    record)."""
    import struct

    from keras_prune.monitoring import events

    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", events._masked_crc32c(header))
        + payload
        + struct.pack("<I", events._masked_crc32c(payload))
    )
