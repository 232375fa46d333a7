"""Run the TensorFlow Model Optimization Toolkit (tfmot) as a reference.

tfmot 0.8.1 only works with Keras 2 (`tf_keras`), which cannot live in the
same environment as Keras 3 without the two fighting over `import keras`.
This module therefore keeps tfmot in its own virtual environment and talks to
it through a subprocess:

- `ensure_tfmot_venv()` creates the environment on first use.
- `run_tfmot(task, **kwargs)` runs one task of `benchmarks/_tfmot_reference.py`
  inside it and returns the task's JSON result as a dict.

Example:

```python
from benchmarks.tfmot_env import run_tfmot

result = run_tfmot("train_overhead", mode="pruned", epochs=40, seed=0)
print(result["fit_seconds"], result["test_accuracy"])
```

It can also be used from the command line:

```
python -m benchmarks.tfmot_env --create-only
python -m benchmarks.tfmot_env mask_sort '{"n": 1048576}'
```
"""

import json
import os
import subprocess
import sys
import time
import venv

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(_BENCH_DIR)
_REFERENCE_SCRIPT = os.path.join(_BENCH_DIR, "_tfmot_reference.py")

# Pinned so that results stay comparable over time. tensorflow-cpu and
# tf_keras must share the same minor version.
TFMOT_REQUIREMENTS = (
    "tensorflow-cpu==2.21.*",
    "tf_keras==2.21.*",
    "tensorflow-model-optimization==0.8.1",
    "scikit-learn",
    "numpy",
)

# Written into the venv once every package installed and imported fine, so
# that a half-finished venv (interrupted pip) is repaired on the next call.
_READY_MARKER = ".tfmot-ready"

# Tasks implemented by `_tfmot_reference.py`.
TFMOT_TASKS = (
    "train_overhead",
    "accuracy",
    "accuracy_sweep",
    "mask_sort",
    "compress",
)


def _resolve_venv_path(path):
    if os.path.isabs(path):
        return path
    return os.path.join(_REPO_ROOT, path)


def _venv_python(venv_dir):
    if os.name == "nt":
        return os.path.join(venv_dir, "Scripts", "python.exe")
    return os.path.join(venv_dir, "bin", "python")


def _tail(text, lines=40):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _run_checked(cmd, what, timeout=None):
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"Could not {what}: {e}") from e
    if proc.returncode != 0:
        raise RuntimeError(
            f"Could not {what} (exit code {proc.returncode}).\n"
            f"Command: {' '.join(cmd)}\n"
            f"Last lines of output:\n{_tail(proc.stdout)}"
        )
    return proc.stdout


