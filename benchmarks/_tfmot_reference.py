"""tfmot reference measurements. Runs INSIDE the tfmot virtual environment.

Do not import this module from the main environment: it needs TensorFlow,
`tf_keras` (Keras 2) and `tensorflow_model_optimization` 0.8.1. Use
`benchmarks.tfmot_env.run_tfmot(task, **kwargs)` instead, which creates the
environment and runs this file as

```
python benchmarks/_tfmot_reference.py TASK '{"json": "arguments"}'
```

The result of the task is printed as one JSON object on the last stdout line.

Tasks (see each function's docstring for its arguments):

- `train_overhead`: wall time of `fit` for a dense and a tfmot-pruned MLP.
- `accuracy`: dense pre-training then tfmot pruning, test accuracy of both.
- `accuracy_sweep`: the same for several sparsities and seeds at once.
- `mask_sort`: time of one tfmot-style mask update on a large tensor.
- `compress`: gzip size of dense vs. one-shot-pruned `.h5` / `.keras` files.

All tasks share one data set, `load_digits_split()`, which our own
benchmarks must reproduce exactly.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

BATCH_SIZE = 32
LEARNING_RATE = 1e-3
# tfmot's default mask update frequency, in training steps.
DEFAULT_FREQUENCY = 100


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def versions():
    """Versions of everything that can influence the measurements.

    Returns:
        A dict of version strings.
    """
    import sklearn

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "tfmot": tfmot.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "cpu_count": os.cpu_count(),
    }


def load_digits_split():
    """The digits data set and its fixed train/test split.

    The split is exactly:

    ```python
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")        # pixel values 0..16 -> 0..1
    y = y.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    ```

    which gives 1437 training and 360 test samples (a stratified shuffle,
    i.e. NOT simply the first 1437 rows of `load_digits`). The split does not
    depend on the task seed; the seed only affects weight initialisation and
    batch shuffling.

    Returns:
        A tuple `(x_train, y_train, x_test, y_test)` of NumPy arrays:
        float32 features of shape `(n, 64)` and int64 labels.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    y = y.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    return x_train, y_train, x_test, y_test


def build_model(arch):
    """Build an uncompiled digits classifier with named layers.

    Args:
        arch: `"mlp"` for Dense 64-1024-1024-10 (relu, relu, logits), or
            `"cnn"` for Reshape(8, 8, 1), Conv2D(16, 3, relu, same),
            Conv2D(32, 3, relu, same), MaxPool2D, Flatten, Dense(64, relu),
            Dense(10) logits.

    Returns:
        A `tf_keras.Sequential` model producing logits.
    """
    L = tf_keras.layers
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
    return tf_keras.Sequential([tf_keras.Input(shape=(64,))] + layers)


def compile_model(model):
    model.compile(
        optimizer=tf_keras.optimizers.Adam(LEARNING_RATE),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def kernel_sparsity(model):
    """Fraction of exact zeros in each layer kernel, keyed by layer name."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # unwrap a pruning wrapper
        kernel = getattr(inner, "kernel", None)
        if kernel is not None:
            k = kernel.numpy()
            out[inner.name] = float(np.mean(k == 0))
    return out


def steps_per_epoch(n):
    return math.ceil(n / BATCH_SIZE)


def polynomial_schedule(sparsity, total_steps, frequency):
    """tfmot PolynomialDecay from 0 to `sparsity`, ending at 70% of training."""
    # begin == end would make tfmot divide 0 by 0, hence the max(1, ...).
    end_step = max(1, int(0.7 * total_steps))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )
    return schedule, end_step


class _EpochTimer(tf_keras.callbacks.Callback):
    """Records the wall time of every epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_begin(self, logs=None):
        self.epoch_seconds = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._t0)


def timed_fit(model, x, y, epochs, callbacks=()):
    """Run `fit` and time it. Returns (fit seconds, per-epoch seconds)."""
    timer = _EpochTimer()
    t0 = time.perf_counter()
    model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=list(callbacks) + [timer],
    )
    return time.perf_counter() - t0, timer.epoch_seconds


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


