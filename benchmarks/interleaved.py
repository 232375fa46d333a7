"""Benchmark: dense and pruned `fit` interleaved epoch by epoch, one process.

The recipe of `train_overhead.py` (digits, MLP 64-1024-1024-10, Adam 1e-3,
batch 32, `PolynomialDecay(0, 0.9, 0, end, frequency=100)` with
`UpdatePruningStep`, then `strip_pruning`), but the two models train side
by side: epochs e to e + chunk of the dense model, then the same epochs of
the pruned one (the order flips every call), each a `fit(...,
initial_epoch=e, epochs=e + chunk)` call, timed (`--chunk`, default 1).
Each model's training time is the sum of its calls (compilation in the
first included).

Why: this 2-core machine has bursts of several seconds at about half speed
that no load counter shows, so two whole fits run a few seconds apart can
differ by 1.5x with nothing changed (measured: the same dense torch fit
took 15.6 to 26.1 s). Calls a fraction of a second apart mostly see the same
machine, so the median of the per-call ratios is steadier than whole-fit
medians (it is not immune: a burst can still hit one side of a pair).

The pruned model pays more than in one `fit`: `UpdatePruningStep` enters and
leaves its host-update mode in every call (`apply_masks` and a train-step
swap: measured 4.2 ms on JAX, 3.9 ms on torch, 7.5 ms on TensorFlow for
this model), once per call instead of once per training.

Usage:

    KERAS_BACKEND=jax python -m benchmarks.interleaved --repeats 3
    python -m benchmarks.interleaved --all-backends --json-out out.json
"""

import argparse
import math
import statistics
import sys
import time

import numpy as np

from benchmarks import harness
from benchmarks import train_overhead as recipe


