"""The harness shared by the keras-prune benchmarks (not the library).

Benchmarks are modules of the `benchmarks` package, run from the repository
root as `python -m benchmarks.<name>`; none edits `sys.path`. A benchmark
typically:

    from benchmarks import harness

    harness.quiet_logs()  # before importing keras
    ...
    timed = harness.time_interleaved({"a": fn_a, "b": fn_b}, rounds=5)
    harness.save_results("my_bench", {"rows": rows})

- Timing: `time_median`, `time_interleaved` (round-robin, so that a busy
  shared machine hits every method alike), `wait_quiet`, `ForeignLoad`,
  `compile_fn`, `sync`.
- Memory: `reset_peak_rss`, `proc_status_kib`, `MEMORY_PROBE_ENV`.
- Subprocesses (one backend or one probe per process): `run_child`,
  `child_argv`, `module_name`.
- Results: one canonical file per benchmark, `results/<name>.json`, written
  by `save_results` with a `run` block (benchmark, command, commit, date,
  machine) inside; `load_results`, `markdown_table`, `fmt`.
- Data: `digits_split`, `fit_data` (what timed `fit`s are given).
  Machine: `machine_info`, `format_machine`.

Everything here is backend-neutral until `compile_fn` / `sync` are called,
which import the active backend lazily. Import this module before `keras`
if you want `quiet_logs()` to take effect.
"""

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
BACKENDS = ("jax", "tensorflow", "torch")


def quiet_logs():
    """Silence TensorFlow/XLA C++ logging (call before importing keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


# --------------------------------------------------------------- machine info


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    """CPU model, core count, RAM and package versions, as a dict."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    ram_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": None if ram_gib is None else round(ram_gib, 1),
        "python": platform.python_version(),
        "keras": _version("keras"),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "tensorflow": _version("tensorflow") or _version("tensorflow-cpu"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "keras_prune": _version("keras-prune"),
    }


def format_machine(info):
    ram = f"{info['ram_gib']} GiB RAM" if info.get("ram_gib") else "RAM ?"
    vers = ", ".join(
        f"{k} {info[k]}"
        for k in ("keras", "jax", "tensorflow", "torch", "numpy", "python")
        if info.get(k)
    )
    return f"{info['cpu']}, {info['cores']} cores, {ram}; {vers}"


# ---------------------------------------------------------------------- data


