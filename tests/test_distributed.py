"""Pruning under distribution strategies: masks as on one device, bit for bit.

Each distributed scenario runs in fresh processes (`_distributed_worker.py`),
because its devices must exist before the backend starts; the test process,
on one device, computes the reference with the same model, data, seed and
global batch, and compares masks (`np.array_equal`), steps and iterations
exactly. Scenarios run on their own backend and skip on the others:

- JAX: `keras.distribution.DataParallel` over 4 virtual CPUs, every
  allocation; `ModelParallel` on a (2, 2) mesh with sharded kernels; `.keras`
  and `.weights.h5` checkpoints between the two.
- TensorFlow: `MirroredStrategy` over 2 logical CPUs, every allocation,
  checkpoints both ways; `MultiWorkerMirroredStrategy` with 2 local workers.
- torch: a custom loop on 2 gloo processes all-reducing gradients (Keras 3.15
  has no `keras.distribution` for torch).

See docs/distributed.md.
"""

import json
import os
import pickle
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_prune as kp

import _distributed_worker as worker
from conftest import BACKEND
from conftest import ON_CPU

WORKER = os.path.join(os.path.dirname(__file__), "_distributed_worker.py")
TIMEOUT = 180  # seconds, per scenario (all its processes together)

MODE_PARAMS = list(worker.MODES)  # "layer", "global", "m_by_n"

# The workers run on CPU devices (4 virtual JAX devices, TF's CPU, gloo), and
# each scenario compares them with a one-device run in this process.
pytestmark = pytest.mark.skipif(
    not ON_CPU,
    reason="distributed scenarios run on CPU devices and compare with a "
    "one-device run here, which must compute on the CPU too",
)


def only_on(backend, why):
    return pytest.mark.skipif(
        BACKEND != backend, reason=f"{why}: runs with KERAS_BACKEND={backend}"
    )


# -------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(scenario, out_dir, envs):
    """Starts one worker per env dict, waits for all; returns their results.

    Every process is killed if they do not all finish within `TIMEOUT`.
    """
    procs = []
    for extra in envs:
        env = dict(os.environ)
        env.update(extra)
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, scenario, str(out_dir)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    deadline = time.monotonic() + TIMEOUT
    logs = []
    try:
        for p in procs:
            left = max(deadline - time.monotonic(), 1)
            logs.append(p.communicate(timeout=left)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.communicate()
        pytest.fail(f"{scenario}: workers did not finish in {TIMEOUT} s")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, f"{scenario} worker failed:\n{log[-4000:]}"
    results = []
    for name in sorted(os.listdir(out_dir)):
        if name.startswith(scenario) and name.endswith(".pkl"):
            with open(os.path.join(out_dir, name), "rb") as f:
                results.append(pickle.load(f))
    assert len(results) == len(envs), logs
    return results


def check_ok(results, *keys):
    """Fails with the worker's (or reference's) traceback for `keys`."""
    for res in results:
        for key in keys:
            err = res.get(f"error/{key}")
            if err:
                raise AssertionError(f"{key} raised:\n{err}")


def one_device_runs(modes, jit_compile="auto", save_to=None):
    """The reference: each mode trained in this process, on one device.

    With `save_to`, the "layer" model is saved there as `single.keras`.
    """
    out = {}
    for mode in modes:

        def run(mode=mode):
            keras.utils.clear_session()
            model = worker.pruned_model(mode)
            worker.compile_model(model, jit_compile=jit_compile)
            worker.fit(model)
            if save_to is not None and mode == "layer":
                model.save(os.path.join(save_to, "single.keras"))
            return worker.state(model, f"single/{mode}/")

        worker.record(out, f"single/{mode}", run)
    return out


def assert_same_state(got, got_prefix, want, want_prefix):
    """Masks equal bit for bit, steps exact, for both pruned layers."""
    for name in ("big", "out"):
        mask = got[f"{got_prefix}{name}/mask"]
        expected = want[f"{want_prefix}{name}/mask"]
        assert mask.dtype == bool and mask.shape == expected.shape
        assert np.array_equal(mask, expected), (
            f"{name}: {int((mask != expected).sum())} mask entries differ"
        )
        assert got[f"{got_prefix}{name}/step"] == worker.STEPS
        assert want[f"{want_prefix}{name}/step"] == worker.STEPS


def assert_expected_sparsity(state, prefix, mode):
    """The masks hold the schedule's final sparsity (not all ones)."""
    big, out = state[f"{prefix}big/mask"], state[f"{prefix}out/mask"]
    if mode == "layer":  # PolynomialDecay to 0.75 at step 6: 25% kept
        assert int(big.sum()) == int(kp.kept_count(big.size, 0.75))
        assert int(out.sum()) == int(kp.kept_count(out.size, 0.75))
    elif mode == "global":  # one budget over both kernels
        total = big.size + out.size
        assert int(big.sum() + out.sum()) == int(kp.kept_count(total, 0.75))
    else:  # 2:4, exactly half of each kernel
        assert int(big.sum()) == big.size // 2
        assert int(out.sum()) == out.size // 2


# ------------------------------------------------------- paths (all)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_pruning_keeps_variable_paths(kind):
    """A LayoutMap key such as "big/kernel" names the same kernel after
    pruning: the wrapped layer's variables keep their paths."""
    layers = [
        keras.layers.Dense(16, name="big"),
        keras.layers.Dense(4, name="out"),
    ]
    if kind == "sequential":
        model = keras.Sequential([keras.Input((32,))] + layers)
    else:
        inputs = keras.Input((32,))
        model = keras.Model(inputs, layers[1](layers[0](inputs)))
    before = [v.path for v in model.weights]
    pruned = kp.prune_low_magnitude(model)
    inner = [
        v.path
        for w in worker.wrappers(pruned).values()
        for v in w.layer.weights
    ]
    assert inner == before
    prefix = "sequential/" if kind == "sequential" else ""
    assert before[0] == f"{prefix}big/kernel"
    masks = [w.masks[0].path for w in worker.wrappers(pruned).values()]
    assert masks == [
        f"{prefix}prune_low_magnitude_big/kernel_mask",
        f"{prefix}prune_low_magnitude_out/kernel_mask",
    ]


# ----------------------------------------------------------------- JAX


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("jax_distribution")
    single = one_device_runs(worker.MODES)
    # The ModelParallel reference, and checkpoints for the reverse direction.
    keras.utils.clear_session()
    model = worker.pruned_model("split", split_columns=True)
    worker.compile_model(model)
    worker.fit(model)
    single.update(worker.state(model, "single/split/"))
    model.save_weights(os.path.join(out_dir, "single.weights.h5"))
    model.save(os.path.join(out_dir, "single.keras"))
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=4",
    }
    (dist,) = run_workers("jax_distribution", out_dir, [env])
    keras.utils.clear_session()
    return single, dist, out_dir