def _compiled(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(recipe.LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def one_pair(data, init_weights, epochs, seed, chunk=1):
    """Trains a dense and a pruned model, interleaved; returns the timings."""
    import keras

    import keras_prune

    x_train, y_train, x_test, y_test = data
    keras.utils.clear_session()
    total_steps = math.ceil(len(x_train) / recipe.BATCH_SIZE) * epochs
    schedule = recipe.schedule_for(total_steps)
    models = {}
    for mode in ("dense", "pruned"):
        model = recipe.build_model()
        model.set_weights(init_weights)
        if mode == "pruned":
            model = keras_prune.prune_low_magnitude(model, schedule)
        models[mode] = _compiled(model)
    callbacks = {"dense": [], "pruned": [keras_prune.UpdatePruningStep()]}
    seconds = {"dense": [], "pruned": []}
    for i, epoch in enumerate(range(0, epochs, chunk)):
        order = ("dense", "pruned") if i % 2 == 0 else ("pruned", "dense")
        for mode in order:
            # The same shuffling for both models in every call.
            keras.utils.set_random_seed(seed + epoch)
            t0 = time.perf_counter()
            models[mode].fit(
                x_train,
                y_train,
                batch_size=recipe.BATCH_SIZE,
                initial_epoch=epoch,
                epochs=min(epoch + chunk, epochs),
                shuffle=True,
                verbose=0,
                callbacks=callbacks[mode],
            )
            seconds[mode].append(time.perf_counter() - t0)
    last = recipe.last_update(schedule, total_steps)
    stripped = keras_prune.strip_pruning(models["pruned"])
    accuracy = {}
    for mode, model in (("dense", models["dense"]), ("pruned", stripped)):
        logits = model.predict(x_test, batch_size=256, verbose=0)
        accuracy[mode] = float(np.mean(np.argmax(logits, -1) == y_test))
    return {
        "epochs": epochs,
        "chunk": chunk,
        "epoch_seconds": seconds,
        "test_accuracy": accuracy,
        "last_update": last,
        "kernels": recipe.kernel_report(stripped, last[1]),
    }


def run_backend(epochs, repeats, seed, chunk=1):
    import keras

    backend = keras.backend.backend()
    data = harness.digits_split()
    keras.utils.set_random_seed(seed)
    init_weights = recipe.build_model().get_weights()
    pairs = []
    for r in range(repeats):
        pair = one_pair(data, init_weights, epochs, seed, chunk)
        pairs.append(pair)
        s = summarize_pair(pair)
        harness.log(
            f"{backend} pair {r}: dense {s['dense_s']:.1f} s, pruned "
            f"{s['pruned_s']:.1f} s ({s['ratio']:.3f}x), median epoch ratio "
            f"{s['median_epoch_ratio']:.3f}"
        )
    return {"backend": backend, "pairs": pairs}


def summarize_pair(pair):
    d = np.asarray(pair["epoch_seconds"]["dense"])
    p = np.asarray(pair["epoch_seconds"]["pruned"])
    ratios = p / d
    return {
        "dense_s": float(d.sum()),
        "pruned_s": float(p.sum()),
        "ratio": float(p.sum() / d.sum()),
        "median_epoch_ratio": float(np.median(ratios)),
        "quartiles_epoch_ratio": [
            float(np.percentile(ratios, 25)),
            float(np.percentile(ratios, 75)),
        ],
        "first_epoch_s": (float(d[0]), float(p[0])),
    }


HEADERS = (
    "backend",
    "pairs x epochs (per call)",
    "dense s (sum of epochs)",
    "pruned s",
    "pruned / dense",
    "median per-call ratio (quartiles)",
    "1st epoch s (dense / pruned)",
    "dense acc %",
    "pruned acc %",
    "kept == kept_count(n, 0.9)",
)


def table(results):
    rows = []
    for result in results:
        pairs = result["pairs"]
        sums = [summarize_pair(p) for p in pairs]
        ratios = np.concatenate(
            [
                np.asarray(p["epoch_seconds"]["pruned"])
                / np.asarray(p["epoch_seconds"]["dense"])
                for p in pairs
            ]
        )
        med = statistics.median
        kernels = pairs[-1]["kernels"]
        exact = all(k["kept"] == k["kept_count_0.9"] for k in kernels.values())
        rows.append(
            (
                result["backend"],
                f"{len(pairs)} x {pairs[0]['epochs']} "
                f"({pairs[0].get('chunk', 1)})",
                " / ".join(f"{s['dense_s']:.1f}" for s in sums),
                " / ".join(f"{s['pruned_s']:.1f}" for s in sums),
                " / ".join(f"{s['ratio']:.3f}" for s in sums),
                f"{np.median(ratios):.3f} ({np.percentile(ratios, 25):.3f}"
                f"-{np.percentile(ratios, 75):.3f})",
                f"{med([s['first_epoch_s'][0] for s in sums]):.2f} / "
                f"{med([s['first_epoch_s'][1] for s in sums]):.2f}",
                " / ".join(
                    f"{100 * p['test_accuracy']['dense']:.2f}" for p in pairs
                ),
                " / ".join(
                    f"{100 * p['test_accuracy']['pruned']:.2f}" for p in pairs
                ),
                "yes" if exact else "NO",
            )
        )
    return harness.markdown_table(HEADERS, rows)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2, help="interleaved pairs")
    p.add_argument(
        "--chunk",
        type=int,
        default=1,
        help="epochs per fit call (fewer calls: less per-call overhead)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all-backends", action="store_true")
    p.add_argument("--backends", nargs="+", default=list(harness.BACKENDS))
    p.add_argument("--json-out", help="also write the results here")
    p.add_argument("--from-json", nargs="+", help="tables of earlier runs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The schedule ends on a multiple of the frequency: the last update
    # reaches 0.9 exactly (as `train_overhead.py --align-end-step`).
    recipe.ALIGN_END_STEP = True
    if args.child:
        result = run_backend(args.epochs, args.repeats, args.seed, args.chunk)
        harness.write_json(args.json_out, result)
        return 0
    results = []
    if args.from_json:
        results = harness.load_results(args.from_json)
    elif args.all_backends:
        for b in args.backends:
            harness.log(f"=== backend {b}, {args.epochs} epochs ===")
            child = harness.child_argv(
                harness.module_name(__spec__ or __file__),
                {
                    "epochs": args.epochs,
                    "repeats": args.repeats,
                    "seed": args.seed,
                    "chunk": args.chunk,
                },
            )
            results.append(
                harness.run_child(child, {"KERAS_BACKEND": b}, label=b)
            )
            if args.json_out:
                harness.write_json(args.json_out, {"results": results})
    else:
        results.append(
            run_backend(args.epochs, args.repeats, args.seed, args.chunk)
        )
    print(f"Machine: {harness.format_machine(harness.machine_info())}\n")
    print(table(results))
    if not args.from_json:
        harness.save_results("interleaved", {"results": results}, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
