"""What keeping pruned weights at zero costs a dense step (issue 17.12).

With `UpdatePruningStep`, `fit` trains the pruned model's layers unmasked
and Keras applies each pruned weight's constraint, `where(mask, w, 0)`,
after every optimizer update (`host_updates.ZeroPruned`): one pass over
every pruned weight per step. This measures, side by side in one process,
ResNet50 (`benchmarks.real_models`' setting: 32x32 inputs, batch 16, Adam):

- `dense`: the model as built;
- `dense+where`: the same dense model with that constraint on the same
  kernels (all-True masks: nothing is zeroed, the pass is the same);
- `dense+where+hooks`: that, plus a callback with empty batch hooks (a
  callback with batch hooks makes `fit` wait for each step's logs);
- `pruned+callback`: `prune_low_magnitude` at 0.5 with `UpdatePruningStep`.

If `pruned+callback` costs what `dense+where+hooks` does, the constraint
pass and the per-batch hooks are the whole difference from dense.

    KERAS_BACKEND=tensorflow python -m benchmarks.zeroing_floor
"""

import argparse
import statistics
import time

import numpy as np

from benchmarks import harness

harness.quiet_logs()


class _Where:
    """`where(mask, w, 0)`, as `ZeroPruned` computes it (no zeroing here:
    the masks are all True)."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, w):
        from keras_prune import _backend

        return _backend.zero_pruned(w, self.mask.value)


def _batch_hooks():
    import keras

    class BatchHooks(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            pass

        def on_train_batch_end(self, batch, logs=None):
            pass

    return BatchHooks()


def _model(mode):
    import keras

    import keras_prune
    from benchmarks import real_models

    model = real_models.build("resnet50")
    callbacks = []
    if mode == "pruned+callback":
        model = keras_prune.prune_low_magnitude(
            model, keras_prune.ConstantSparsity(0.5, 0)
        )
        callbacks = [keras_prune.UpdatePruningStep()]
    elif mode in ("dense+where", "dense+where+hooks"):
        for layer in model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None and len(kernel.shape) >= 2:
                mask = keras.Variable(
                    np.ones(kernel.shape, bool), trainable=False, dtype="bool"
                )
                kernel.constraint = _Where(mask)  # holds the mask
        if mode == "dense+where+hooks":
            callbacks = [_batch_hooks()]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, callbacks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="batches per epoch")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds")
    args = p.parse_args(argv)
    from benchmarks import real_models

    x, y = real_models.data("resnet50", args.steps)
    modes = ("dense", "dense+where", "dense+where+hooks", "pruned+callback")
    built = {m: _model(m) for m in modes}
    fit_args = harness.fit_data(x, y, 16)
    for model, callbacks in built.values():  # compile: untimed
        model.fit(**fit_args, epochs=1, verbose=0, callbacks=callbacks)
    times = {m: [] for m in modes}
    for r in range(args.repeats):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for m in order:
            model, callbacks = built[m]
            t0 = time.perf_counter()
            model.fit(
                **fit_args,
                epochs=1,
                verbose=0,
                callbacks=callbacks,
            )
            times[m].append((time.perf_counter() - t0) / args.steps * 1e3)
    dense = statistics.median(times["dense"])
    best = min(times["dense"])
    for m in modes:
        med = statistics.median(times[m])
        print(
            f"{m:<16} median {med:7.1f} ms/step ({med / dense:.3f}x), "
            f"best {min(times[m]):7.1f} ({min(times[m]) / best:.3f}x)"
        )


if __name__ == "__main__":
    main()
