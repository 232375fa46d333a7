"""Benchmark: test accuracy vs. sparsity, per allocation method and vs. tfmot.

Data: scikit-learn `load_digits`, X / 16 as float32, split with
`train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)` (1437
train / 360 test, as in `benchmarks/_tfmot_reference.py`), then standardised
per pixel with the training set's mean and std (constant pixels only
centred; `standardize_split` there). One test sample is 0.28 points.

Architectures (the same layers and names as `_tfmot_reference.build_model`):

- `mlp`: Dense 64-1024-1024-10 (relu, relu, logits), 1.12M kernel weights;
- `cnn`: Reshape(8, 8, 1), Conv2D(16, 3, relu, same), Conv2D(32, 3, relu,
  same), MaxPool2D, Flatten, Dense(64, relu), Dense(10) logits; 38k kernel
  weights, 86% of them in `fc`.

Recipe, identical for every method and for tfmot: for each seed,
`set_random_seed(seed)`, build, train dense `--epochs` epochs (Adam(1e-3),
`SparseCategoricalCrossentropy(from_logits=True)`, batch 64, shuffled).
Then each method starts from those dense weights with a fresh Adam(1e-3) and
trains `--prune-epochs` more epochs under
`PolynomialDecay(0.0, s, begin_step=0, end_step, frequency)` where
`frequency` is half an epoch of steps and `end_step` the multiple of
`frequency` nearest to 70% of the fine-tuning steps (so that the last mask
update is at exactly `s`), with `UpdatePruningStep()`; then `strip_pruning`.
Every kernel (Dense and Conv2D, logits included) is pruned, biases are not.

Methods:

- `dense`: the dense model trained `--prune-epochs` more epochs with a fresh
  Adam, no pruning (the baseline at equal training budget);
- `layer`: `prune_low_magnitude(..., allocation="layer")`: every kernel at
  sparsity s (tfmot's behaviour);
- `global`: `allocation="global"`: one magnitude threshold over all kernels;
- `erk`: `allocation="erk"`: Erdos-Renyi-Kernel per-layer budgets;
- `2:4`: `sparsity_m_by_n=(2, 4)` with `PolynomialDecay(0.0, 0.5, ...)`
  (gradual N:M), only at 50%;
- `tfmot`: tfmot 0.8.1 `prune_low_magnitude` (layer-wise) with the same
  recipe, in `.venv-tfmot` (`run_tfmot("accuracy_sweep")`); its own seeded
  initial weights (Keras 2 and 3 seeds give different weights).

Accuracy is argmax accuracy on the 360 test samples after `strip_pruning`;
mean +- sample std over the seeds. The realised sparsity of every pruned
kernel is counted as exact zeros after stripping and checked against
`kept_count`: per kernel for `layer` (and tfmot), on the total for `global`
and `erk`; `2:4` is checked with `patterns.is_pruned_m_by_n`.

Usage:

    .venv/bin/python -m benchmarks.accuracy                # full run (JAX)
    .venv/bin/python -m benchmarks.accuracy --quick        # smoke run
    .venv/bin/python -m benchmarks.accuracy --arch cnn --methods layer tfmot
    .venv/bin/python -m benchmarks.accuracy \
        --from-json benchmarks/results/accuracy.json
"""

import os
import sys

from benchmarks import harness

os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse
import inspect
import json
import math
import statistics
import time

import numpy as np

BATCH_SIZE = 64
LEARNING_RATE = 1e-3
ARCHS = ("mlp", "cnn")
METHODS = ("dense", "layer", "global", "erk", "2:4", "tfmot")
SPARSITIES = (0.8, 0.9, 0.95, 0.98)
NM_SPARSITY = 0.5
DEFAULT_JSON = os.path.join(harness.BENCH_DIR, "results", "accuracy.json")
DEFAULT_PLOT = os.path.join(harness.REPO_ROOT, "docs", "images", "accuracy.png")
LABELS = {
    "dense": "dense",
    "layer": "keras-prune layer",
    "global": "keras-prune global",
    "erk": "keras-prune ERK",
    "2:4": "keras-prune 2:4",
    "tfmot": "tfmot 0.8.1 (layer)",
}


# ------------------------------------------------------------------- data


