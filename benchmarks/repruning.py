"""Benchmark: the NumPy mask select on tensors that are already sparse.

`masks.host_mask` (used by `prune_once`, `UpdatePruningStep`'s updates,
torch's in-step updates and the eager public `magnitude_mask`) re-prunes
weights that earlier updates zeroed: from a schedule's second update on, a
tensor at 50% is pruned at 50% or more again. This times it on a float32
tensor of `--size` standard-normal values, fresh and with half of them
exactly zero, at 50% and 90%, for this checkout's `keras_prune.core.masks`
and for the same module at another commit (`--against`, read with `git
show`), side by side in one process (best of `--repeats`). It also checks
that both give the same mask and threshold.

Usage (from the repository root, in a git checkout):

    python -m benchmarks.repruning
    python -m benchmarks.repruning --against b317de4^ --size 16777216
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_at(rev):
    source = subprocess.run(
        ["git", "show", f"{rev}:src/keras_prune/core/masks.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = os.path.join(tempfile.mkdtemp(), "masks_at_rev.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("masks_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def run(size, against, repeats):
    from keras_prune.core import masks

    other = _module_at(against)
    rng = np.random.default_rng(0)
    fresh = rng.standard_normal(size).astype(np.float32)
    half = fresh.copy()
    half[rng.permutation(size) < size // 2] = 0.0
    print(f"{size} weights; this checkout vs {against}, best of {repeats}")
    print(f"| weights | sparsity | this checkout ms | {against} ms |")
    print("|---|---:|---:|---:|")
    rows = []
    for name, w in (("fresh", fresh), ("half already zero", half)):
        for sparsity in (0.5, 0.9):
            a = masks.host_mask(w, sparsity)
            b = other.host_mask(w, sparsity)
            if not (np.array_equal(a[0], b[0]) and a[1] == b[1]):
                sys.exit(f"different masks: {name}, {sparsity}")
            now = _best(lambda: masks.host_mask(w, sparsity), repeats)
            then = _best(lambda: other.host_mask(w, sparsity), repeats)
            print(f"| {name} | {sparsity} | {now:.1f} | {then:.1f} |")
            rows.append((name, sparsity, now, then))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 24)
    parser.add_argument("--against", default="b317de4^")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    run(args.size, args.against, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