@only_on("jax", "keras.distribution is JAX-only in Keras 3.15")
@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_jax_data_parallel_masks_match_one_device(jax_runs, mode):
    single, dist, _ = jax_runs
    check_ok([single], f"single/{mode}")
    check_ok([dist], f"dp/{mode}")
    assert dist["devices"] == 4
    prefix = f"dp/{mode}/"
    assert dist[f"{prefix}mask_spec"] == "(None, None)"  # replicated
    assert dist[f"{prefix}mask_devices"] == 4
    assert_same_state(dist, prefix, single, f"single/{mode}/")
    assert dist[f"{prefix}iterations"] == worker.STEPS
    assert single[f"single/{mode}/iterations"] == worker.STEPS
    assert_expected_sparsity(dist, prefix, mode)


@only_on("jax", "keras.distribution is JAX-only in Keras 3.15")
def test_jax_model_parallel_sharded_masks_global_threshold(jax_runs):
    single, dist, _ = jax_runs
    check_ok([dist], "mp")
    # The user's LayoutMap keys ("big/kernel") still match after pruning.
    assert dist["mp/big/kernel_path"] == "big/kernel"
    assert dist["mp/big/kernel_spec"] == "(None, 'model')"
    assert dist["mp/out/kernel_spec"] == "('model', None)"
    # Masks carry their kernel's layout; the rest of the state is replicated.
    assert dist["mp/big/mask_spec"] == "(None, 'model')"
    assert dist["mp/big/mask_shards"] == [(32, 8)] * 4
    assert dist["mp/out/mask_spec"] == "('model', None)"
    assert dist["mp/out/mask_shards"] == [(8, 4)] * 4
    assert dist["mp/big/threshold_spec"] == "()"
    assert dist["mp/big/step_spec"] == "()"
    # One threshold over the whole kernel: exactly columns 8-15 are pruned
    # (a threshold per shard would prune half of each shard).
    expected = np.zeros((32, 16), bool)
    expected[:, :8] = True
    assert np.array_equal(dist["mp/big/mask"], expected)
    assert np.array_equal(single["single/split/big/mask"], expected)
    assert_same_state(dist, "mp/", single, "single/split/")
    assert dist["mp/iterations"] == worker.STEPS


@only_on("jax", "keras.distribution is JAX-only in Keras 3.15")
def test_jax_layout_map_regex_does_not_reach_thresholds():
    """A broad key (".*kernel.*") also matches `kernel_threshold`; the scalar
    threshold stays replicated and the mask follows its kernel."""
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"))
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*kernel.*"] = (None, "model")
    distribution = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )
    with distribution.scope():
        model = worker.pruned_model("layer")
    for w in worker.wrappers(model).values():
        assert w.pruned_weights[0]._layout.axes == (None, "model")
        assert w.masks[0]._layout.axes == (None, "model")
        assert w.thresholds[0]._layout.axes == ()


