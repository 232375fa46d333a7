"""Benchmark: dense vs shrunk (structured pruning) speed, and digits accuracy.

Run from the repository root:

    .venv/bin/python -m benchmarks.shrink                   # all backends
    .venv/bin/python -m benchmarks.shrink --backends jax --rounds 3
    .venv/bin/python -m benchmarks.shrink --no-digits

Part 1, speed. For ResNet50 and MobileNetV2 (keras.applications,
`weights=None`, `--size` x `--size` x 3 inputs, 10 classes), the dense model
and `keras_prune.shrink(model, ratio=0.5)` (half the channels of every
prunable coupled group) are timed side by side in one process, interleaved
round by round (`_common.time_interleaved`, medians): `predict_on_batch` at
batch 1 and batch 32 (compiled by Keras' predict function on every backend)
and one `train_on_batch` step (SGD, batch 32). FLOP and parameter ratios
(`keras_prune.model_flops`) are printed next to the measured time ratios.

Part 2, accuracy (digits, JAX by default). A small CNN (Conv 16 - BN - ReLU,
Conv 32 - BN - ReLU, MaxPool, Conv 32 - ReLU, GlobalAvgPool, Dense 64,
Dense 10) is trained dense, then fine-tuned under `ChannelPruning` with
`PolynomialDecay(0, s)` for s in 30/50/70%, shrunk (exact: the shrunk model
scores what the pruned one does), and compared with unstructured
`prune_low_magnitude` at the same number of non-zero weights.

Results go to `benchmarks/results/shrink.json` (commit, date, machine).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

from benchmarks import harness as _common

_common.quiet_logs()

DEFAULT_JSON = os.path.join(_common.BENCH_DIR, "results", "shrink.json")
ARCHS = ("ResNet50", "MobileNetV2")


def _speed(arch, size, rounds):
    import keras
    import numpy as np

    import keras_prune

    if keras.backend.backend() == "torch":
        # XLA (JAX, TensorFlow) flushes denormal floats to zero on CPU;
        # torch does not by default, and the untrained networks' tiny
        # activations then made a dense ResNet50 batch 4x slower here
        # (7.5 s vs 1.8 s) and the ratios depend on the weights' values.
        import torch

        torch.set_flush_denormal(True)
    keras.utils.set_random_seed(0)
    dense = getattr(keras.applications, arch)(
        weights=None, input_shape=(size, size, 3), classes=10
    )
    small = keras_prune.shrink(dense, ratio=0.5)
    rng = np.random.default_rng(0)
    x32 = rng.uniform(size=(32, size, size, 3)).astype("float32")
    x1 = x32[:1]
    y32 = keras.utils.to_categorical(rng.integers(0, 10, 32), 10)
    for m in (dense, small):
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
    fns = {}
    for tag, m in (("dense", dense), ("shrunk", small)):
        fns[f"{tag}_b1"] = lambda m=m: m.predict_on_batch(x1)
        fns[f"{tag}_b32"] = lambda m=m: m.predict_on_batch(x32)
        fns[f"{tag}_train"] = lambda m=m: m.train_on_batch(x32, y32)
    timed = _common.time_interleaved(fns, rounds, target_s=0.2, max_batch=5)
    flops = (keras_prune.model_flops(dense), keras_prune.model_flops(small))
    params = (dense.count_params(), small.count_params())
    row = {
        "arch": arch,
        "size": size,
        "flops_dense": flops[0],
        "flops_shrunk": flops[1],
        "flop_ratio": flops[1] / flops[0],
        "params_dense": params[0],
        "params_shrunk": params[1],
        "param_ratio": params[1] / params[0],
        "other_cores": timed.pop(None),
    }
    for what in ("b1", "b32", "train"):
        d = timed[f"dense_{what}"]["median_s"]
        s = timed[f"shrunk_{what}"]["median_s"]
        row[f"{what}_dense_s"] = d
        row[f"{what}_shrunk_s"] = s
        row[f"{what}_ratio"] = s / d
        row[f"{what}_runs"] = len(timed[f"dense_{what}"]["runs_s"])
    return row


def _digits_cnn():
    import keras

    L = keras.layers
    i = keras.Input((64,))
    x = L.Reshape((8, 8, 1))(i)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(x)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(x)))
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(64, activation="relu")(x)
    return keras.Model(i, L.Dense(10)(x))


def _compile(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _accuracy(model, x, y):
    import numpy as np

    logits = model.predict(x, verbose=0, batch_size=256)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _nonzero(model):
    import keras
    import numpy as np

    return int(
        sum(
            np.count_nonzero(keras.ops.convert_to_numpy(w))
            for w in model.weights
            if w.trainable
        )
    )


def _digits(epochs, prune_epochs, sparsities, rounds):
    import keras
    import numpy as np

    import keras_prune

    x_tr, y_tr, x_te, y_te = _common.digits_split(standardize=True)
    keras.utils.set_random_seed(0)
    dense = _digits_cnn()
    _compile(dense)
    dense.fit(x_tr, y_tr, batch_size=64, epochs=epochs, verbose=0)
    weights = dense.get_weights()
    steps = -(-len(x_tr) // 64) * prune_epochs
    freq = max(1, steps // (2 * prune_epochs))
    end = max(freq, int(round(0.7 * steps / freq)) * freq)
    # The dense baseline gets the same extra training budget.
    _compile(dense)
    dense.fit(x_tr, y_tr, batch_size=64, epochs=prune_epochs, verbose=0)
    rows = [
        {
            "method": "dense",
            "sparsity": 0.0,
            "accuracy": _accuracy(dense, x_te, y_te),
            "params": dense.count_params(),
            "nonzero": _nonzero(dense),
        }
    ]
    models = {"dense": dense}
    for s in sparsities:
        keras.utils.set_random_seed(0)
        model = _digits_cnn()
        model.set_weights(weights)
        _compile(model)
        pruning = keras_prune.ChannelPruning(
            keras_prune.PolynomialDecay(
                0.0, s, begin_step=0, end_step=end, frequency=freq
            )
        )
        model.fit(
            x_tr,
            y_tr,
            batch_size=64,
            epochs=prune_epochs,
            verbose=0,
            callbacks=[pruning],
        )
        small = keras_prune.shrink(model)
        acc_pruned = _accuracy(model, x_te, y_te)
        acc_small = _accuracy(small, x_te, y_te)
        n_small = small.count_params()
        rows.append(
            {
                "method": "channels+shrink",
                "sparsity": s,
                "accuracy": acc_small,
                "accuracy_pruned": acc_pruned,
                "params": n_small,
                "nonzero": _nonzero(small),
                "flop_ratio": keras_prune.model_flops(small)
                / keras_prune.model_flops(dense),
            }
        )
        models[f"shrunk_{s}"] = small
        # Unstructured at the same number of non-zero weights.
        keras.utils.set_random_seed(0)
        base = _digits_cnn()
        base.set_weights(weights)
        prunable = sum(
            int(np.prod(w.shape))
            for layer in base.layers
            for w in getattr(layer, "weights", [])[:1]
            if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)
        )
        target = (
            1.0
            - max(0.0, _nonzero(small) - (_nonzero(dense) - prunable))
            / prunable
        )
        target = float(min(max(target, 0.0), 0.99))
        pruned = keras_prune.prune_low_magnitude(
            base,
            pruning_schedule=keras_prune.PolynomialDecay(
                0.0, target, begin_step=0, end_step=end, frequency=freq
            ),
        )
        _compile(pruned)
        pruned.fit(
            x_tr,
            y_tr,
            batch_size=64,
            epochs=prune_epochs,
            verbose=0,
            callbacks=[keras_prune.UpdatePruningStep()],
        )
        stripped = keras_prune.strip_pruning(pruned)
        rows.append(
            {
                "method": "unstructured",
                "sparsity": target,
                "matched_to": s,
                "accuracy": _accuracy(stripped, x_te, y_te),
                "params": stripped.count_params(),
                "nonzero": _nonzero(stripped),
            }
        )
    rng = np.random.default_rng(0)
    x1 = x_te[:1]
    x32 = x_te[:32]
    fns = {}
    for name, m in models.items():
        fns[f"{name}|b1"] = lambda m=m: m.predict_on_batch(x1)
        fns[f"{name}|b32"] = lambda m=m: m.predict_on_batch(x32)
    _ = rng
    timed = _common.time_interleaved(fns, rounds, target_s=0.05)
    timed.pop(None)
    latency = {k: v["median_s"] for k, v in timed.items()}
    for row in rows:
        key = (
            "dense"
            if row["method"] != "channels+shrink"
            else (f"shrunk_{row['sparsity']}")
        )
        row["b1_s"] = latency[f"{key}|b1"]
        row["b32_s"] = latency[f"{key}|b32"]
    return rows


def child(args):
    import keras

    out = {"backend": keras.backend.backend(), "speed": [], "digits": None}
    for arch in args.archs:
        print(f"[{out['backend']}] {arch} ...", file=sys.stderr, flush=True)
        out["speed"].append(_speed(arch, args.size, args.rounds))
    if args.digits:
        print(f"[{out['backend']}] digits ...", file=sys.stderr, flush=True)
        out["digits"] = _digits(
            args.epochs, args.prune_epochs, args.sparsities, args.rounds
        )
    with open(args.json_out, "w") as f:
        json.dump(out, f, indent=1)


def _commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=_common.REPO_ROOT,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def print_results(results):
    print(
        f"{'backend':11} {'arch':12} {'FLOPs':>6} {'params':>6} "
        f"{'b1':>6} {'b32':>6} {'train':>6}  (shrunk / dense)"
    )
    for r in results:
        for s in r["speed"]:
            print(
                f"{r['backend']:11} {s['arch']:12} {s['flop_ratio']:6.3f} "
                f"{s['param_ratio']:6.3f} {s['b1_ratio']:6.3f} "
                f"{s['b32_ratio']:6.3f} {s['train_ratio']:6.3f}"
            )
    for r in results:
        if not r.get("digits"):
            continue
        print(
            f"\ndigits ({r['backend']}): method, sparsity, accuracy, "
            "params, non-zero, latency b1 / b32 (ms)"
        )
        for d in r["digits"]:
            print(
                f"  {d['method']:16} {d['sparsity']:.3f} "
                f"{d['accuracy']:.4f} {d['params']:7d} {d['nonzero']:7d} "
                f"{1e3 * d['b1_s']:7.3f} {1e3 * d['b32_s']:7.3f}"
            )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", nargs="+", default=list(_common.BACKENDS))
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--digits-backends", nargs="*", default=["jax"])
    p.add_argument("--no-digits", action="store_true")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--prune-epochs", type=int, default=10)
    p.add_argument(
        "--sparsities", type=float, nargs="+", default=[0.3, 0.5, 0.7]
    )
    p.add_argument("--json", default=DEFAULT_JSON)
    p.add_argument("--from-json", default=None)
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="child JSON files (one per backend) to combine into "
        "--json instead of running",
    )
    p.add_argument("--child", action="store_true")
    p.add_argument("--digits", action="store_true")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.from_json:
        with open(args.from_json) as f:
            print_results(json.load(f)["results"])
        return 0
    if args.merge:
        results = []
        for path in args.merge:
            with open(path) as f:
                results.append(json.load(f))
        _write(args, results)
        return 0
    results = []
    for backend in args.backends:
        digits = not args.no_digits and backend in args.digits_backends
        options = {
            "size": args.size,
            "rounds": args.rounds,
            "epochs": args.epochs,
            "prune_epochs": args.prune_epochs,
        }
        argv_child = _common.child_argv(__spec__ or __file__, options)
        argv_child += ["--archs", *args.archs]
        argv_child += ["--sparsities", *map(str, args.sparsities)]
        if digits:
            argv_child.append("--digits")
        results.append(
            _common.run_child(
                argv_child, {"KERAS_BACKEND": backend}, label=backend
            )
        )
        _write(args, results, quiet=True)  # partial results survive
    _write(args, results)
    return 0


def _write(args, results, quiet=False):
    info = _common.machine_info()
    obj = {
        "benchmark": "shrink",
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": info,
        "machine_text": _common.format_machine(info),
        "argv": sys.argv[1:],
        "results": results,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    _common.write_json(args.json, obj)
    if not quiet:
        print_results(results)
        print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
