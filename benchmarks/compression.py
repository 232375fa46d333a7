"""File sizes of pruned models: .keras, gzip, tfmot's recipe, keras-prune.

For the digits MLP (Dense 64-1024-1024-10) and a small CNN (Conv2D 16/32 on
8x8x1, Dense 64, Dense 10), trained dense, then pruned with keras-prune to
50/80/90/95/99% (PolynomialDecay over the first 70% of the pruning epochs)
and stripped, this measures:

- `dense .keras`: the dense float32 model saved without optimizer state
  (the reference every ratio divides);
- `gzip`: that file, gzip -9;
- `strip+gzip`: the pruned, stripped model's .keras file, gzip -9 (tfmot's
  recipe, applied to our model);
- `tfmot`: tfmot 0.8.1's own run of that recipe on its own MLP
  (`run_tfmot("compress", ...)`, one-shot pruned, Keras 2 `.keras`): its
  gzip ratio dense/pruned, in the same run (MLP only: tfmot's task has no
  CNN);
- `ours`: `keras_prune.save_compressed` of the stripped model (lossless:
  the loaded model's predictions are checked to be bit-identical);
- `ours+int8`: the same after `model.quantize("int8")` (Dense kernels
  int8 + per-channel scale; the CNN's convolutions stay float32);
- `bound`: the information bound, `dense .keras` size divided by
  sum over weights of (32 bits x density + H(sparsity) bits) for pruned
  kernels and 32 bits for every other weight: what a coder storing
  incompressible float32 values and a perfectly coded i.i.d. mask would
  reach.

Run: `KERAS_BACKEND=jax .venv/bin/python -m benchmarks.compression`
(`--quick` for a smoke run). Writes `benchmarks/results/compression.json`,
`docs/images/compression.png` and prints a markdown table.
"""

import argparse
import gzip
import io
import json
import math
import os
import sys
import tempfile
import time

import keras
import numpy as np

import keras_prune
from benchmarks import harness

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)


def build_model(arch):
    L = keras.layers
    if arch == "mlp":
        layers = [
            L.Dense(1024, activation="relu", name="dense1"),
            L.Dense(1024, activation="relu", name="dense2"),
            L.Dense(10, name="logits"),
        ]
    else:
        layers = [
            L.Reshape((8, 8, 1), name="reshape"),
            L.Conv2D(16, 3, activation="relu", padding="same", name="conv1"),
            L.Conv2D(32, 3, activation="relu", padding="same", name="conv2"),
            L.MaxPooling2D(name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="fc"),
            L.Dense(10, name="logits"),
        ]
    return keras.Sequential([keras.Input((64,))] + layers, name=arch)


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def uncompiled_copy(model):
    copy = build_model(model.name)
    copy.set_weights(model.get_weights())
    return copy


def keras_bytes(model):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def entropy_bits(p):
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def bound_bytes(model, value_bits=32, pruned_names=("kernel",)):
    """Information bound of the model's weights (see module docstring)."""
    bits = 0.0
    for v in model.weights:
        w = np.asarray(keras.ops.convert_to_numpy(v))
        name = v.name
        if name in pruned_names and w.ndim >= 2:
            s = float(np.mean(w == 0))
            bits += w.size * (value_bits * (1 - s) + entropy_bits(s))
        else:
            bits += w.size * np.dtype(w.dtype).itemsize * 8
    return bits / 8