@only_on("jax", "keras.distribution is JAX-only in Keras 3.15")
@pytest.mark.parametrize("fmt", ["keras", "weights.h5"])
def test_jax_checkpoint_model_parallel_to_one_device(jax_runs, fmt):
    _, dist, out_dir = jax_runs
    check_ok([dist], "mp")
    path = os.path.join(out_dir, f"mp.{fmt}")
    if fmt == "keras":
        model = keras.saving.load_model(path)
    else:
        model = worker.pruned_model("split", split_columns=True)
        model.load_weights(path)
    got = worker.state(model)
    assert_same_state(got, "", dist, "mp/")
    for name in ("big", "out"):  # saved kernels are exactly sparse
        kernel = got[f"{name}/kernel"]
        assert np.array_equal(kernel != 0, dist[f"mp/{name}/mask"])


@only_on("jax", "keras.distribution is JAX-only in Keras 3.15")
def test_jax_checkpoint_one_device_to_model_parallel(jax_runs):
    single, dist, _ = jax_runs
    check_ok([dist], "mp_loaded")
    for prefix in ("mp_loaded/", "mp_loaded_keras/"):
        assert_same_state(dist, prefix, single, "single/split/")
        assert dist[f"{prefix}big/mask_spec"] == "(None, 'model')"


# ---------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def tf_runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("tf_mirrored")
    # jit_compile=False as under the strategy (XLA fails there).
    single = one_device_runs(worker.MODES, jit_compile=False, save_to=out_dir)
    env = {"KERAS_BACKEND": "tensorflow"}
    (dist,) = run_workers("tf_mirrored", out_dir, [env])
    keras.utils.clear_session()
    return single, dist, out_dir


@only_on("tensorflow", "tf.distribute")
@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_tf_mirrored_masks_match_one_device(tf_runs, mode):
    single, dist, _ = tf_runs
    check_ok([single], f"single/{mode}")
    check_ok([dist], f"mirrored/{mode}")
    assert dist["replicas"] == 2
    prefix = f"mirrored/{mode}/"
    assert_same_state(dist, prefix, single, f"single/{mode}/")
    for name in ("big", "out"):
        replicas = dist[f"{prefix}{name}/replica_masks"]
        assert len(replicas) == 2
        for mask in replicas:
            assert np.array_equal(mask, single[f"single/{mode}/{name}/mask"])
        assert dist[f"{prefix}{name}/replica_steps"] == [worker.STEPS] * 2
    assert dist[f"{prefix}iterations"] == worker.STEPS
    assert_expected_sparsity(dist, prefix, mode)


@only_on("tensorflow", "tf.distribute")
def test_tf_checkpoint_mirrored_to_one_device_and_back(tf_runs):
    single, dist, out_dir = tf_runs
    check_ok([dist], "mirrored/layer", "mirrored_loaded")
    model = worker.pruned_model("layer")
    model.load_weights(os.path.join(out_dir, "mirrored.weights.h5"))
    assert_same_state(worker.state(model), "", dist, "mirrored/layer/")
    # And the reverse: the .keras file saved here, loaded in the strategy.
    assert_same_state(dist, "mirrored_loaded/", single, "single/layer/")
    for mask in dist["mirrored_loaded/big/replica_masks"]:
        assert np.array_equal(mask, single["single/layer/big/mask"])


@only_on("tensorflow", "tf.distribute")
def test_tf_multi_worker_mirrored_two_processes(tf_runs, tmp_path):
    single = tf_runs[0]  # the same `fit` on one device
    check_ok([single], "single/layer")
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    envs = []
    for index in range(2):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        envs.append(
            {
                "KERAS_BACKEND": "tensorflow",
                "TF_CONFIG": json.dumps(config),
                "KP_TASK_INDEX": str(index),
                "CUDA_VISIBLE_DEVICES": "",
            }
        )
    results = run_workers("tf_multi_worker", tmp_path, envs)
    check_ok(results, "mwms")
    for res in results:
        assert res["replicas"] == 2
        assert_same_state(res, "mwms/", single, "single/layer/")
        assert res["mwms/iterations"] == worker.STEPS


# --------------------------------------------------------------- torch


@only_on("torch", "torch.distributed (gloo)")
def test_torch_gloo_custom_loop_two_ranks(tmp_path):
    model = worker.pruned_model("layer")
    optimizer = worker.torch_train(model)
    single = worker.state(model, "single/")
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == worker.STEPS
    port = str(free_port())
    envs = [
        {
            "KERAS_BACKEND": "torch",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "RANK": str(rank),
            "WORLD_SIZE": "2",
        }
        for rank in range(2)
    ]
    results = run_workers("torch_gloo", tmp_path, envs)
    check_ok(results, "gloo")
    assert sorted(r["rank"] for r in results) == [0, 1]
    for res in results:
        assert_same_state(res, "gloo/", single, "single/")
        assert res["gloo/iterations"] == worker.STEPS
    assert_expected_sparsity(results[0], "gloo/", "layer")
