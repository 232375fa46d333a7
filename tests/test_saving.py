"""Saving pruned models to `.keras` and loading them in fresh processes.

Loads happen in a subprocess (a new Python process with only `keras` and
`keras_prune` imported, no `custom_objects`), on this backend and on the other
two; the subprocess writes what it saw to an `.npz` file.
"""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp

from conftest import BACKEND
from conftest import to_np

BACKENDS = ("jax", "tensorflow", "torch")
SCHEDULE = kp.PolynomialDecay(0.2, 0.7, 0, 6, power=1, frequency=1)
BATCH = 4


def data():
    rng = np.random.RandomState(0)
    x = rng.randn(6 * BATCH, 8).astype("float32")
    y = rng.randn(6 * BATCH, 2).astype("float32")
    return x, y


def new_pruned_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            L.Dense(6, name="d1"),
            L.BatchNormalization(name="bn"),
            L.Dense(2, name="d2"),
        ]
    )
    pruned = kp.prune_low_magnitude(model, SCHEDULE)
    pruned.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return pruned


def fit(model, x, y):
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0)


def state(model):
    """Masks, step, and every weight of a pruned model, as NumPy."""
    out = {"step": np.asarray(kp.pruning_step(model))}
    for i, w in enumerate(kp.integration.strip.pruning_wrappers(model)):
        for j, m in enumerate(w.masks):
            out[f"mask_{i}_{j}"] = to_np(m)
    for i, v in enumerate(model.weights):
        out[f"weight_{i}"] = to_np(v)
    return out


def run_in_subprocess(code, backend, tmp_path, **params):
    """Runs `code` in a new Python process; returns the npz it writes."""
    out_file = tmp_path / f"out_{backend}.npz"
    params = dict(params, out=str(out_file))
    script = "import json, sys\nP = json.loads(sys.argv[1])\n"
    script += textwrap.dedent(code)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(params)],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(np.load(out_file))


STATE_CODE = """
import keras
import numpy as np
import keras_prune as kp

def state(model):
    out = {"step": np.asarray(kp.pruning_step(model))}
    for i, w in enumerate(kp.integration.strip.pruning_wrappers(model)):
        for j, m in enumerate(w.masks):
            out[f"mask_{i}_{j}"] = np.asarray(keras.ops.convert_to_numpy(m))
    for i, v in enumerate(model.weights):
        out[f"weight_{i}"] = np.asarray(keras.ops.convert_to_numpy(v))
    return out
"""


def assert_states_equal(a, b, prefix=("step", "mask", "weight")):
    keys = sorted(k for k in a if k.startswith(prefix))
    assert keys == sorted(k for k in b if k.startswith(prefix))
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------- resume


def test_resume_mid_schedule_in_new_process(tmp_path):
    x, y = data()
    # A run that never stops: 6 batches.
    reference = new_pruned_model()
    fit(reference, x[: 3 * BATCH], y[: 3 * BATCH])
    fit(reference, x[3 * BATCH :], y[3 * BATCH :])
    assert kp.pruning_step(reference) == 6
    # The same run, saved after 3 batches and resumed in a new process.
    model = new_pruned_model()
    fit(model, x[: 3 * BATCH], y[: 3 * BATCH])
    saved = state(model)
    assert int(saved["step"]) == 3
    path = tmp_path / "m.keras"
    model.save(path)
    np.savez(tmp_path / "data.npz", x=x[3 * BATCH :], y=y[3 * BATCH :])
    got = run_in_subprocess(
        STATE_CODE
        + """
model = keras.saving.load_model(P["path"])
loaded = state(model)
data = np.load(P["data"])
model.fit(data["x"], data["y"], batch_size=4, shuffle=False, verbose=0)
after = state(model)
np.savez(P["out"], **{"loaded_" + k: v for k, v in loaded.items()},
         **after)
""",
        BACKEND,
        tmp_path,
        path=str(path),
        data=str(tmp_path / "data.npz"),
    )
    loaded = {
        k[len("loaded_") :]: v
        for k, v in got.items()
        if k.startswith("loaded_")
    }
    # Same masks bit for bit, same step, on load. Weights equal to the
    # in-process model, which saving made exactly sparse too.
    assert_states_equal(loaded, state(model))
    assert_states_equal(loaded, saved, prefix=("step", "mask"))
    # Resuming gives exactly the run that never stopped.
    assert int(got["step"]) == 6
    assert_states_equal(
        {k: v for k, v in got.items() if not k.startswith("loaded_")},
        masked_state(reference),
        prefix=("step", "mask"),
    )
    ref = masked_state(reference)
    for w, kernel_key in kernel_keys(reference):
        mask = ref[w]
        np.testing.assert_array_equal(got[kernel_key] * mask, ref[kernel_key])
    kernels = dict(kernel_keys(reference)).values()
    for k in ref:
        if k.startswith("weight_") and k not in kernels:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def kernel_keys(model):
    """[(mask key, weight key of the kernel it masks)]."""
    index = {id(v): i for i, v in enumerate(model.weights)}
    out = []
    for i, w in enumerate(kp.integration.strip.pruning_wrappers(model)):
        for j, v in enumerate(w.pruned_weights):
            out.append((f"mask_{i}_{j}", f"weight_{index[id(v)]}"))
    return out


def masked_state(model):
    """`state`, with every pruned kernel multiplied by its mask."""
    s = state(model)
    for mask_key, weight_key in kernel_keys(model):
        s[weight_key] = s[weight_key] * s[mask_key]
    return s


# ----------------------------------------------------------- cross-backend


