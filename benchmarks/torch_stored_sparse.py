"""Benchmark: torch's pruned step, masked vs stored as zeros (issue 17.12).

Without `UpdatePruningStep`, torch's `fit` used to mask each pruned weight
in the forward pass (`w * mask`); since session 13 it zeroes pruned weights
in place before a step and reads them unmasked
(`keras_prune.integration.stored_sparse`). This times both, side by side in
one process, against the same dense model, with `train_on_batch` (Keras'
own `train_step`, as in `fit`):

- `dense`: ResNet50 without pruning;
- `masked`: the pruned ResNet50 (50%, no update in the timed steps) with
  `stored_sparse.unmasked` patched to return nothing (every pruned weight
  masked, as before session 13);
- `stored`: the same pruned model as it runs now.

The modes alternate round by round; each round times `--steps` steps. CPU
time of the process (`--clock cpu`, the default, with `--threads 1`) is
steadier than wall time on this shared 2-core machine.

Usage (from the repository root):

    python -m benchmarks.torch_stored_sparse [--rounds 6] [--steps 3]

Prints the best and median ms per step of each mode and the ratios of the
best rounds to dense.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import torch

    import keras_prune as kp
    from keras_prune.integration import stored_sparse

    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def build():
        keras.utils.set_random_seed(0)
        return keras.applications.ResNet50(
            weights=None, input_shape=(args.size, args.size, 3), classes=10
        )

    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.size, args.size, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    dense = build()
    pruned = kp.prune_low_magnitude(
        build(), pruning_schedule=kp.ConstantSparsity(0.5, 0, frequency=10**6)
    )
    for model in (dense, pruned):
        model.compile(
            keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy"
        )
        model.train_on_batch(x, y)  # step 0: the pruned model's update

    stored = stored_sparse.unmasked
    modes = {
        "dense": (dense, stored),
        "masked": (pruned, lambda wrapper, training: set()),
        "stored": (pruned, stored),
    }
    times = {name: [] for name in modes}
    try:
        for _ in range(args.rounds):
            for name, (model, unmasked) in modes.items():
                stored_sparse.unmasked = unmasked
                start = clock()
                for _ in range(args.steps):
                    model.train_on_batch(x, y)
                times[name].append((clock() - start) / args.steps)
    finally:
        stored_sparse.unmasked = stored
    best = {name: min(t) for name, t in times.items()}
    print(
        f"ResNet50 {args.size}x{args.size}, batch {args.batch}, "
        f"{args.threads} thread(s), {args.clock} time, {args.rounds} rounds "
        f"of {args.steps} steps"
    )
    print("| mode | best ms/step | median ms/step | best / dense |")
    print("|---|---|---|---|")
    for name, t in times.items():
        print(
            f"| {name} | {1e3 * best[name]:.1f} | "
            f"{1e3 * statistics.median(t):.1f} | "
            f"{best[name] / best['dense']:.3f} |"
        )


if __name__ == "__main__":
    main()