def prune(dense, sparsity, x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = uncompiled_copy(dense)
    steps = -(-len(x) // 32) * epochs
    end = max(1, int(0.7 * steps))
    pruned = keras_prune.prune_low_magnitude(
        model,
        pruning_schedule=keras_prune.PolynomialDecay(
            0.0, sparsity, 0, end, frequency=max(1, end // 10)
        ),
    )
    compile_model(pruned)
    pruned.fit(
        x,
        y,
        batch_size=32,
        epochs=epochs,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    return uncompiled_copy(keras_prune.strip_pruning(pruned))


def measure(arch, dense, sparsity, data, args, tfmot):
    x_train, y_train, x_test, y_test = data
    t0 = time.perf_counter()
    final = prune(
        dense, sparsity, x_train, y_train, args.prune_epochs, args.seed
    )
    fit_s = time.perf_counter() - t0
    dense_keras = keras_bytes(dense)
    pruned_keras = keras_bytes(final)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    ours = keras_prune.save_compressed(final, buf)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = keras_prune.load_compressed(buf.getvalue())
    load_s = time.perf_counter() - t0
    same = bool(
        np.array_equal(
            final.predict(x_test, verbose=0), loaded.predict(x_test, verbose=0)
        )
    )
    assert same, "compressed round trip changed the predictions"
    kernel_sparsity = {
        v.path: float(np.mean(keras.ops.convert_to_numpy(v) == 0))
        for v in final.weights
        if v.name == "kernel"
    }
    acc = accuracy(final, x_test, y_test)
    quant = uncompiled_copy(final)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant.quantize("int8")
    zeros_kept = all(
        np.array_equal(
            keras.ops.convert_to_numpy(getattr(q, "_kernel", q.kernel)) == 0,
            keras.ops.convert_to_numpy(f.kernel) == 0,
        )
        for q, f in zip(quant.layers, final.layers)
        if getattr(q, "quantization_mode", None) == "int8"
    )
    ours_int8 = keras_prune.save_compressed(quant, io.BytesIO())
    bound = bound_bytes(final)
    header, offsets = keras_prune.export.compress._parse(
        buf.getvalue(), "bench", None
    )
    tensor_bytes = sum(e["size"] for e in header["tensors"])
    row = {
        "arch": arch,
        "sparsity": sparsity,
        "kernel_sparsity": kernel_sparsity,
        "accuracy": acc,
        "int8_accuracy": accuracy(quant, x_test, y_test),
        "dense_keras": len(dense_keras),
        "dense_keras_gzip": len(gzip.compress(dense_keras, 9, mtime=0)),
        "pruned_keras": len(pruned_keras),
        "pruned_keras_gzip": len(gzip.compress(pruned_keras, 9, mtime=0)),
        "ours": ours,
        "ours_int8": ours_int8,
        "ours_tensor_bytes": tensor_bytes,
        "overhead_bytes": ours - tensor_bytes,
        "bound_bytes": bound,
        "int8_zeros_kept": bool(zeros_kept),
        "bit_identical": same,
        "prune_fit_seconds": fit_s,
        "save_seconds": save_s,
        "load_seconds": load_s,
    }
    d = row["dense_keras"]
    row.update(
        ratio_gzip=d / row["dense_keras_gzip"],
        ratio_strip_gzip=d / row["pruned_keras_gzip"],
        ratio_ours=d / ours,
        ratio_ours_int8=d / ours_int8,
        ratio_bound=d / bound,
        ours_vs_bound=bound / ours,
        tensors_vs_bound=bound / tensor_bytes,
    )
    if tfmot is not None:
        row["tfmot"] = tfmot
        row["ratio_tfmot"] = (
            tfmot["dense_bytes"]["keras"] / tfmot["pruned_bytes"]["keras_gzip"]
        )
    return row


def run_tfmot(sparsity, args):
    from benchmarks.tfmot_env import run_tfmot as _run

    try:
        r = _run(
            "compress",
            sparsity=sparsity,
            epochs=args.epochs,
            seed=args.seed,
            timeout=1800,
        )
    except RuntimeError as e:
        print(f"tfmot unavailable: {e}", file=sys.stderr)
        return None
    return {
        k: r[k]
        for k in (
            "dense_bytes",
            "pruned_bytes",
            "method",
            "kernel_sparsity",
            "pruned_accuracy",
        )
    }


def markdown(rows):
    head = (
        "| model | sparsity | acc | dense .keras | gzip | strip+gzip "
        "| tfmot strip+gzip | ours | ours+int8 | bound | ours / bound "
        "| tensors / bound |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        tf = f"{r['ratio_tfmot']:.2f}x" if "ratio_tfmot" in r else "n/a"
        lines.append(
            f"| {r['arch']} | {r['sparsity']:.0%} | {r['accuracy']:.3f} "
            f"| {r['dense_keras']:,} B | {r['ratio_gzip']:.2f}x "
            f"| {r['ratio_strip_gzip']:.2f}x | {tf} "
            f"| {r['ratio_ours']:.2f}x ({r['ours']:,} B) "
            f"| {r['ratio_ours_int8']:.2f}x ({r['ours_int8']:,} B) "
            f"| {r['ratio_bound']:.2f}x | {r['ours_vs_bound']:.3f} "
            f"| {r['tensors_vs_bound']:.3f} |"
        )
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    archs = sorted({r["arch"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(
        1, len(archs), figsize=(5.2 * len(archs), 3.8), dpi=110, squeeze=False
    )
    series = [
        ("ratio_bound", "information bound (float32)", "k--"),
        ("ratio_ours_int8", "ours + int8", "C3-o"),
        ("ratio_ours", "ours (lossless)", "C0-o"),
        ("ratio_tfmot", "tfmot strip+gzip (its MLP)", "C2-^"),
        ("ratio_strip_gzip", "strip + gzip (.keras)", "C1-s"),
        ("ratio_gzip", "gzip of dense .keras", "C7-x"),
    ]
    for ax, arch in zip(axes[0], archs):
        rs = [r for r in rows if r["arch"] == arch]
        xs = [r["sparsity"] * 100 for r in rs]
        for key, label, style in series:
            if all(key in r for r in rs):
                ax.plot(xs, [r[key] for r in rs], style, label=label, ms=4)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(
            matplotlib.ticker.FormatStrFormatter("%gx")
        )
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(xs)
        ax.set_xlabel("sparsity of every kernel (%)")
        ax.set_ylabel("x smaller than dense float32 .keras")
        ax.set_title(
            f"{arch}: {rs[0]['dense_keras']:,} B dense .keras", fontsize=9
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=20, help="dense training epochs"
    )
    parser.add_argument("--prune-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archs", nargs="*", default=["mlp", "cnn"])
    parser.add_argument(
        "--sparsities", nargs="*", type=float, default=list(SPARSITIES)
    )
    parser.add_argument("--no-tfmot", action="store_true")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw the plot from the --out JSON",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 + 2 epochs, 90%% only, no tfmot"
    )
    parser.add_argument("--out", default=harness.results_path("compression"))
    parser.add_argument(
        "--plot",
        default=os.path.join(
            harness.REPO_ROOT, "docs", "images", "compression.png"
        ),
    )
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.out) as f:
            rows = json.load(f)["rows"]
        plot(rows, args.plot)
        print(markdown(rows))
        return 0
    if args.quick:
        args.epochs, args.prune_epochs, args.no_tfmot = 2, 2, True
        args.sparsities = [0.9]
    data = harness.digits_split()
    rows = []
    for arch in args.archs:
        keras.utils.set_random_seed(args.seed)
        dense = build_model(arch)
        compile_model(dense)
        dense.fit(
            data[0], data[1], batch_size=32, epochs=args.epochs, verbose=0
        )
        dense = uncompiled_copy(dense)
        print(
            f"{arch}: dense accuracy {accuracy(dense, data[2], data[3]):.3f}",
            flush=True,
        )
        for s in args.sparsities:
            tfmot = None
            if arch == "mlp" and not args.no_tfmot:
                tfmot = run_tfmot(s, args)
            row = measure(arch, dense, s, data, args, tfmot)
            rows.append(row)
            print(
                f"  {s:.0%}: ours {row['ratio_ours']:.2f}x (bound "
                f"{row['ratio_bound']:.2f}x, {row['ours_vs_bound']:.3f}), "
                f"int8 {row['ratio_ours_int8']:.2f}x, strip+gzip "
                f"{row['ratio_strip_gzip']:.2f}x",
                flush=True,
            )
    result = {
        "machine": harness.machine_info(),
        "backend": keras.backend.backend(),
        "args": vars(args),
        "rows": rows,
    }
    harness.save_results("compression", result, args.out)
    if args.plot and len(args.sparsities) > 1:
        os.makedirs(os.path.dirname(args.plot), exist_ok=True)
        plot(rows, args.plot)
    print()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
