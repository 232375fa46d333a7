"""Benchmark: one global mask update of a large model, time and peak memory.

For 10M / 100M / 300M float32 weights (an `Embedding(V, 512)` followed by
`Dense(1024)` and `Dense(512)`, built, never trained), each model is wrapped
with `keras_prune.prune_low_magnitude(model, allocation="global")` and one
eager group mask update at sparsity 0.9 is run (`update_masks_now` on one
member, which updates the whole group, as `keras_prune.prune_once` does).

Every (backend, size) runs in a fresh subprocess:

1. build the model and wrap it (the unwrapped copy is deleted);
2. one warm-up update (its time is reported as `first_s`);
3. every mask reset to all-True, garbage collected;
4. the peak RSS (VmHWM) is reset through /proc/self/clear_refs, one update is
   timed (`seconds`), and `VmHWM - VmRSS(before)` is its peak extra memory,
   reported in bytes and as a ratio of the pruned weights' bytes (4 N);
5. the kept count is checked: exactly `kept_count(N, 0.9)` weights kept.

glibc is told to return every block of 64 KiB or more to the OS
(`MALLOC_MMAP_THRESHOLD_`), and TensorFlow runs with TF_ENABLE_ONEDNN_OPTS=0
(the oneDNN allocator pools buffers), so that freed buffers cannot hide a
peak, as in `benchmarks/mask_update.py`.

tfmot has no global pruning: each layer sorts its own tensor. The reference
is therefore tfmot 0.8.1's own mask update (`pruning_impl.Pruning.
_update_mask`: abs, full `top_k` sort, threshold) on the largest single
tensor of each model (the embedding), run in `.venv-tfmot` in a fresh
subprocess per size with the same peak-RSS measurement; a size where it
fails (out of memory, time limit) is recorded as such.

Usage:

    python -m benchmarks.scale                      # JAX, all sizes, tfmot
    python -m benchmarks.scale --backends jax torch tensorflow
    python -m benchmarks.scale --sizes 10000000 --no-tfmot
    python -m benchmarks.scale --from-json benchmarks/results/scale.json
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time

from benchmarks import harness

DEFAULT_SIZES = (10_000_000, 100_000_000, 300_000_000)
SPARSITY = 0.9
WIDTH = 512
HIDDEN = 1024
DENSE_WEIGHTS = 2 * WIDTH * HIDDEN  # the two Dense kernels
RESULTS = harness.results_path("scale")


def vocabulary(n):
    """Embedding rows so that the model has about `n` pruned weights."""
    return max(1, round((n - DENSE_WEIGHTS) / WIDTH))


# ------------------------------------------------------------ keras-prune


def probe(n, seed):
    """Runs in a fresh process: one eager global update of an n-weight model."""
    import keras
    import numpy as np
    from keras import ops

    import keras_prune
    from keras_prune import _backend
    from keras_prune.integration.state import pruning_wrappers

    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    inp = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(vocabulary(n), WIDTH)(inp)
    x = keras.layers.Dense(HIDDEN)(x)
    x = keras.layers.Dense(WIDTH)(x)
    model = keras.Model(inp, x)
    pruned = keras_prune.prune_low_magnitude(model, allocation="global")
    del model
    gc.collect()
    wrappers = pruning_wrappers(pruned)
    mask_vars = [m for w in wrappers for m in w.masks]
    n_pruned = sum(int(np.prod(m.shape)) for m in mask_vars)
    largest = max(int(np.prod(m.shape)) for m in mask_vars)
    build_s = time.perf_counter() - t0
    harness.log(f"built {n_pruned:,} weights in {build_s:.1f} s")

    if os.environ.get("KP_SCALE_LEGACY"):
        # Before streaming: the whole-tensor `recompute` under `cond`.
        from keras_prune.core import masks as kp_masks

        kp_masks._is_eager = lambda x: False
    t0 = time.perf_counter()
    wrappers[0].update_masks_now(SPARSITY)
    harness.sync([m.value for m in mask_vars])
    first_s = time.perf_counter() - t0
    harness.log(f"warm-up update {first_s:.2f} s")
    for m in mask_vars:
        m.assign(ops.ones(m.shape, "bool"))
    harness.sync([m.value for m in mask_vars])
    gc.collect()

    reset = harness.reset_peak_rss()
    before = harness.proc_status_kib("VmRSS")["VmRSS"]
    load = harness.ForeignLoad()
    t0, c0 = time.perf_counter(), time.process_time()
    wrappers[0].update_masks_now(SPARSITY)
    harness.sync([m.value for m in mask_vars])
    seconds = time.perf_counter() - t0
    # CPU time of this process (all its threads): on a shared machine the
    # wall time grows with other processes' load, the CPU time much less.
    cpu_seconds = time.process_time() - c0
    other_load = load.cores()
    peak = harness.proc_status_kib("VmHWM")["VmHWM"]
    # The floor, under the same load: one read of every pruned weight.
    kernels = [v for w in wrappers for v, _, _ in w.pruning_vars]
    read_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        for v in kernels:
            np.sum(_backend.host_array(v), dtype=np.float32)
        read_s.append(time.perf_counter() - t0)
    read_s = min(read_s)
    extra = (peak - before) * 1024 if reset else None

    kept = sum(
        int(np.count_nonzero(ops.convert_to_numpy(m))) for m in mask_vars
    )
    expected = int(
        ops.convert_to_numpy(keras_prune.kept_count(n_pruned, SPARSITY))
    )
    row = {
        "backend": keras.backend.backend(),
        "legacy_whole_tensor": bool(os.environ.get("KP_SCALE_LEGACY")),
        "target_n": n,
        "n": n_pruned,
        "largest_tensor": largest,
        "tensors": len(mask_vars),
        "sparsity": SPARSITY,
        "build_s": build_s,
        "first_s": first_s,
        "cpu_s": cpu_seconds,
        "other_load_cores": other_load,
        "cpu_ns_per_weight": cpu_seconds / n_pruned * 1e9,
        "read_s": read_s,
        "update_over_read": seconds / read_s,
        "seconds": seconds,
        "ns_per_weight": seconds / n_pruned * 1e9,
        "rss_before_bytes": before * 1024,
        "peak_extra_bytes": extra,
        "peak_extra_x": None if extra is None else extra / (4 * n_pruned),
        "kept": kept,
        "expected_kept": expected,
    }
    harness.log(
        f"{row['backend']} n={n_pruned:,}: {seconds:.2f} s "
        f"({row['ns_per_weight']:.1f} ns/weight), peak extra "
        f"{row['peak_extra_x']}x, kept {kept} (expected {expected})"
    )
    return row


def run_probe(backend, n, seed, timeout):
    env = dict(harness.MEMORY_PROBE_ENV)
    env["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    try:
        return harness.run_child(
            [
                harness.module_name(__spec__ or __file__),
                "--probe",
                str(n),
                "--seed",
                str(seed),
            ],
            env,
            timeout=timeout,
            label=f"scale {backend} n={n}",
        )
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        harness.log(f"{backend} n={n} failed: {e}")
        return {"backend": backend, "target_n": n, "error": str(e)[-500:]}


# ------------------------------------------------------------------ tfmot

# Runs in .venv-tfmot: tfmot 0.8.1's own mask update of one tensor.
_TFMOT_CHILD = r"""
import json, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import (
    pruning_impl,
)

def kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])

n, sparsity, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
var = tf.Variable(rng.standard_normal(n, dtype=np.float32))
mask = tf.Variable(tf.ones((n,), tf.float32))  # tfmot's masks are float32
del rng
pruning = pruning_impl.Pruning(
    training_step_fn=lambda: tf.constant(1, tf.int64),
    pruning_vars=[(var, mask, tf.Variable(0.0))],
    pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
        sparsity, 0, frequency=1
    ),
    block_size=(1, 1),
    block_pooling_type="AVG",
)
update = tf.function(pruning._update_mask)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = kib("VmRSS")
t0 = time.perf_counter()
threshold, new_mask = update(var)
new_mask.numpy()
seconds = time.perf_counter() - t0
peak = kib("VmHWM")
kept = int(np.count_nonzero(new_mask.numpy()))
extra = (peak - before) * 1024
print(json.dumps({"n": n, "seconds": seconds, "peak_extra_bytes": extra,
                  "kept": kept, "tf": tf.__version__}))
"""


def run_tfmot_probe(n, seed, timeout):
    """tfmot's full-sort update of one n-element tensor, in .venv-tfmot."""
    from benchmarks.tfmot_env import ensure_tfmot_venv

    row = {"n": n, "sparsity": SPARSITY}
    try:
        python = ensure_tfmot_venv()
    except RuntimeError as e:
        row["error"] = f"no tfmot environment: {e}"[-500:]
        return row
    env = dict(os.environ)
    env.update(harness.MEMORY_PROBE_ENV)
    env.update(
        TF_USE_LEGACY_KERAS="1",
        CUDA_VISIBLE_DEVICES="",
        TF_ENABLE_ONEDNN_OPTS="0",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.pop("PYTHONPATH", None)
    env.pop("KERAS_BACKEND", None)
    try:
        proc = subprocess.run(
            [python, "-c", _TFMOT_CHILD, str(n), str(SPARSITY), str(seed)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        row["error"] = f"time limit ({timeout} s) exceeded"
        return row
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        row["error"] = (
            f"exit code {proc.returncode}"
            + (" (killed: out of memory?)" if proc.returncode < 0 else "")
            + ": "
            + proc.stderr.strip()[-300:]
        )
        return row
    row.update(json.loads(lines[-1]))
    row["ns_per_weight"] = row["seconds"] / n * 1e9
    row["peak_extra_x"] = row["peak_extra_bytes"] / (4 * n)
    row["expected_kept"] = max(int(round(n * (1 - SPARSITY))), 1)
    return row


# ------------------------------------------------------------------ tables


def _gib(b):
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB"


def table(rows, tfmot_rows):
    headers = (
        "backend",
        "weights N",
        "update s",
        "ns / weight",
        "CPU ns / weight",
        "update / one read",
        "peak extra",
        "peak extra / 4N",
        "kept (expected)",
        "tfmot: largest tensor",
        "tfmot s",
        "tfmot ns / weight",
        "tfmot peak extra / 4n",
    )
    by_n = {r["n"]: r for r in tfmot_rows or []}
    out = []
    for r in rows:
        if "error" in r:
            out.append(
                (r["backend"], f"{r['target_n']:,}", "failed") + ("",) * 10
            )
            continue
        t = by_n.get(r["largest_tensor"], {})
        tf_ok = t and "error" not in t
        out.append(
            (
                r["backend"],
                f"{r['n']:,}",
                f"{r['seconds']:.2f}",
                f"{r['ns_per_weight']:.1f}",
                harness.fmt(r.get("cpu_ns_per_weight")),
                harness.fmt(r.get("update_over_read"), ".1f", "n/a") + "x",
                _gib(r["peak_extra_bytes"]),
                harness.fmt(r["peak_extra_x"], ".2f") + "x",
                f"{r['kept']:,} "
                f"({'OK' if r['kept'] == r['expected_kept'] else 'WRONG'})",
                f"{r['largest_tensor']:,}",
                f"{t['seconds']:.2f}" if tf_ok else ("failed" if t else "n/a"),
                f"{t['ns_per_weight']:.1f}" if tf_ok else "",
                f"{t['peak_extra_x']:.2f}x" if tf_ok else "",
            )
        )
    return harness.markdown_table(headers, out)


# ------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    p.add_argument("--backends", nargs="+", default=["jax"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--no-tfmot", action="store_true")
    p.add_argument("--json-out", default=None)
    p.add_argument("--from-json", default=None)
    p.add_argument(
        "--merge",
        action="store_true",
        help="add to the rows already in --json-out",
    )
    p.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    if args.probe:
        harness.write_json(args.json_out, probe(args.probe, args.seed))
        return 0

    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
    else:
        out_path = args.json_out or RESULTS
        saved = {"rows": [], "tfmot": []}
        if args.merge and os.path.exists(out_path):
            with open(out_path) as f:
                saved = json.load(f)
        saved["machine"] = harness.machine_info()
        for backend in args.backends:
            for n in args.sizes:
                harness.log(f"=== {backend} n={n:,} ===")
                row = run_probe(backend, n, args.seed, args.timeout)
                saved["rows"] = [
                    r
                    for r in saved["rows"]
                    if (r["backend"], r["target_n"]) != (backend, n)
                ] + [row]
                harness.save_results("scale", saved, out_path)
        if not args.no_tfmot:
            largest = sorted(
                {r["largest_tensor"] for r in saved["rows"] if "error" not in r}
            )
            for n in largest:
                harness.log(f"=== tfmot full sort n={n:,} ===")
                row = run_tfmot_probe(n, args.seed, args.timeout)
                harness.log(f"tfmot n={n:,}: {row}")
                saved["tfmot"] = [
                    t for t in saved.get("tfmot", []) if t["n"] != n
                ] + [row]
                harness.save_results("scale", saved, out_path)
    print(f"Machine: {harness.format_machine(saved['machine'])}\n")
    print(table(saved["rows"], saved.get("tfmot")))
    for t in saved.get("tfmot") or []:
        if "error" in t:
            print(f"\ntfmot n={t['n']:,} failed: {t['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