def ensure_tfmot_venv(path=".venv-tfmot", verbose=True):
    """Create the tfmot virtual environment if it does not exist yet.

    The environment gets `tensorflow-cpu`, a matching `tf_keras`,
    `tensorflow-model-optimization==0.8.1`, `scikit-learn` and `numpy`
    (see `TFMOT_REQUIREMENTS`). Creating it downloads several hundred MB and
    takes a few minutes; later calls return immediately.

    Args:
        path: Directory of the virtual environment. A relative path is taken
            relative to the repository root (not the current directory), so
            every caller shares one environment.
        verbose: Whether to print progress messages to stderr while the
            environment is created.

    Returns:
        The absolute path of the environment's Python interpreter.

    Raises:
        RuntimeError: If the environment cannot be created, the packages
            cannot be installed, or the installed packages fail to import.
    """
    venv_dir = _resolve_venv_path(path)
    python = _venv_python(venv_dir)
    marker = os.path.join(venv_dir, _READY_MARKER)
    if os.path.exists(python) and os.path.exists(marker):
        return python

    def log(msg):
        if verbose:
            print(f"[tfmot_env] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    if not os.path.exists(python):
        log(f"creating virtual environment in {venv_dir}")
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        except (
            Exception
        ) as e:  # venv raises a mix of OSError/CalledProcessError
            raise RuntimeError(
                f"Could not create a virtual environment in {venv_dir!r}: {e}. "
                "On Debian/Ubuntu the `python3-venv` package may be missing."
            ) from e
        if not os.path.exists(python):
            raise RuntimeError(
                f"Created a virtual environment in {venv_dir!r} but found no "
                f"interpreter at {python!r}."
            )

    log("installing " + " ".join(TFMOT_REQUIREMENTS) + " (takes a few minutes)")
    _run_checked(
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        "upgrade pip in the tfmot environment",
    )
    _run_checked(
        [python, "-m", "pip", "install", *TFMOT_REQUIREMENTS],
        "install the tfmot reference packages; PyPI must be reachable and "
        f"wheels must exist for this Python ({sys.version.split()[0]})",
    )
    _run_checked(
        [
            python,
            "-c",
            "import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'; "
            "import tensorflow, tf_keras, sklearn; "
            "import tensorflow_model_optimization as tfmot; "
            "tfmot.sparsity.keras.prune_low_magnitude",
        ],
        "import tensorflow / tf_keras / tensorflow_model_optimization in the "
        "freshly created environment",
    )
    with open(marker, "w") as f:
        f.write("\n".join(TFMOT_REQUIREMENTS) + "\n")
    log(f"tfmot environment ready after {time.perf_counter() - start:.0f} s")
    return python


def run_tfmot(task, *, venv_path=".venv-tfmot", timeout=None, **kwargs):
    """Run one tfmot reference task in the tfmot environment.

    The task runs `benchmarks/_tfmot_reference.py` in a fresh subprocess with
    `TF_USE_LEGACY_KERAS=1` and no visible GPU (`CUDA_VISIBLE_DEVICES=""`).
    Keyword arguments are sent to it as one JSON object on the command line;
    the script prints its result as JSON on the last line of stdout.

    Args:
        task: One of `"train_overhead"`, `"accuracy"`, `"accuracy_sweep"`,
            `"mask_sort"` and `"compress"`. See
            `benchmarks/_tfmot_reference.py` for the arguments each one
            takes.
        venv_path: Directory of the tfmot virtual environment, created with
            `ensure_tfmot_venv()` if missing.
        timeout: Optional time limit for the subprocess, in seconds.
        **kwargs: Task arguments. They must be JSON-serializable.

    Returns:
        The task's result as a dict.

    Raises:
        RuntimeError: If the environment cannot be created, the task fails,
            or its output does not end with a JSON object.
        ValueError: If `task` is not one of the known tasks.
    """
    if task not in TFMOT_TASKS:
        raise ValueError(
            f"Unknown tfmot task {task!r}. Expected one of {TFMOT_TASKS}."
        )
    python = ensure_tfmot_venv(venv_path)
    env = dict(os.environ)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Do not let the caller's environment (e.g. a Keras 3 checkout on
    # PYTHONPATH) leak into the tfmot interpreter.
    env.pop("PYTHONPATH", None)
    env.pop("KERAS_BACKEND", None)
    cmd = [python, _REFERENCE_SCRIPT, task, json.dumps(kwargs)]
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(
            f"tfmot task {task!r} did not finish within {timeout} s."
        ) from e
    if proc.returncode != 0:
        raise RuntimeError(
            f"tfmot task {task!r} failed (exit code {proc.returncode}).\n"
            f"Last lines of stderr:\n{_tail(proc.stderr)}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as e:
        raise RuntimeError(
            f"tfmot task {task!r} did not print a JSON result on its last "
            f"stdout line.\nstdout tail:\n{_tail(proc.stdout, 10)}\n"
            f"stderr tail:\n{_tail(proc.stderr)}"
        ) from e
    if not isinstance(result, dict):
        raise RuntimeError(
            f"tfmot task {task!r} printed {type(result).__name__}, "
            "expected a JSON object."
        )
    return result


def _main(argv):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", help="task name")
    parser.add_argument(
        "args", nargs="?", default="{}", help="task arguments as a JSON object"
    )
    parser.add_argument("--venv", default=".venv-tfmot")
    parser.add_argument(
        "--create-only", action="store_true", help="only create the venv"
    )
    ns = parser.parse_args(argv)
    if ns.create_only or ns.task is None:
        print(ensure_tfmot_venv(ns.venv))
        return 0
    result = run_tfmot(ns.task, venv_path=ns.venv, **json.loads(ns.args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