def digits_split(standardize=False):
    """The digits split every benchmark uses (and `_tfmot_reference.py`).

    `X / 16` as float32, int64 labels, `train_test_split(test_size=0.2,
    random_state=0, stratify=y)`: 1437 train / 360 test. With `standardize`,
    per-pixel z-scores with the training set's mean and std (constant pixels
    only centred), as `_tfmot_reference.standardize_split`.

    Returns:
        `(x_train, y_train, x_test, y_test)`.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    y = y.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    if standardize:
        mean = x_train.mean(axis=0, dtype=np.float64)
        std = x_train.std(axis=0, dtype=np.float64)
        std = np.where(std > 0, std, 1.0)
        x_train = ((x_train - mean) / std).astype("float32")
        x_test = ((x_test - mean) / std).astype("float32")
    return x_train, y_train, x_test, y_test


# ------------------------------------------------------------ backend helpers


def backend():
    import keras

    return keras.backend.backend()


def compile_fn(fn):
    """`fn` compiled the way the benchmarks compare backends.

    jax.jit on JAX, `tf.function(jit_compile=True)` (XLA) on TensorFlow, and
    `fn` itself (eager) on torch.
    """
    name = backend()
    if name == "jax":
        import jax

        return jax.jit(fn)
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def sync(x):
    """Waits until the computation producing `x` (a pytree) has finished.

    JAX dispatches asynchronously; TensorFlow and torch run synchronously on
    CPU (a CUDA torch tensor is synchronised explicitly).
    """
    name = backend()
    if name == "jax":
        import jax

        jax.block_until_ready(x)
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return x


def fit_data(x, y, batch_size, shuffle=False, seed=0):
    """The data arguments of a timed `fit`, the same for every mode.

    On TensorFlow, Keras feeds NumPy arrays through a `tf.data` pipeline
    with autotuning on. Its autotune thread sleeps for up to 10.24 s
    (doubling from 10 ms), and deleting the iterator when `fit` ends waits
    for that sleep to end. So a `fit` of ResNet50 took exactly 2.59 s or
    10.24 s in some rounds of every mode, dense included, whatever its
    steps cost: 4.66 s between `on_train_end` and `fit` returning, in one
    run of eight. The same arrays in a `tf.data.Dataset` with autotuning
    off end the `fit` at once (0.00 s in ten runs; 0.65-2.06 s in six of
    seven with autotuning on). On JAX and torch Keras iterates the
    arrays without threads, as given.

    Args:
        x: Inputs (an array or a dict of arrays).
        y: Targets.
        batch_size: Batch size.
        shuffle: Reshuffle every epoch.
        seed: Shuffle seed.

    Returns:
        Keyword arguments for `fit` (`x`, `y`, `batch_size`, `shuffle`).

    Example:

    ```python
    model.fit(**harness.fit_data(x, y, 16), epochs=1, verbose=0)
    ```
    """
    if backend() != "tensorflow":
        return dict(x=x, y=y, batch_size=batch_size, shuffle=shuffle)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dict(x=ds.batch(batch_size).with_options(options))


def time_median(fn, repeats, warmup=1, min_time=0.5, max_runs=50):
    """Median wall seconds of `sync(fn())` after warm-up.

    Runs at least `repeats` times, and more (up to `max_runs`) until the
    timed runs add up to `min_time` seconds, so that millisecond-scale
    functions get a median of many runs (robust to a busy neighbour) while
    second-scale ones run exactly `repeats` times.

    Returns:
        `(median seconds, list of all timed seconds, first warm-up seconds)`.
    """
    first = None
    for _ in range(warmup):
        t0 = time.perf_counter()
        sync(fn())
        if first is None:
            first = time.perf_counter() - t0
    times = []
    while len(times) < repeats or (
        sum(times) < min_time and len(times) < max_runs
    ):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, first


# ------------------------------------------------- other processes' CPU load
#
# The benchmark machine is shared. These helpers measure how many cores
# *other* processes kept busy (all busy CPU time from /proc/stat, including
# hypervisor steal, minus this process's and its waited children's CPU time),
# so that runs can wait for a quiet machine and report how quiet it was.


def _machine_busy_seconds():
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """Average number of cores used by other processes over an interval."""

    def __init__(self):
        self.start()

    def start(self):
        self._t = time.perf_counter()
        self._busy = _machine_busy_seconds()
        self._own = _own_cpu_seconds()
        return self

    def cores(self):
        busy = _machine_busy_seconds()
        if busy is None or self._busy is None:
            return None
        wall = time.perf_counter() - self._t
        foreign = (busy - self._busy) - (_own_cpu_seconds() - self._own)
        return max(0.0, foreign / wall) if wall > 0 else None


def wait_quiet(max_cores=0.2, window_s=1.0, max_wait_s=90.0):
    """Waits until other processes use less than `max_cores` cores.

    Samples `window_s` windows until one is quiet or `max_wait_s` passed.

    Returns:
        The foreign load (cores) of the last window, or None if unknown.
    """
    deadline = time.perf_counter() + max_wait_s
    waited = False
    while True:
        probe = ForeignLoad()
        time.sleep(window_s)
        load = probe.cores()
        if load is None or load < max_cores:
            if waited:
                log(f"machine quiet again (other processes: {load:.2f} cores)")
            return load
        if time.perf_counter() > deadline:
            log(
                f"machine still busy after {max_wait_s:.0f} s (other "
                f"processes: {load:.2f} cores); measuring anyway"
            )
            return load
        if not waited:
            log(f"other processes use {load:.2f} cores; waiting for quiet")
        waited = True
        time.sleep(2.0)


def time_interleaved(fns, rounds, target_s=0.1, max_batch=25):
    """Times several functions round-robin, so that they share the noise.

    On a shared machine the load of other processes changes by the second;
    timing one function after the other would give one of them a quiet
    machine and the next a busy one. Here each function gets one warm-up
    call, then `rounds` rounds run every function in turn (the order rotates
    each round). In a round a function runs `batch` times in a row, where
    `batch` fills about `target_s` seconds (1 for slow functions, at most
    `max_batch`). The result is the median over all its timed runs.

    Args:
        fns: dict name -> zero-argument callable returning backend values.
        rounds: Number of rounds.

    Returns:
        dict name -> `{"median_s", "runs_s", "first_call_s", "batch"}`, and
        under the key `None` the average cores used by other processes.
    """
    load = ForeignLoad()
    out = {}
    names = list(fns)
    for name in names:
        t0 = time.perf_counter()
        sync(fns[name]())
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync(fns[name]())
        one = time.perf_counter() - t0
        batch = int(max(1, min(max_batch, round(target_s / max(one, 1e-6)))))
        out[name] = {"first_call_s": first, "batch": batch, "runs_s": []}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            for _ in range(out[name]["batch"]):
                t0 = time.perf_counter()
                sync(fn())
                out[name]["runs_s"].append(time.perf_counter() - t0)
    for name in names:
        out[name]["median_s"] = statistics.median(out[name]["runs_s"])
    out[None] = load.cores()
    return out


# ------------------------------------------------------------ memory (Linux)


def proc_status_kib(*keys):
    """Values (KiB) of `/proc/self/status` fields, e.g. VmRSS, VmHWM."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0])
    return out