@pytest.mark.parametrize("other", [b for b in BACKENDS if b != BACKEND])
def test_load_on_other_backend(other, tmp_path):
    x, y = data()
    model = new_pruned_model()
    fit(model, x[: 3 * BATCH], y[: 3 * BATCH])
    path = tmp_path / "m.keras"
    model.save(path)
    expected = state(model)
    predictions = model.predict(x, verbose=0)
    np.save(tmp_path / "x.npy", x)
    got = run_in_subprocess(
        STATE_CODE
        + """
model = keras.saving.load_model(P["path"])
x = np.load(P["x"])
np.savez(P["out"], predictions=model.predict(x, verbose=0), **state(model))
""",
        other,
        tmp_path,
        path=str(path),
        x=str(tmp_path / "x.npy"),
    )
    assert int(got["step"]) == 3
    assert_states_equal(got, expected)
    np.testing.assert_allclose(
        got["predictions"], predictions, rtol=1e-6, atol=1e-6
    )


# ---------------------------------------------------------- file content


def h5_datasets(path):
    """{name: array} of every variable stored in a `.keras` file."""
    out = {}
    with zipfile.ZipFile(path) as archive:
        with archive.open("model.weights.h5") as f:
            with h5py.File(f, "r") as h5:
                h5.visititems(
                    lambda name, obj: (
                        out.__setitem__(name, obj[()])
                        if isinstance(obj, h5py.Dataset)
                        else None
                    )
                )
    return out


def test_saved_file_is_exactly_sparse_and_masks_are_bool(tmp_path):
    x, y = data()
    model = new_pruned_model()
    fit(model, x[: 3 * BATCH], y[: 3 * BATCH])
    wrappers = kp.integration.strip.pruning_wrappers(model)
    # Before saving, masked entries still hold their last trained values.
    stale = sum(
        int(np.count_nonzero(to_np(v)[~to_np(m)]))
        for w in wrappers
        for v, m in zip(w.pruned_weights, w.masks)
    )
    assert stale > 0
    masks = [to_np(m) for w in wrappers for m in w.masks]
    path = tmp_path / "m.keras"
    model.save(path)
    # In the file: masks are 1-byte bools, kernels are zero where masked.
    stored = h5_datasets(path)
    bools = [v for v in stored.values() if v.dtype == np.bool_]
    assert len(bools) == len(masks) == 2
    assert all(v.dtype.itemsize == 1 for v in bools)
    for mask in masks:
        assert any(np.array_equal(v, mask) for v in bools)
        kernels = [
            v
            for k, v in stored.items()
            if k.startswith("layers/")
            and v.dtype == np.float32
            and v.shape == mask.shape
        ]
        assert len(kernels) == 1
        assert np.all(kernels[0][~mask] == 0)
        assert np.count_nonzero(kernels[0]) == np.count_nonzero(mask)
    # And loading gives exactly sparse kernels and bool masks.
    loaded = keras.saving.load_model(path)
    for w, mask in zip(kp.integration.strip.pruning_wrappers(loaded), masks):
        assert w.masks[0].dtype == "bool"
        np.testing.assert_array_equal(to_np(w.masks[0]), mask)
        assert np.all(to_np(w.pruned_weights[0])[~mask] == 0)


def test_prune_scope(tmp_path):
    model = new_pruned_model()
    x, y = data()
    fit(model, x[:BATCH], y[:BATCH])
    path = tmp_path / "m.keras"
    model.save(path)
    with kp.prune_scope():
        loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], kp.PruneLowMagnitude)
    assert kp.pruning_step(loaded) == 1
    schedule = loaded.layers[0].pruning_schedule
    assert schedule.get_config() == SCHEDULE.get_config()
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


# -------------------------------------------------------------- stripped


def test_stripped_model_loads_without_keras_prune(tmp_path):
    x, y = data()
    model = new_pruned_model()
    fit(model, x, y)
    stripped = kp.strip_pruning(model)
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    np.save(tmp_path / "x.npy", x)
    got = run_in_subprocess(
        """
import keras
import numpy as np
model = keras.saving.load_model(P["path"])
assert "keras_prune" not in sys.modules, "keras_prune was imported"
np.savez(
    P["out"],
    predictions=model.predict(np.load(P["x"]), verbose=0),
    kernel=keras.ops.convert_to_numpy(model.get_layer("d1").kernel),
    classes=np.array([type(l).__module__ for l in model.layers]),
)
""",
        BACKEND,
        tmp_path,
        path=str(path),
        x=str(tmp_path / "x.npy"),
    )
    np.testing.assert_array_equal(
        got["predictions"], stripped.predict(x, verbose=0)
    )
    assert all(m.startswith("keras.") for m in got["classes"])
    kernel = got["kernel"]
    _, sparsity = kp.core.schedules.evaluate(SCHEDULE, 5)  # the 6th batch
    assert np.count_nonzero(kernel) == int(to_np(kp.kept_count(48, sparsity)))


def test_functional_with_multi_input_layer_round_trip(tmp_path):
    """MultiHeadAttention takes two inputs; its wrapper saves and loads."""
    q = keras.Input((3, 4))
    v = keras.Input((2, 4))
    h = L.MultiHeadAttention(2, 2, name="mha")(q, v)
    out = L.Dense(2, name="head")(L.Flatten()(h))
    pruned = kp.prune_low_magnitude(
        keras.Model([q, v], out), kp.ConstantSparsity(0.5, 0)
    )
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    rng = np.random.RandomState(0)
    xs = [
        rng.randn(4, 3, 4).astype("float32"),
        rng.randn(4, 2, 4).astype("float32"),
    ]
    fit(pruned, xs, rng.randn(4, 2).astype("float32"))
    path = tmp_path / "mha.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert kp.pruning_step(loaded) == 1
    assert_states_equal(state(loaded), state(pruned))
    np.testing.assert_array_equal(
        loaded.predict(xs, verbose=0), pruned.predict(xs, verbose=0)
    )
