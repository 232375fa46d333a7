"""End-to-end demo: train dense on digits, prune to 90%, strip, save.

Uses scikit-learn's `load_digits` (ships with the package: no download).
Run with `make demo` or `python -m keras_prune.demo --out out/demo`.
"""

import argparse
import gzip
import os
import time

import keras

import keras_prune
from keras_prune._files import atomic_output
from keras_prune.monitoring import explain

#: The files `main` writes into `--out` (the CLI checks them first).
OUTPUTS = ("schedule.png", "dense.keras", "pruned_stripped.keras", "pruned.kpz")


def load_digits_split():
    """Digits, scaled to [0, 1], stratified 80/20 split with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def build_mlp(units=512):
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(units, activation="relu", name="dense_1"),
            keras.layers.Dense(units, activation="relu", name="dense_2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_mlp",
    )


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _sizes(path):
    raw = os.path.getsize(path)
    with open(path, "rb") as f:
        gz = len(gzip.compress(f.read(), compresslevel=9))
    return raw, gz


def _without_optimizer(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--prune-epochs", type=int, default=20)
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = load_digits_split()
    print(
        f"backend: {keras.backend.backend()}  keras {keras.__version__}  "
        f"digits: {len(x_train)} train / {len(x_test)} test"
    )

    dense = build_mlp()
    _compile(dense)
    t0 = time.perf_counter()
    dense.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0)
    dense_acc = dense.evaluate(x_test, y_test, verbose=0)[1]
    print(
        f"dense:  test accuracy {dense_acc:.4f} "
        f"({args.epochs} epochs, {time.perf_counter() - t0:.1f} s)"
    )

    steps = -(-len(x_train) // 32) * args.prune_epochs
    schedule = keras_prune.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=args.sparsity,
        # end_step on a multiple of `frequency`, so the last update reaches
        # exactly final_sparsity (tfmot's tutorial misses it: 0.799958).
        begin_step=0,
        end_step=int(0.7 * steps) // 50 * 50,
        frequency=50,
    )
    explain.plot_schedule(
        schedule, os.path.join(args.out, "schedule.png"), stop=steps
    )
    pruned = keras_prune.prune_low_magnitude(dense, pruning_schedule=schedule)
    _compile(pruned)
    t0 = time.perf_counter()
    pruned.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.prune_epochs,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    final = keras_prune.strip_pruning(pruned)
    _compile(final)
    pruned_acc = final.evaluate(x_test, y_test, verbose=0)[1]
    print(
        f"pruned: test accuracy {pruned_acc:.4f} "
        f"({args.prune_epochs} epochs with pruning, "
        f"{time.perf_counter() - t0:.1f} s, {steps} steps)"
    )
    print()
    print(explain.format_report(explain.sparsity_report(final)))

    dense_path = os.path.join(args.out, "dense.keras")
    final_path = os.path.join(args.out, "pruned_stripped.keras")
    # Both files without optimizer state, so sizes compare weights only.
    with atomic_output(dense_path) as tmp:
        _without_optimizer(dense).save(tmp)
    with atomic_output(final_path) as tmp:
        final.save(tmp)
    (d_raw, d_gz), (p_raw, p_gz) = _sizes(dense_path), _sizes(final_path)
    print()
    print(f"{'file':<22} {'bytes':>10} {'gzip -9':>10}")
    print(f"{'dense.keras':<22} {d_raw:>10} {d_gz:>10}")
    print(
        f"{'pruned_stripped.keras':<22} {p_raw:>10} {p_gz:>10}  "
        f"({d_gz / p_gz:.2f}x smaller gzipped)"
    )
    compressed_path = os.path.join(args.out, "pruned.kpz")
    c_raw = keras_prune.save_compressed(final, compressed_path)
    print(
        f"{'pruned.kpz':<22} {c_raw:>10} {'':>10}  "
        f"({d_raw / c_raw:.2f}x smaller than dense.keras; "
        "keras_prune.save_compressed)"
    )
    print(f"\nschedule plot: {os.path.join(args.out, 'schedule.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
