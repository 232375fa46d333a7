"""Benchmark: steady-state time per epoch, dense vs pruned, same process.

Complements `train_overhead.py`, whose ratios include compilation. Here each
model first runs one untimed epoch (compilation), then `--epochs` epochs in
one timed `fit`; dense, pruned and pruned + `UpdatePruningStep` alternate
for `--repeats` rounds and the medians are compared.

Model: Dense 64-1024-1024-10 (the digits MLP of `train_overhead.py`) on
random data of 1440 samples (45 full batches of 32: no partial batch),
Adam(1e-3), `PolynomialDecay(0, 0.9, 0, 1000, frequency=100)`, so timed
epochs contain mask updates at the same rate as the digits recipe.

Usage:

    KERAS_BACKEND=jax python -m benchmarks.steady_state
"""

import argparse
import time

import keras
import numpy as np

import keras_prune


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def _seconds_per_epoch(model, x, y, epochs, callback):
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callbacks = [keras_prune.UpdatePruningStep()] if callback else []
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=callbacks)
    start = time.perf_counter()
    model.fit(
        x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks
    )
    return (time.perf_counter() - start) / epochs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.RandomState(0)
    x = rng.randn(1440, 64).astype("float32")
    y = rng.randint(0, 10, 1440)

    def pruned():
        return keras_prune.prune_low_magnitude(
            _model(),
            keras_prune.PolynomialDecay(0, 0.9, 0, 1000, frequency=100),
        )

    runs = {"dense": [], "pruned": [], "pruned + UpdatePruningStep": []}
    for _ in range(args.repeats):
        runs["dense"].append(
            _seconds_per_epoch(_model(), x, y, args.epochs, False)
        )
        runs["pruned"].append(
            _seconds_per_epoch(pruned(), x, y, args.epochs, False)
        )
        runs["pruned + UpdatePruningStep"].append(
            _seconds_per_epoch(pruned(), x, y, args.epochs, True)
        )
    dense = float(np.median(runs["dense"]))
    print(
        f"backend {keras.backend.backend()}, {args.epochs} timed epochs, "
        f"{args.repeats} rounds (median)"
    )
    for name, values in runs.items():
        median = float(np.median(values))
        print(
            f"{name:<28} {1000 * median:8.1f} ms/epoch  "
            f"{median / dense:6.3f}x  runs "
            f"{[round(1000 * v) for v in values]}"
        )


if __name__ == "__main__":
    main()