def build_model(arch):
    import keras

    L = keras.layers
    if arch == "mlp":
        layers = [
            L.Dense(1024, activation="relu", name="dense1"),
            L.Dense(1024, activation="relu", name="dense2"),
            L.Dense(10, name="logits"),
        ]
    elif arch == "cnn":
        layers = [
            L.Reshape((8, 8, 1), name="reshape"),
            L.Conv2D(16, 3, activation="relu", padding="same", name="conv1"),
            L.Conv2D(32, 3, activation="relu", padding="same", name="conv2"),
            L.MaxPool2D(name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="fc"),
            L.Dense(10, name="logits"),
        ]
    else:
        raise ValueError(f"arch must be 'mlp' or 'cnn', got {arch!r}")
    return keras.Sequential([keras.Input((64,))] + layers, name=arch)


def compile_model(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def test_accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def schedule_params(n_train, prune_epochs):
    spe = math.ceil(n_train / BATCH_SIZE)
    steps = spe * prune_epochs
    frequency = max(1, spe // 2)
    end_step = max(frequency, frequency * round(0.7 * steps / frequency))
    return {
        "steps_per_epoch": spe,
        "prune_steps": steps,
        "frequency": frequency,
        "end_step": end_step,
    }


# ----------------------------------------------------------- library probe


def library_support():
    """Which of the new pruning options this keras-prune accepts.

    `allocation` is probed through the signature (for models, unknown
    keyword arguments would otherwise be ignored silently); `2:4` by
    wrapping a small Dense layer (it raised NotImplementedError before).
    """
    import keras

    import keras_prune

    params = inspect.signature(keras_prune.prune_low_magnitude).parameters
    support = {"allocation": "allocation" in params}
    try:
        layer = keras.layers.Dense(4)
        layer.build((None, 8))
        keras_prune.prune_low_magnitude(
            layer,
            pruning_schedule=keras_prune.ConstantSparsity(0.5, 0),
            sparsity_m_by_n=(2, 4),
        )
        support["2:4"] = True
    except (NotImplementedError, ValueError, TypeError) as e:
        support["2:4"] = False
        support["2:4_error"] = f"{type(e).__name__}: {e}"
    return support


# ------------------------------------------------------- one keras-prune run


def kernel_counts(model):
    """{layer name: (zeros, size, kernel as numpy)} for every kernel."""
    import keras

    out = {}
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        k = np.asarray(keras.ops.convert_to_numpy(kernel))
        out[layer.name] = (int(np.sum(k == 0)), int(k.size), k)
    return out


def check_sparsity(method, target, counts):
    """Realised sparsity per kernel and in total, and whether it is exact.

    Exact means: `layer` and tfmot: every kernel has `n - kept_count(n, s)`
    zeros; `global` / `erk`: the total has `N - kept_count(N, s)` zeros;
    `2:4`: every kernel with at least 4 input channels passes
    `is_pruned_m_by_n` (conv1 has 1 input channel: its groups are padded
    with virtual zeros and it stays dense, as in tfmot).
    """
    import keras_prune

    zeros = {name: z for name, (z, n, _) in counts.items()}
    sizes = {name: n for name, (z, n, _) in counts.items()}
    total_z, total_n = sum(zeros.values()), sum(sizes.values())
    out = {
        "kernel_zeros": zeros,
        "kernel_sizes": sizes,
        "kernel_sparsity": {k: zeros[k] / sizes[k] for k in zeros},
        "total_sparsity": total_z / total_n,
    }
    if method in ("layer", "tfmot"):
        expected = {
            k: n - int(keras_prune.kept_count(n, target))
            for k, n in sizes.items()
        }
        out["expected_zeros"] = expected
        out["exact"] = all(zeros[k] == expected[k] for k in zeros)
    elif method in ("global", "erk"):
        expected = total_n - int(keras_prune.kept_count(total_n, target))
        out["expected_zeros"] = expected
        out["exact"] = total_z == expected
    elif method == "2:4":
        from keras_prune.core import patterns

        ok = True
        for _name, (_z, _n, k) in counts.items():
            if k.shape[-2] >= 4:
                ok = ok and bool(patterns.is_pruned_m_by_n(k, (2, 4)))
        out["exact"] = ok
    else:
        out["exact"] = None
    return out


def make_pruned(arch, method, target, dense_weights, sched):
    """A fresh, uncompiled copy of the dense model set up for `method`."""
    import keras_prune

    model = build_model(arch)
    model.set_weights(dense_weights)
    if method == "dense":
        return model
    schedule = keras_prune.PolynomialDecay(
        0.0,
        target,
        begin_step=0,
        end_step=sched["end_step"],
        frequency=sched["frequency"],
    )
    kwargs = {}
    if method == "2:4":
        kwargs["sparsity_m_by_n"] = (2, 4)
    elif SUPPORT.get("allocation"):
        kwargs["allocation"] = method
    elif method != "layer":
        raise RuntimeError(f"allocation={method!r} is not available")
    return keras_prune.prune_low_magnitude(
        model, pruning_schedule=schedule, **kwargs
    )


class Reused:
    """One compiled model per (arch, method, sparsity), reused across seeds.

    Compiling a pruned model's train step costs ~8 s on 2 cores against
    0.1-0.3 s per epoch, so compiling once per configuration instead of once
    per seed saves most of the run. For every seed a fresh model is built
    exactly as for a fresh run (`make()`), and the values of all its
    variables (weights, masks, pruning step, ...) are copied into the
    compiled model, whose optimizer variables are reset to their values
    right after `optimizer.build` (Adam: all zero). `--no-reuse` builds and
    compiles a fresh model every time instead; `--check-reuse` runs one
    configuration both ways and compares.
    """

    def __init__(self, reuse=True):
        self.reuse = reuse
        self.model = None
        self._opt0 = None
        self.reused = False

    def seed(self, seed, n_train):
        """`set_random_seed(seed)` before `fit`, as a fresh model sees it.

        On a fresh model `fit` first builds the model's metrics from one
        peeked batch (`_symbolic_build`), which draws one shuffling
        permutation from NumPy's generator and throws it away; a reused
        model skips that. Drawing it here keeps the batches identical.
        """
        import keras

        keras.utils.set_random_seed(seed)
        if self.reused:
            np.random.permutation(n_train)

    def get(self, make):
        import keras

        fresh = make()
        self.reused = self.model is not None and self.reuse
        if not self.reused:
            compile_model(fresh)
            fresh.optimizer.build(fresh.trainable_variables)
            self._opt0 = [
                np.array(keras.ops.convert_to_numpy(v))
                for v in fresh.optimizer.variables
            ]
            self.model = fresh
            return fresh
        model = self.model
        if len(model.variables) != len(fresh.variables):
            raise RuntimeError("reused model has different variables")
        for a, b in zip(model.variables, fresh.variables):
            if tuple(a.shape) != tuple(b.shape):
                raise RuntimeError(f"variable mismatch: {a.path} {b.path}")
            a.assign(b.value)
        for v, x in zip(model.optimizer.variables, self._opt0):
            v.assign(x)
        return model


def evaluate(model, x, y):
    """Argmax accuracy of an eager call (no predict function to compile)."""
    import keras

    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def run_method(arch, method, target, seed, dense_weights, data, sched, holder):
    """Fine-tunes a copy of the dense model with one method; returns a dict."""
    import keras

    import keras_prune

    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(seed)
    model = holder.get(
        lambda: make_pruned(arch, method, target, dense_weights, sched)
    )
    callbacks = []
    if method != "dense":
        callbacks.append(keras_prune.UpdatePruningStep())
    holder.seed(seed, len(x_train))  # same batches for every method
    t0 = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=BATCH_SIZE,
        epochs=sched["prune_epochs"],
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    fit_s = time.perf_counter() - t0
    final = model
    if method != "dense":
        final = keras_prune.strip_pruning(model)
    result = {
        "arch": arch,
        "method": method,
        "sparsity": target,
        "seed": seed,
        "accuracy": evaluate(final, x_test, y_test),
        "fit_seconds": fit_s,
        "weights_sha1": _digest(final),
    }
    if method != "dense":
        result.update(check_sparsity(method, target, kernel_counts(final)))
    return result


SUPPORT = {}


def _digest(model):
    import hashlib

    h = hashlib.sha1()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def check_reuse(archs, methods, sparsity, data):
    """Seeds 0 and 1 of each method, with and without reuse: same result?"""
    ok = True
    for arch in archs:
        for method in methods:
            if method == "tfmot":
                continue
            s = {"dense": 0.0, "2:4": NM_SPARSITY}.get(method, sparsity)
            out = {}
            for reuse in (True, False):
                runs, _, _ = run_keras_prune(
                    arch, [method], [s], [0, 1], 2, 2, data, reuse=reuse
                )
                out[reuse] = [(r["accuracy"], r["weights_sha1"]) for r in runs]
            same = out[True] == out[False]
            ok = ok and same
            harness.log(
                f"check-reuse {arch} {method} {s}: reused {out[True]} vs "
                f"fresh {out[False]}: {'IDENTICAL' if same else 'DIFFERENT'}"
            )
    return ok


def _log_run(r):
    extra = ""
    if "total_sparsity" in r:
        extra = (
            f", sparsity {r['total_sparsity']:.6f} "
            f"({'exact' if r['exact'] else 'NOT EXACT'}); "
            + ", ".join(f"{k} {v:.4f}" for k, v in r["kernel_sparsity"].items())
        )
    harness.log(
        f"{r['arch']} seed {r['seed']} {r['method']} {r['sparsity']:.2f}: "
        f"{100 * r['accuracy']:.2f}% ({r['fit_seconds']:.1f} s){extra}"
    )


def run_keras_prune(
    arch, methods, sparsities, seeds, epochs, prune_epochs, data, reuse=True
):
    import keras

    x_train, y_train, x_test, y_test = data
    sched = dict(schedule_params(len(x_train), prune_epochs))
    sched["prune_epochs"] = prune_epochs
    runs, dense_pre, weights = [], [], {}
    holder = Reused(reuse)
    keras.utils.clear_session()
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = holder.get(lambda: build_model(arch))
        t0 = time.perf_counter()
        holder.seed(seed, len(x_train))
        model.fit(
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            shuffle=True,
            verbose=0,
        )
        pre = {
            "arch": arch,
            "seed": seed,
            "accuracy": evaluate(model, x_test, y_test),
            "fit_seconds": time.perf_counter() - t0,
        }
        dense_pre.append(pre)
        harness.log(
            f"{arch} seed {seed}: dense after {epochs} epochs "
            f"{100 * pre['accuracy']:.2f}% ({pre['fit_seconds']:.1f} s)"
        )
        weights[seed] = model.get_weights()
    jobs = []
    for method in methods:
        if method == "dense":
            jobs.append((method, 0.0))
        elif method == "2:4":
            jobs.append((method, NM_SPARSITY))
        elif method in ("layer", "global", "erk"):
            jobs += [(method, s) for s in sparsities]
    for method, s in jobs:
        holder = Reused(reuse)
        keras.utils.clear_session()
        for seed in seeds:
            r = run_method(
                arch, method, s, seed, weights[seed], data, sched, holder
            )
            runs.append(r)
            _log_run(r)
    return runs, dense_pre, sched


def run_tfmot_arch(arch, sparsities, seeds, epochs, prune_epochs, sched):
    run_tfmot = harness.load_run_tfmot()
    if run_tfmot is None:
        harness.log("benchmarks/tfmot_env.py not found: skipping tfmot")
        return None, None
    t0 = time.perf_counter()
    res = run_tfmot(
        "accuracy_sweep",
        arch=arch,
        sparsities=list(sparsities),
        seeds=list(seeds),
        epochs=epochs,
        prune_epochs=prune_epochs,
        batch_size=BATCH_SIZE,
        frequency=sched["frequency"],
        end_step=sched["end_step"],
        standardize=True,
    )
    wall = time.perf_counter() - t0
    runs, dense_pre = [], {}
    for r in res["runs"]:
        counts = {
            name: (r["kernel_zeros"][name], r["kernel_sizes"][name], None)
            for name in r["kernel_zeros"]
        }
        one = {
            "arch": arch,
            "method": "tfmot",
            "sparsity": r["sparsity"],
            "seed": r["seed"],
            "accuracy": r["pruned_accuracy"],
            "fit_seconds": r["prune_fit_seconds"],
        }
        one.update(check_sparsity("tfmot", r["sparsity"], counts))
        runs.append(one)
        dense_pre[r["seed"]] = r["dense_accuracy"]
        harness.log(
            f"{arch} tfmot seed {r['seed']} {r['sparsity']:.2f}: "
            f"{100 * one['accuracy']:.2f}%, sparsity "
            f"{one['total_sparsity']:.6f} "
            f"({'exact' if one['exact'] else 'NOT EXACT'})"
        )
    meta = {
        k: res[k]
        for k in ("frequency", "end_step", "steps_per_epoch", "versions")
    }
    meta["dense_accuracy_by_seed"] = dense_pre
    meta["wall_seconds"] = wall
    return runs, meta


# ------------------------------------------------------------- summaries


def mean_std(xs):
    if not xs:
        return None, None
    m = statistics.fmean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, s


def summarize(runs):
    """{(arch, method, sparsity): {mean, std, n, all, exact}}."""
    groups = {}
    for r in runs:
        groups.setdefault((r["arch"], r["method"], r["sparsity"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        accs = [r["accuracy"] for r in rs]
        m, s = mean_std(accs)
        exact = [r.get("exact") for r in rs]
        out[key] = {
            "mean": m,
            "std": s,
            "n": len(rs),
            "all": accs,
            "exact": None if exact[0] is None else all(exact),
            "total_sparsity": [r.get("total_sparsity") for r in rs],
        }
    return out


def paired_diff(runs, arch, a, b, s):
    """Mean and std over seeds of accuracy(a) - accuracy(b) at sparsity s."""
    acc = {}
    for r in runs:
        if r["arch"] == arch and r["sparsity"] == s:
            acc.setdefault(r["method"], {})[r["seed"]] = r["accuracy"]
    if a not in acc or b not in acc:
        return None
    seeds = sorted(set(acc[a]) & set(acc[b]))
    if not seeds:
        return None
    d = [acc[a][k] - acc[b][k] for k in seeds]
    m, sd = mean_std(d)
    return {"mean": m, "std": sd, "n": len(d), "all": d}


def unpaired_diff(summary, arch, a, b, s):
    """Mean difference and its standard error (unpaired: different inits)."""
    x, y = summary.get((arch, a, s)), summary.get((arch, b, s))
    if not x or not y:
        return None
    se = math.sqrt(x["std"] ** 2 / x["n"] + y["std"] ** 2 / y["n"])
    return {"mean": x["mean"] - y["mean"], "se": se}


def _cell(st):
    if st is None:
        return ""
    cell = f"{100 * st['mean']:.2f} ± {100 * st['std']:.2f}"
    if st.get("exact") is False:
        cell += " (!)"
    return cell


def accuracy_table(summary, archs, methods, sparsities):
    cols = [0.0]
    if "2:4" in methods:
        cols.append(NM_SPARSITY)
    cols += list(sparsities)
    headers = ["arch", "method"] + [f"{100 * c:g}%" for c in cols]
    rows = []
    for arch in archs:
        for m in methods:
            cells = [_cell(summary.get((arch, m, c))) for c in cols]
            if any(cells):
                rows.append([arch, LABELS[m]] + cells)
    return harness.markdown_table(headers, rows)


def comparison_table(runs, summary, archs, sparsities):
    headers = [
        "arch",
        "sparsity",
        "global - layer",
        "ERK - layer",
        "layer - tfmot",
        "layer - tfmot, 2 SE",
    ]
    rows = []

    def pd(d):
        return (
            ""
            if d is None
            else (f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f}")
        )

    for arch in archs:
        for s in sparsities:
            u = unpaired_diff(summary, arch, "layer", "tfmot", s)
            rows.append(
                [
                    arch,
                    f"{100 * s:g}%",
                    pd(paired_diff(runs, arch, "global", "layer", s)),
                    pd(paired_diff(runs, arch, "erk", "layer", s)),
                    "" if u is None else f"{100 * u['mean']:+.2f}",
                    "" if u is None else f"{200 * u['se']:.2f}",
                ]
            )
    return harness.markdown_table(headers, rows)


def sparsity_table(runs, archs, methods, sparsities):
    """Realised per-kernel sparsity (seed of the first run) and exactness."""
    headers = [
        "arch",
        "method",
        "target",
        "per-kernel sparsity",
        "total",
        "exact (all seeds)",
    ]
    rows = []
    for arch in archs:
        for m in methods:
            if m == "dense":
                continue
            targets = [NM_SPARSITY] if m == "2:4" else list(sparsities)
            for s in targets:
                rs = [
                    r
                    for r in runs
                    if r["arch"] == arch
                    and r["method"] == m
                    and r["sparsity"] == s
                ]
                if not rs:
                    continue
                r = rs[0]
                rows.append(
                    [
                        arch,
                        LABELS[m],
                        f"{100 * s:g}%",
                        ", ".join(
                            f"{k} {v:.4f}"
                            for k, v in r["kernel_sparsity"].items()
                        ),
                        f"{r['total_sparsity']:.6f}",
                        "yes" if all(x.get("exact") for x in rs) else "NO",
                    ]
                )
    return harness.markdown_table(headers, rows)


def targets(runs, summary, archs):
    """The issue's targets, evaluated (strings)."""
    lines = []
    for arch in archs:
        for s in (0.95, 0.98):
            for m in ("global", "erk"):
                d = paired_diff(runs, arch, m, "layer", s)
                if d is None:
                    continue
                wins = sum(x > 0 for x in d["all"])
                se = d["std"] / math.sqrt(d["n"])
                if d["mean"] <= 0:
                    verdict = "does NOT beat layer-wise"
                elif wins == d["n"] and d["mean"] > 2 * se:
                    verdict = "beats layer-wise (every seed, > 2 SE)"
                else:
                    verdict = "ahead on the mean only (within noise)"
                lines.append(
                    f"{arch} {100 * s:g}%: {LABELS[m]} - layer = "
                    f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} points "
                    f"(paired SE {100 * se:.2f}; better on {wins}/{d['n']} "
                    f"seeds): {verdict}"
                )
        for s in sorted(
            {k[2] for k in summary if k[0] == arch and k[1] == "tfmot"}
        ):
            u = unpaired_diff(summary, arch, "layer", "tfmot", s)
            if u is None:
                continue
            within = abs(u["mean"]) <= 2 * u["se"] + 1e-12
            lines.append(
                f"{arch} {100 * s:g}%: layer - tfmot = {100 * u['mean']:+.2f}"
                f" points, 2 SE = {200 * u['se']:.2f}: "
                + ("within noise" if within else "OUTSIDE 2 SE")
            )
    return lines


# ------------------------------------------------------------------ plot


def plot(summary, archs, methods, sparsities, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(sparsities)
    pos = {s: i + 1 for i, s in enumerate(xs)}
    pos[NM_SPARSITY] = 0
    fig, axes = plt.subplots(
        1, len(archs), figsize=(6 * len(archs), 4.5), squeeze=False
    )
    styles = {
        "layer": dict(color="C0", marker="o"),
        "global": dict(color="C1", marker="s"),
        "erk": dict(color="C2", marker="^"),
        "tfmot": dict(color="C3", marker="x", linestyle="--"),
        "2:4": dict(color="C4", marker="D", linestyle="none", markersize=8),
    }
    dodge = {"layer": -0.09, "global": -0.03, "erk": 0.03, "tfmot": 0.09}
    for ax, arch in zip(axes[0], archs):
        d = summary.get((arch, "dense", 0.0))
        if d is not None:
            ax.axhline(
                100 * d["mean"],
                color="k",
                linestyle=":",
                label=f"dense ({100 * d['mean']:.1f}%)",
            )
            ax.axhspan(
                100 * (d["mean"] - d["std"]),
                100 * (d["mean"] + d["std"]),
                color="k",
                alpha=0.08,
            )
        for m in methods:
            if m == "dense":
                continue
            ss = [NM_SPARSITY] if m == "2:4" else xs
            pts = [(s, summary.get((arch, m, s))) for s in ss]
            pts = [(s, st) for s, st in pts if st is not None]
            if not pts:
                continue
            ax.errorbar(
                [pos[s] + dodge.get(m, 0.0) for s, _ in pts],
                [100 * st["mean"] for _, st in pts],
                yerr=[100 * st["std"] for _, st in pts],
                capsize=3,
                label=LABELS[m],
                **styles[m],
            )
        ticks = ([0] if "2:4" in methods else []) + [pos[s] for s in xs]
        labels = (["50%\n(2:4)"] if "2:4" in methods else []) + [
            f"{100 * s:g}%" for s in xs
        ]
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels)
        ax.set_xlabel("sparsity of the pruned kernels")
        ax.set_ylabel("test accuracy % (mean ± std over seeds)")
        ax.set_title(
            {
                "mlp": "MLP 64-1024-1024-10",
                "cnn": "small CNN (38k weights)",
            }.get(arch, arch)
            + ", digits"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ main


def git_state():
    """HEAD commit and the modified library files, for the record."""
    import subprocess

    def git(*a):
        try:
            return subprocess.run(
                ["git", "-C", harness.REPO_ROOT, *a],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.rstrip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--", "src")
    return {
        "head": (git("rev-parse", "--short", "HEAD") or "").strip() or None,
        "src_modified": None if status is None else status.splitlines(),
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS
    )
    p.add_argument(
        "--sparsities", nargs="+", type=float, default=list(SPARSITIES)
    )
    p.add_argument(
        "--seeds", type=int, default=3, help="number of seeds (0, 1, ...)"
    )
    p.add_argument(
        "--epochs", type=int, default=10, help="dense training epochs"
    )
    p.add_argument(
        "--prune-epochs",
        type=int,
        default=10,
        help="fine-tuning epochs (pruning, or dense for `dense`)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 seed, 2 + 2 epochs, 90%% only, no "
        "files written unless --json-out/--plot are given",
    )
    p.add_argument(
        "--json-out",
        default=None,
        help=f"default {os.path.relpath(DEFAULT_JSON)}",
    )
    p.add_argument(
        "--plot", default=None, help=f"default {os.path.relpath(DEFAULT_PLOT)}"
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="compile a fresh model for every seed (slow)",
    )
    p.add_argument(
        "--check-reuse",
        action="store_true",
        help="only check that reusing compiled models gives the "
        "same weights as fresh ones (2 seeds, 2 + 2 epochs)",
    )
    p.add_argument("--from-json", help="reprint tables/plot of a saved run")
    return p.parse_args(argv)


def report(result, plot_path):
    cfg = result["config"]
    runs = result["runs"]
    archs, methods = cfg["archs"], cfg["methods"]
    sparsities = cfg["sparsities"]
    summary = summarize(runs)
    print(f"Machine: {harness.format_machine(result['machine'])}")
    print(
        f"Backend {cfg['backend']}; {cfg['seeds']} seeds; dense "
        f"{cfg['epochs']} epochs + {cfg['prune_epochs']} fine-tuning epochs, "
        f"batch {BATCH_SIZE}; schedules: "
        + "; ".join(
            f"{a}: frequency {s['frequency']}, end_step {s['end_step']} of "
            f"{s['prune_steps']}"
            for a, s in result["schedules"].items()
        )
    )
    phases = ", ".join(
        f"{k} {v:.0f} s" for k, v in result["phase_seconds"].items()
    )
    print(f"Wall time: {result['wall_seconds']:.0f} s ({phases})")
    if result.get("other_load_cores") is not None:
        print(
            f"Other processes used {result['other_load_cores']:.2f} of "
            f"{result['machine']['cores']} cores on average during the run"
        )
    if result.get("git"):
        g = result["git"]
        changed = " ".join(x.split()[-1] for x in g.get("src_modified") or [])
        print(
            f"keras-prune at commit {g['head']}"
            + (f", modified: {changed}" if changed else "")
        )
    print()
    print("Test accuracy % (mean ± std over seeds; (!) = sparsity not exact)\n")
    print(accuracy_table(summary, archs, methods, sparsities))
    pre = result.get("dense_pre", [])
    if pre:
        means = {
            a: statistics.fmean(p["accuracy"] for p in pre if p["arch"] == a)
            for a in archs
            if any(p["arch"] == a for p in pre)
        }
        print(
            "\nDense before fine-tuning (keras-prune side): "
            + "; ".join(f"{a} {100 * m:.2f}%" for a, m in means.items())
        )
    tf_meta = result.get("tfmot") or {}
    if tf_meta:
        print(
            "Dense before fine-tuning (tfmot side): "
            + "; ".join(
                f"{a} "
                f"{100 * statistics.fmean(m['dense_accuracy_by_seed'].values()):.2f}%"  # noqa: E501
                for a, m in tf_meta.items()
            )
        )
    print(
        "\nDifferences in points (global/ERK: paired by seed, mean ± std; "
        "tfmot: unpaired, different initial weights)\n"
    )
    print(comparison_table(runs, summary, archs, sparsities))
    print("\nRealised sparsity after strip_pruning (first seed shown)\n")
    print(sparsity_table(runs, archs, methods, sparsities))
    lines = targets(runs, summary, archs)
    if lines:
        print("\nTargets:")
        for line in lines:
            print("- " + line)
    if plot_path:
        plot(summary, archs, methods, sparsities, plot_path)
        print(f"\nPlot: {os.path.relpath(plot_path)}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
        report(result, None if args.no_plot else args.plot)
        return 0
    if args.quick:
        args.seeds, args.epochs, args.prune_epochs = 1, 2, 2
        args.sparsities = [0.9]
        json_out, plot_path = args.json_out, args.plot
    else:
        json_out = args.json_out or DEFAULT_JSON
        plot_path = args.plot or DEFAULT_PLOT
    if args.no_plot:
        plot_path = None

    import keras

    SUPPORT.update(library_support())
    methods = []
    for m in args.methods:
        if m in ("global", "erk") and not SUPPORT["allocation"]:
            harness.log(
                f"skipping {m}: prune_low_magnitude has no "
                "`allocation` argument yet"
            )
        elif m == "2:4" and not SUPPORT["2:4"]:
            harness.log(f"skipping 2:4: {SUPPORT.get('2:4_error')}")
        else:
            methods.append(m)
    seeds = list(range(args.seeds))
    data = harness.digits_split(standardize=True)
    load_all = harness.ForeignLoad()
    git = git_state()  # the library was imported now, not at the end
    if args.check_reuse:
        return (
            0
            if check_reuse(args.arch, methods, args.sparsities[0], data)
            else 1
        )
    t_start = time.perf_counter()
    phases, loads = {}, {}
    runs, dense_pre, schedules, tf_meta = [], [], {}, {}
    for arch in args.arch:
        harness.log(f"=== {arch}: keras-prune ({keras.backend.backend()}) ===")
        t0 = time.perf_counter()
        load = harness.ForeignLoad()
        r, pre, sched = run_keras_prune(
            arch,
            [m for m in methods if m != "tfmot"],
            args.sparsities,
            seeds,
            args.epochs,
            args.prune_epochs,
            data,
            reuse=not args.no_reuse,
        )
        phases[f"{arch} keras-prune"] = time.perf_counter() - t0
        loads[f"{arch} keras-prune"] = load.cores()
        runs += r
        dense_pre += pre
        schedules[arch] = sched
        if "tfmot" in methods:
            harness.log(f"=== {arch}: tfmot ===")
            t0 = time.perf_counter()
            load = harness.ForeignLoad()
            tr, meta = run_tfmot_arch(
                arch,
                args.sparsities,
                seeds,
                args.epochs,
                args.prune_epochs,
                sched,
            )
            phases[f"{arch} tfmot"] = time.perf_counter() - t0
            # Includes the tfmot subprocess: it is a waited child, so its
            # CPU time counts as ours.
            loads[f"{arch} tfmot"] = load.cores()
            if tr is not None:
                runs += tr
                tf_meta[arch] = meta
    result = {
        "config": {
            "backend": keras.backend.backend(),
            "archs": args.arch,
            "methods": methods,
            "sparsities": args.sparsities,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "prune_epochs": args.prune_epochs,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "standardized": True,
            "reuse_compiled": not args.no_reuse,
            "library_support": SUPPORT,
        },
        "machine": harness.machine_info(),
        "schedules": schedules,
        "wall_seconds": time.perf_counter() - t_start,
        "phase_seconds": phases,
        "other_load_cores": load_all.cores(),
        "phase_other_load_cores": loads,
        "git": git,
        "runs": runs,
        "dense_pre": dense_pre,
        "tfmot": tf_meta,
    }
    summary = summarize(runs)
    result["summary"] = [
        {"arch": k[0], "method": k[1], "sparsity": k[2], **v}
        for k, v in summary.items()
    ]
    if json_out:
        os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
        harness.save_results("accuracy", result, json_out)
    report(result, plot_path)
    if json_out:
        print(f"JSON: {os.path.relpath(json_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