def task_train_overhead(
    mode="dense", epochs=40, seed=0, sparsity=0.9, frequency=DEFAULT_FREQUENCY
):
    """Wall time of `fit` for the digits MLP, dense or tfmot-pruned.

    Model: Dense 64-1024-1024-10 (relu, relu, logits), Adam(1e-3),
    SparseCategoricalCrossentropy(from_logits=True), batch size 32, on the
    split of `load_digits_split()`.

    In `"pruned"` mode the model is wrapped with
    `prune_low_magnitude(model, PolynomialDecay(0.0, sparsity, 0,
    int(0.7 * total_steps), frequency=frequency))`, trained with
    `UpdatePruningStep()`, and then stripped with `strip_pruning`. Only the
    `fit` call is timed (it includes tf.function tracing in the first epoch;
    see `epoch_seconds` for a per-epoch breakdown).

    Args:
        mode: `"dense"` or `"pruned"`.
        epochs: Number of training epochs.
        seed: Seed for weight initialisation and batch shuffling.
        sparsity: Final sparsity of the schedule (pruned mode only).
        frequency: Mask update frequency in steps (pruned mode only).

    Returns:
        A dict with `fit_seconds`, `epoch_seconds`, `test_accuracy`,
        `kernel_sparsity`, `total_steps` and `versions`.
    """
    if mode not in ("dense", "pruned"):
        raise ValueError(f"mode must be 'dense' or 'pruned', got {mode!r}")
    tf_keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split()
    total_steps = steps_per_epoch(len(x_train)) * epochs
    model = build_model("mlp")
    result = {
        "task": "train_overhead",
        "mode": mode,
        "epochs": epochs,
        "seed": seed,
        "total_steps": total_steps,
    }
    if mode == "dense":
        compile_model(model)
        fit_s, epoch_s = timed_fit(model, x_train, y_train, epochs)
        final = model
    else:
        schedule, end_step = polynomial_schedule(
            sparsity, total_steps, frequency
        )
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=schedule
        )
        compile_model(pruned)
        fit_s, epoch_s = timed_fit(
            pruned,
            x_train,
            y_train,
            epochs,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        )
        final = tfmot.sparsity.keras.strip_pruning(pruned)
        result.update(
            target_sparsity=sparsity, end_step=end_step, frequency=frequency
        )
    result.update(
        fit_seconds=fit_s,
        epoch_seconds=epoch_s,
        test_accuracy=accuracy(final, x_test, y_test),
        kernel_sparsity=kernel_sparsity(final),
        versions=versions(),
    )
    return result