def reset_peak_rss():
    """Resets VmHWM (peak RSS) of this process to its current RSS.

    Writing "5" to /proc/self/clear_refs does this (Linux >= 4.0). Returns
    False where that is not possible.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# Environment of a memory-probe subprocess: glibc returns every allocation of
# 64 KiB or more to the OS on free (mmap/munmap), so freed buffers of the
# warm-up run do not stay resident and hide the peak of the measured run.
MEMORY_PROBE_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_TRIM_THRESHOLD_": "0",
}


# ------------------------------------------------------------- subprocesses


def module_name(spec_or_file):
    """`benchmarks.<name>` of a benchmark, from its `__spec__` or `__file__`.

    Pass `__spec__` (set when run with `python -m`), or `__file__`.
    """
    name = getattr(spec_or_file, "name", None)
    if name:
        return name
    text = str(spec_or_file)
    if text.startswith("benchmarks.") and not text.endswith(".py"):
        return text  # already a module name (`child_argv` passes one)
    stem = os.path.splitext(os.path.basename(str(spec_or_file)))[0]
    return f"benchmarks.{stem}"


def run_child(argv, env_updates, timeout=None, label=""):
    """Runs `python -m argv...` with a JSON result file; returns the JSON.

    `argv[0]` is the benchmark's module (`module_name(__spec__)`); the child
    runs from the repository root, so `benchmarks` and `keras_prune`
    import as in the parent. The child gets `--json-out PATH` appended and
    must write one JSON object there. Its stderr goes to ours (progress
    messages); its stdout is discarded unless it fails.
    """
    env = dict(os.environ)
    env.update(env_updates)
    fd, path = tempfile.mkstemp(prefix="kp_bench_", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", *argv, "--json-out", path],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"benchmark child {label or argv} failed with exit code "
                f"{proc.returncode}; stdout tail:\n{proc.stdout[-3000:]}"
            )
        with open(path) as f:
            return json.load(f)
    finally:
        os.unlink(path)


def child_argv(module, options, flags=()):
    """`[module, "--child", "--name", "value", ...]` for `run_child`.

    Args:
        module: The benchmark's module (`module_name(__spec__)`).
        options: Dict of option name (underscores for dashes) to value.
        flags: Names of store-true flags to pass.
    """
    argv = [module_name(module), "--child"]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv + [f"--{name.replace('_', '-')}" for name in flags]


def git_commit():
    """`HEAD`'s commit of the repository (suffix `+dirty` if modified)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def results_path(name):
    """The canonical results file of benchmark `name`."""
    return os.path.join(RESULTS_DIR, f"{name}.json")


def run_info(name):
    """The `run` block of a results file: what ran, where and when."""
    return {
        "benchmark": name,
        "command": "python -m benchmarks."
        + name
        + " "
        + " ".join(sys.argv[1:]),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
    }


def save_results(name, obj, path=None):
    """Writes `obj` with a `run` block to `results/<name>.json` (or `path`).

    Each benchmark keeps one canonical results file; a new run replaces
    it (git keeps the history). Returns the path written.
    """
    path = results_path(name) if path is None else path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out = {"run": run_info(name)}
    out.update((k, v) for k, v in obj.items() if k != "run")
    write_json(path, out)
    return path


def load_results(paths):
    """The "results" lists of earlier `--json-out` files, concatenated."""
    results = []
    for path in paths:
        with open(path) as f:
            results += json.load(f)["results"]
    return results


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tfmot side


def load_run_tfmot():
    """`run_tfmot` from benchmarks/tfmot_env.py, or None if unavailable."""
    try:
        from benchmarks.tfmot_env import run_tfmot
    except ImportError:
        return None
    return run_tfmot


# ------------------------------------------------------------------ tables


def markdown_table(headers, rows):
    """A GitHub markdown table; numbers must already be strings."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def fmt(x, spec=".1f", none="n/a"):
    return none if x is None else format(x, spec)
