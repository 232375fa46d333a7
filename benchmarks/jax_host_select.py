"""Benchmark: JAX's in-step mask select on the host vs in the graph.

Without `UpdatePruningStep`, a pruned JAX train step recomputes the masks
itself at update steps. By default the select of single weights by
magnitude runs on the host through `jax.pure_callback` under a `cond`
(`_backend.host_callback_in_step`), which keeps compile time low on models
with many kernels (ResNet50: first step 1.18x dense, against 2.30x with
the select compiled into the step). A program holding a host callback
loses JAX's C++ dispatch path and runs synchronously, which costs a fixed
time per step. This times, side by side in one process:

- `dense`: the model as built;
- `host call`: pruned (`ConstantSparsity(0.5, 0)`), no callback, default;
- `in-graph`: the same, with the select compiled into the step
  (`host_callback_in_step` patched to return False while `fit` traces the
  step).

One untimed first `fit` each (reported: compile + 1 epoch), then
`--rounds` rounds of one `--steps`-batch epoch per mode; best and median
ms per step.

Usage (from the repository root):

    python -m benchmarks.jax_host_select --model gpt2 --steps 40
    python -m benchmarks.jax_host_select --model resnet50 --steps 10
"""

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "jax"

MODES = ("dense", "host call", "in-graph")


def run(name, steps, rounds):
    from benchmarks import real_models
    from keras_prune import _backend

    x, y = real_models.data(name, steps)
    batch = real_models.BATCH[name]
    fit = dict(batch_size=batch, epochs=1, shuffle=False, verbose=0)
    default = _backend.host_callback_in_step
    models, first = {}, {}
    for mode in MODES:
        # Both pruned modes are `real_models`' "pruned" (no callback); the
        # select's place is decided when `fit` traces the step.
        model = real_models.model_for(
            name, "dense" if mode == "dense" else "pruned"
        )
        if mode == "in-graph":
            _backend.host_callback_in_step = lambda: False
        try:
            start = time.perf_counter()
            model.fit(x, y, **fit)
            first[mode] = time.perf_counter() - start
        finally:
            _backend.host_callback_in_step = default
        models[mode] = model
    times = {mode: [] for mode in MODES}
    for r in range(rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            start = time.perf_counter()
            models[mode].fit(x, y, **fit)
            times[mode].append(1e3 * (time.perf_counter() - start) / steps)
    best_dense = min(times["dense"])
    print(f"{name}, {steps} steps per epoch, {rounds} rounds")
    print("| mode | first fit s | best ms/step | best / dense | median ms |")
    print("|---|---:|---:|---:|---:|")
    for mode in MODES:
        best = min(times[mode])
        print(
            f"| {mode} | {first[mode]:.1f} | {best:.2f} | "
            f"{best / best_dense:.3f} | {statistics.median(times[mode]):.2f} |"
        )
    return times, first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="gpt2", choices=["gpt2", "gpt2_medium", "resnet50"]
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    run(args.model, args.steps, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