def task_accuracy(
    arch="mlp",
    sparsity=0.9,
    seed=0,
    epochs=40,
    prune_epochs=20,
    frequency=DEFAULT_FREQUENCY,
):
    """Dense training followed by tfmot pruning; accuracy of both.

    The model (see `build_model`) is trained dense for `epochs` epochs, then
    wrapped with `prune_low_magnitude` using `PolynomialDecay(0.0, sparsity,
    0, int(0.7 * prune_steps), frequency=frequency)` where `prune_steps` is
    the number of steps in `prune_epochs` epochs, fine-tuned for
    `prune_epochs` epochs with a fresh Adam(1e-3) and `UpdatePruningStep()`,
    and stripped.

    Note that tfmot updates masks only at multiples of `frequency`, so with
    fewer than `frequency` pruning steps nothing is pruned.

    Args:
        arch: `"mlp"` or `"cnn"`.
        sparsity: Final target sparsity.
        seed: Seed for weight initialisation and batch shuffling.
        epochs: Dense training epochs.
        prune_epochs: Pruning (fine-tuning) epochs.
        frequency: Mask update frequency in steps.

    Returns:
        A dict with `dense_accuracy`, `pruned_accuracy`, `kernel_sparsity`
        (per kernel, after stripping), `prune_steps`, `end_step` and
        `versions`.
    """
    tf_keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split()
    model = build_model(arch)
    compile_model(model)
    dense_s, _ = timed_fit(model, x_train, y_train, epochs)
    dense_acc = accuracy(model, x_test, y_test)

    prune_steps = steps_per_epoch(len(x_train)) * prune_epochs
    schedule, end_step = polynomial_schedule(sparsity, prune_steps, frequency)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=schedule
    )
    compile_model(pruned)
    prune_s, _ = timed_fit(
        pruned,
        x_train,
        y_train,
        prune_epochs,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    return {
        "task": "accuracy",
        "arch": arch,
        "target_sparsity": sparsity,
        "seed": seed,
        "epochs": epochs,
        "prune_epochs": prune_epochs,
        "prune_steps": prune_steps,
        "end_step": end_step,
        "frequency": frequency,
        "dense_accuracy": dense_acc,
        "pruned_accuracy": accuracy(final, x_test, y_test),
        "kernel_sparsity": kernel_sparsity(final),
        "dense_fit_seconds": dense_s,
        "prune_fit_seconds": prune_s,
        "versions": versions(),
    }


def standardize_split(x_train, x_test):
    """Per-pixel z-scores with the training set's mean and std.

    Pixels that are constant in the training set (std 0) are only centred.
    `benchmarks/accuracy.py` does exactly the same in the main environment.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (
        ((x_train - mean) / std).astype("float32"),
        ((x_test - mean) / std).astype("float32"),
    )


def task_accuracy_sweep(
    arch="mlp",
    sparsities=(0.8, 0.9, 0.95, 0.98),
    seeds=(0, 1, 2),
    epochs=10,
    prune_epochs=10,
    batch_size=64,
    frequency=None,
    end_step=None,
    standardize=True,
):
    """Like `accuracy`, for several sparsities and seeds in one process.

    For each seed: `set_random_seed(seed)`, build `arch` (see
    `build_model`), train it dense for `epochs` epochs (Adam(1e-3), batch
    `batch_size`, shuffled). Then, for each sparsity, start again from those
    dense weights: `set_random_seed(seed)`, a fresh copy of the model,
    `prune_low_magnitude(PolynomialDecay(0.0, sparsity, 0, end_step,
    frequency=frequency))`, a fresh Adam(1e-3), `prune_epochs` epochs with
    `UpdatePruningStep()`, `strip_pruning`, test accuracy.

    Args:
        arch: `"mlp"` or `"cnn"`.
        sparsities: Final target sparsities.
        seeds: Seeds (weight initialisation and batch shuffling).
        epochs: Dense training epochs.
        prune_epochs: Pruning (fine-tuning) epochs.
        batch_size: Batch size of both phases.
        frequency: Mask update frequency in steps (default: half an epoch).
        end_step: Last step of the ramp (default: the multiple of
            `frequency` nearest to 70% of the pruning steps, so that the
            last mask update is at the final sparsity).
        standardize: Per-pixel z-scores (`standardize_split`) instead of
            the plain X / 16 of `load_digits_split`.

    Returns:
        A dict with `runs` (one per seed and sparsity: `dense_accuracy`,
        `pruned_accuracy`, `kernel_sparsity`, `kernel_zeros`,
        `kernel_sizes`, `prune_fit_seconds`), the schedule parameters and
        `versions`.
    """
    x_train, y_train, x_test, y_test = load_digits_split()
    if standardize:
        x_train, x_test = standardize_split(x_train, x_test)
    spe = math.ceil(len(x_train) / batch_size)
    prune_steps = spe * prune_epochs
    if frequency is None:
        frequency = max(1, spe // 2)
    if end_step is None:
        end_step = max(
            frequency, frequency * round(0.7 * prune_steps / frequency)
        )

    def fit(model, n_epochs, callbacks=()):
        t0 = time.perf_counter()
        model.fit(
            x_train,
            y_train,
            batch_size=batch_size,
            epochs=n_epochs,
            shuffle=True,
            verbose=0,
            callbacks=list(callbacks),
        )
        return time.perf_counter() - t0

    runs = []
    for seed in seeds:
        tf_keras.utils.set_random_seed(seed)
        model = build_model(arch)
        compile_model(model)
        dense_s = fit(model, epochs)
        dense_acc = accuracy(model, x_test, y_test)
        dense_weights = model.get_weights()
        for sparsity in sparsities:
            tf_keras.utils.set_random_seed(seed)
            copy = build_model(arch)
            copy.set_weights(dense_weights)
            schedule = tfmot.sparsity.keras.PolynomialDecay(
                initial_sparsity=0.0,
                final_sparsity=sparsity,
                begin_step=0,
                end_step=end_step,
                frequency=frequency,
            )
            pruned = tfmot.sparsity.keras.prune_low_magnitude(
                copy, pruning_schedule=schedule
            )
            compile_model(pruned)
            prune_s = fit(
                pruned, prune_epochs, [tfmot.sparsity.keras.UpdatePruningStep()]
            )
            final = tfmot.sparsity.keras.strip_pruning(pruned)
            zeros, sizes = {}, {}
            for layer in final.layers:
                kernel = getattr(layer, "kernel", None)
                if kernel is not None:
                    k = kernel.numpy()
                    zeros[layer.name] = int(np.sum(k == 0))
                    sizes[layer.name] = int(k.size)
            runs.append(
                {
                    "seed": seed,
                    "sparsity": sparsity,
                    "dense_accuracy": dense_acc,
                    "pruned_accuracy": accuracy(final, x_test, y_test),
                    "kernel_sparsity": kernel_sparsity(final),
                    "kernel_zeros": zeros,
                    "kernel_sizes": sizes,
                    "dense_fit_seconds": dense_s,
                    "prune_fit_seconds": prune_s,
                }
            )
            print(
                f"tfmot {arch} seed {seed} sparsity {sparsity}: "
                f"{runs[-1]['pruned_accuracy']:.4f}",
                file=sys.stderr,
                flush=True,
            )
    return {
        "task": "accuracy_sweep",
        "arch": arch,
        "sparsities": list(sparsities),
        "seeds": list(seeds),
        "epochs": epochs,
        "prune_epochs": prune_epochs,
        "batch_size": batch_size,
        "steps_per_epoch": spe,
        "prune_steps": prune_steps,
        "frequency": frequency,
        "end_step": end_step,
        "standardize": standardize,
        "runs": runs,
        "versions": versions(),
    }


def _make_mask_update(sparsity):
    """A tf.function doing what tfmot's unstructured mask update does.

    tfmot (pruning_impl, unstructured case) computes, per weight tensor:
    k = max(round_half_even(float32(size) * (1 - sparsity)), 1); a full
    descending `tf.math.top_k` of the flattened magnitudes with k = size;
    the threshold is the k-th largest magnitude; the mask keeps every
    magnitude >= threshold, OR-ed with a one-hot at the threshold's position.
    """
    s = tf.constant(sparsity, tf.float32)

    @tf.function
    def update(w):
        mags = tf.abs(w)
        n = tf.size(mags)
        keep = tf.cast(
            tf.maximum(tf.round(tf.cast(n, tf.float32) * (1.0 - s)), 1.0),
            tf.int32,
        )
        flat = tf.reshape(mags, [-1])
        sorted_vals, order = tf.math.top_k(flat, k=n)
        threshold = tf.gather(sorted_vals, keep - 1)
        at = tf.gather(order, keep - 1)
        above = tf.greater_equal(mags, threshold)
        hit = tf.reshape(
            tf.one_hot(at, n, on_value=True, off_value=False), tf.shape(mags)
        )
        mask = tf.cast(tf.logical_or(above, hit), w.dtype)
        return threshold, mask

    @tf.function
    def sort_only(w):
        flat = tf.reshape(tf.abs(w), [-1])
        sorted_vals, _ = tf.math.top_k(flat, k=tf.size(flat))
        keep = tf.cast(
            tf.maximum(
                tf.round(tf.cast(tf.size(flat), tf.float32) * (1.0 - s)), 1.0
            ),
            tf.int32,
        )
        return tf.gather(sorted_vals, keep - 1)

    return update, sort_only


def _median_time(fn, arg, repeats):
    fn(arg)  # warm-up: tracing + first-run allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(arg)
        # Force completion (results are materialised on the host).
        tf.nest.map_structure(lambda t: t.numpy(), out)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def task_mask_sort(n=1048576, sparsity=0.5, repeats=3, seed=0):
    """Time one tfmot-style mask update on a float32 tensor of n elements.

    The tensor is `np.random.default_rng(seed).standard_normal(n)` as
    float32, shaped `(n,)`. Each timed call runs, as one `tf.function`, the
    full update of `_make_mask_update` (abs, full `top_k` sort, threshold
    gather, mask); `sort_seconds` times just the abs + full sort + gather.
    One warm-up call precedes `repeats` timed calls; the median is reported.

    If tfmot's own `pruning_impl.Pruning._update_mask` is reachable, it is
    timed the same way (`tfmot_impl_seconds`) as a cross-check that the
    re-implementation matches tfmot's cost, and its threshold is compared.

    Args:
        n: Number of elements.
        sparsity: Target sparsity used to pick the threshold.
        repeats: Number of timed runs.
        seed: Seed of the random tensor.

    Returns:
        A dict with `seconds` (median), `all_seconds`, `sort_seconds`,
        `tfmot_impl_seconds` (or None), `realised_sparsity` and `versions`.
    """
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.standard_normal(n, dtype=np.float32))
    update, sort_only = _make_mask_update(sparsity)
    med, all_t = _median_time(update, w, repeats)
    sort_med, _ = _median_time(sort_only, w, repeats)
    threshold, mask = update(w)
    result = {
        "task": "mask_sort",
        "n": n,
        "sparsity": sparsity,
        "repeats": repeats,
        "seconds": med,
        "all_seconds": all_t,
        "sort_seconds": sort_med,
        "threshold": float(threshold.numpy()),
        "realised_sparsity": float(1.0 - np.mean(mask.numpy())),
    }
    impl_s, impl_thr, impl_err = None, None, None
    try:
        from tensorflow_model_optimization.python.core.sparsity.keras import (
            pruning_impl,
        )

        var = tf.Variable(w)
        pruning = pruning_impl.Pruning(
            training_step_fn=lambda: tf.constant(1, tf.int64),
            pruning_vars=[
                (var, tf.Variable(tf.ones_like(w)), tf.Variable(0.0))
            ],
            pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                sparsity, 0, frequency=1
            ),
            block_size=(1, 1),
            block_pooling_type="AVG",
        )
        impl = tf.function(pruning._update_mask)
        impl_s, _ = _median_time(impl, var, repeats)
        impl_thr = float(impl(var)[0].numpy())
    except Exception as e:  # internal API: best effort only
        impl_err = f"{type(e).__name__}: {e}"
    result.update(
        tfmot_impl_seconds=impl_s,
        tfmot_impl_threshold=impl_thr,
        tfmot_impl_error=impl_err,
        versions=versions(),
    )
    return result


def _uncompiled_copy(model):
    """Same architecture and weights, no optimizer state to inflate files."""
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _one_shot_prune(model, sparsity):
    """One-shot magnitude pruning of every prunable kernel with tfmot.

    Uses tfmot's internal `prune_for_benchmark` when importable. Otherwise
    wraps the model with `prune_low_magnitude(ConstantSparsity(sparsity, 0,
    frequency=1))` and runs one training-mode forward pass, which triggers
    exactly one mask update (pruning step 1) and applies the mask.

    Returns:
        (stripped model, name of the method used).
    """
    try:
        from tensorflow_model_optimization.python.core.sparsity.keras.tools import (  # noqa: E501
            sparsity_tooling,
        )
    except ImportError:
        sparsity_tooling = None
    if sparsity_tooling is not None and hasattr(
        sparsity_tooling, "prune_for_benchmark"
    ):
        pruned = sparsity_tooling.prune_for_benchmark(model, sparsity)
        method = "sparsity_tooling.prune_for_benchmark"
    else:
        schedule = tfmot.sparsity.keras.ConstantSparsity(
            sparsity, 0, frequency=1
        )
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=schedule
        )
        for layer in pruned.layers:
            if hasattr(layer, "pruning_step"):
                layer.pruning_step.assign(0)
        pruned(tf.zeros((1, 64)), training=True)
        method = "prune_low_magnitude+one_forward"
    return tfmot.sparsity.keras.strip_pruning(pruned), method


def _file_sizes(model, directory, stem):
    sizes = {}
    for ext in ("h5", "keras"):
        path = os.path.join(directory, f"{stem}.{ext}")
        model.save(path)
        with open(path, "rb") as f:
            raw = f.read()
        sizes[ext] = len(raw)
        sizes[f"{ext}_gzip"] = len(gzip.compress(raw, compresslevel=9))
    return sizes


def task_compress(sparsity=0.8, epochs=40, seed=0):
    """gzip sizes of the digits MLP, dense vs. one-shot tfmot-pruned.

    The MLP is trained dense for `epochs` epochs (0 keeps the random
    initialisation), then each Dense kernel is magnitude-pruned once to
    `sparsity` (see `_one_shot_prune`) and the pruning wrappers are stripped.
    Both models are saved without optimizer state as `.h5` and `.keras` and
    gzip-compressed in memory (`gzip.compress(..., compresslevel=9)`).

    Args:
        sparsity: Target sparsity of every kernel.
        epochs: Dense training epochs before pruning.
        seed: Seed for weight initialisation and batch shuffling.

    Returns:
        A dict with `dense_bytes` and `pruned_bytes` (each with keys `h5`,
        `h5_gzip`, `keras`, `keras_gzip`), gzip ratios, accuracies,
        `kernel_sparsity`, the one-shot `method` and `versions`.
    """
    tf_keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split()
    model = build_model("mlp")
    compile_model(model)
    if epochs > 0:
        model.fit(
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            shuffle=True,
            verbose=0,
        )
    dense = _uncompiled_copy(model)
    dense_acc = accuracy(dense, x_test, y_test)
    pruned, method = _one_shot_prune(_uncompiled_copy(model), sparsity)
    with tempfile.TemporaryDirectory() as d:
        dense_sizes = _file_sizes(dense, d, "dense")
        pruned_sizes = _file_sizes(pruned, d, "pruned")
    return {
        "task": "compress",
        "sparsity": sparsity,
        "epochs": epochs,
        "seed": seed,
        "method": method,
        "dense_bytes": dense_sizes,
        "pruned_bytes": pruned_sizes,
        "gzip_ratio_h5": dense_sizes["h5_gzip"] / pruned_sizes["h5_gzip"],
        "gzip_ratio_keras": dense_sizes["keras_gzip"]
        / pruned_sizes["keras_gzip"],
        "dense_accuracy": dense_acc,
        "pruned_accuracy": accuracy(pruned, x_test, y_test),
        "kernel_sparsity": kernel_sparsity(pruned),
        "versions": versions(),
    }


TASKS = {
    "train_overhead": task_train_overhead,
    "accuracy": task_accuracy,
    "accuracy_sweep": task_accuracy_sweep,
    "mask_sort": task_mask_sort,
    "compress": task_compress,
}


def main(argv):
    if not argv or argv[0] not in TASKS:
        print(
            f"usage: {sys.argv[0]} {{{','.join(TASKS)}}} [JSON args]",
            file=sys.stderr,
        )
        return 2
    kwargs = json.loads(argv[1]) if len(argv) > 1 else {}
    if not isinstance(kwargs, dict):
        print("task arguments must be a JSON object", file=sys.stderr)
        return 2
    result = TASKS[argv[0]](**kwargs)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
