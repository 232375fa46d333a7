"""Benchmark: train-step time of real models, pruned vs dense (issue 17.12).

Models:

- `resnet50`: `keras.applications.ResNet50(weights=None)`, input 32x32x3,
  10 classes, batch 16;
- `gpt2`: a GPT-2-style `keras_hub.models.GPT2CausalLM` built from its
  constructor (2 layers, hidden 128, 4 heads, FFN 512, vocabulary 1000,
  sequence 64, no preprocessor), batch 8: 13-27 ms steps, where the fixed
  cost of a step weighs most;
- `gpt2_medium`: the same with 4 layers, hidden 256, FFN 1024, vocabulary
  8192, sequence 128 (5.3M weights), batch 8 (not run by default).

Modes, all in one process and side by side:

- `dense`: the model as built;
- `pruned`: `keras_prune.prune_low_magnitude(model, ConstantSparsity(0.5,
  0), skip_unsupported=True)` trained without a callback (the train step
  updates the masks itself and masks every pruned weight): what custom
  loops and `steps_per_execution > 1` get;
- `pruned+callback`: the same, with `keras_prune.UpdatePruningStep()`
  (mask updates on the host between steps, pruned weights kept at zero
  inside the optimizer update).

`skip_unsupported=True` only leaves the position embedding and the layer
norms dense (GPT-2 with keras-prune as of issue 17 refuses them); ResNet50
needs nothing.

Every mode is compiled with Adam(1e-3) and sparse categorical
cross-entropy, then warmed up with one untimed epoch (compilation). Then
`--repeats` rounds each time one epoch of `--steps` batches per mode, the
modes in a rotating order (ABC, BCA, CAB, ...). A step's time is the epoch's
wall time over `--steps`; the table gives the median over rounds and the
ratio of the medians to dense. Two statistics robust to the bimodal epoch
times seen on this machine in every mode, dense included, are also given:
the best round of each mode over dense's best, and the median over rounds of
each round's ratio to that round's dense epoch. The CPU time used by other
processes during each timed epoch (from /proc/stat, minus this process's)
is recorded as `other_load` (cores); numbers taken while others used the
CPU are noisy.

The data are given as `harness.fit_data` gives them: on TensorFlow, a
`tf.data.Dataset` with autotuning off. With Keras' own pipeline for NumPy
arrays, a `fit` ended only when tf.data's autotune thread woke (at 2.56 s
or 10.24 s in some rounds of every mode): the bimodal epoch times of
sessions 10-15.

Each timed `fit` also carries a clock callback (every mode: same batch
hooks) that times steps 2..N of the epoch: the train step's own cost
(`steady_*` ratios, "steps 2-N" in the table), without what each `fit`
pays once. The difference between the two, times `--steps`, is
`per_fit_extra_s`: for `UpdatePruningStep`, its checks at `fit` start.

Usage (from the repository root):

    python -m benchmarks.real_models --all-backends
    KERAS_BACKEND=jax python -m benchmarks.real_models --models gpt2
    python benchmarks/real_models.py --all-backends   # same as -m

Results go to `benchmarks/results/real_models.json` (`--out`), with the
commit, the date and the machine. Goals from issue 17.12: pruned <= 1.15x
dense without the callback and <= 1.05x with it.
"""

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a script: rerun as `python -m benchmarks.real_models` from the
    # repository root, so that benchmarks/ is not first on sys.path (its
    # compression.py would shadow the `compression` module jax looks for).
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(_root)
    os.execv(
        sys.executable,
        [sys.executable, "-m", "benchmarks.real_models", *sys.argv[1:]],
    )

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
DEFAULT_OUT = os.path.join(BENCH_DIR, "results", "real_models.json")
BACKENDS = ("jax", "tensorflow", "torch")
MODES = ("dense", "pruned", "pruned+callback")

GPT2 = dict(
    vocabulary_size=1000,
    num_layers=2,
    num_heads=4,
    hidden_dim=128,
    intermediate_dim=512,
    max_sequence_length=64,
)
# A GPT-2-style model about the size of the smallest models people prune
# (5.3M weights, 3.1M of them in the pruned kernels): its steps are long
# enough that what pruning adds to each kernel shows, not the fixed cost of
# a step.
GPT2_MEDIUM = dict(
    vocabulary_size=8192,
    num_layers=4,
    num_heads=4,
    hidden_dim=256,
    intermediate_dim=1024,
    max_sequence_length=128,
)
GPT2_CONFIGS = {"gpt2": GPT2, "gpt2_medium": GPT2_MEDIUM}
RESNET_INPUT = (32, 32, 3)
RESNET_CLASSES = 10
BATCH = {"resnet50": 16, "gpt2": 8, "gpt2_medium": 8}

# ----------------------------------------------------------------- machine


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    import importlib.metadata as md

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return dict(
        cpu=_cpu_model(),
        cores=os.cpu_count(),
        python=platform.python_version(),
        **{
            d: version(d)
            for d in (
                "keras",
                "keras-hub",
                "jax",
                "jaxlib",
                "tensorflow-cpu",
                "torch",
                "numpy",
            )
        },
    )


def commit():
    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, text=True, capture_output=True
        ).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--", "src"))
    return sha + ("+dirty src" if dirty else "")


def _busy_jiffies():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


class LoadMeter:
    """Cores used by other processes between `start()` and `stop()`."""

    def start(self):
        self._t = time.perf_counter()
        self._busy = self._read()
        self._own = sum(os.times()[:4])

    @staticmethod
    def _read():
        try:
            return _busy_jiffies() / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return None

    def stop(self):
        wall = time.perf_counter() - self._t
        busy = self._read()
        if busy is None or self._busy is None or wall <= 0:
            return None
        own = sum(os.times()[:4]) - self._own
        return max(0.0, (busy - self._busy - own) / wall)


# ------------------------------------------------------------------ models


def build(name):
    import keras

    keras.utils.set_random_seed(0)
    if name == "resnet50":
        return keras.applications.ResNet50(
            weights=None,
            input_shape=RESNET_INPUT,
            classes=RESNET_CLASSES,
            classifier_activation=None,
        )
    if name in GPT2_CONFIGS:
        import keras_hub

        backbone = keras_hub.models.GPT2Backbone(**GPT2_CONFIGS[name])
        return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    raise ValueError(
        f"Unknown model {name!r}: use resnet50, gpt2 or gpt2_medium."
    )


def data(name, steps):
    rng = np.random.default_rng(0)
    n = BATCH[name] * steps
    if name == "resnet50":
        x = rng.standard_normal((n,) + RESNET_INPUT).astype("float32")
        y = rng.integers(0, RESNET_CLASSES, (n,)).astype("int32")
        return x, y
    config = GPT2_CONFIGS[name]
    seq, vocab = config["max_sequence_length"], config["vocabulary_size"]
    x = {
        "token_ids": rng.integers(1, vocab, (n, seq)).astype("int32"),
        "padding_mask": np.ones((n, seq), "int32"),
    }
    y = rng.integers(1, vocab, (n, seq)).astype("int32")
    return x, y


def model_for(name, mode):
    import keras

    import keras_prune

    model = build(name)
    if mode != "dense":
        model = keras_prune.prune_low_magnitude(
            model, keras_prune.ConstantSparsity(0.5, 0), skip_unsupported=True
        )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def callbacks_for(mode):
    import keras_prune

    return (
        [keras_prune.UpdatePruningStep()] if mode == "pruned+callback" else []
    )


def _step_clock():
    """A callback that times the steps of one `fit` after its first.

    Every mode gets one, so every mode has the same batch hooks. The time
    from the first batch's end to the last batch's end, over the steps in
    between (`steady_step_s()`), leaves out what a `fit` pays once: its
    setup before the first step (for `UpdatePruningStep`,
    `HostUpdates.start` checking every pruned weight) and its end.
    """
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

        def steady_step_s(self):
            return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)

    return StepClock()


def run_backend(models, steps, repeats):
    """Times every mode of every model on this process's backend."""
    import keras

    out = {}
    for name in models:
        x, y = data(name, steps)
        batch = BATCH[name]
        fit_args = harness.fit_data(x, y, batch)
        runs = {}
        for mode in MODES:
            model = model_for(name, mode)
            t0 = time.perf_counter()
            model.fit(
                **fit_args,
                epochs=1,
                verbose=0,
                callbacks=callbacks_for(mode),
            )
            runs[mode] = dict(
                model=model,
                warmup_s=time.perf_counter() - t0,
                step_s=[],
                other_load=[],
            )
            print(
                f"  {keras.backend.backend()} {name} {mode}: warm-up "
                f"{runs[mode]['warmup_s']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        meter = LoadMeter()
        for r in range(repeats):
            order = MODES[r % 3 :] + MODES[: r % 3]
            for mode in order:
                run = runs[mode]
                clock = _step_clock()
                meter.start()
                t0 = time.perf_counter()
                run["model"].fit(
                    **fit_args,
                    epochs=1,
                    verbose=0,
                    callbacks=callbacks_for(mode) + [clock],
                )
                run["step_s"].append((time.perf_counter() - t0) / steps)
                run["other_load"].append(meter.stop())
                run.setdefault("steady_s", []).append(clock.steady_step_s())
        dense = statistics.median(runs["dense"]["step_s"])
        dense_steps = runs["dense"]["step_s"]
        dense_steady = runs["dense"]["steady_s"]
        res = {}
        for mode in MODES:
            run = runs.pop(mode)
            med = statistics.median(run["step_s"])
            loads = [v for v in run["other_load"] if v is not None]
            res[mode] = dict(
                median_step_ms=1e3 * med,
                ratio_to_dense=med / dense,
                # Robust to the bimodal step times some epochs show in
                # every mode (dense included): the fastest round of each
                # mode, and the median of each round's ratio to the dense
                # epoch of the same round.
                best_ratio_to_dense=min(run["step_s"]) / min(dense_steps),
                paired_median_ratio=statistics.median(
                    s / d for s, d in zip(run["step_s"], dense_steps)
                ),
                step_ms=[round(1e3 * s, 2) for s in run["step_s"]],
                # Steps 2..N of each `fit` (`_StepClock`): the train step's
                # own cost, without what each `fit` pays once.
                steady_median_step_ms=1e3 * statistics.median(run["steady_s"]),
                steady_ratio_to_dense=statistics.median(run["steady_s"])
                / statistics.median(dense_steady),
                steady_best_ratio_to_dense=min(run["steady_s"])
                / min(dense_steady),
                steady_paired_median_ratio=statistics.median(
                    s / d for s, d in zip(run["steady_s"], dense_steady)
                ),
                # What each `fit` costs beyond its steps, median over rounds.
                per_fit_extra_s=round(
                    statistics.median(
                        (a - b) * steps
                        for a, b in zip(run["step_s"], run["steady_s"])
                    ),
                    3,
                ),
                warmup_s=round(run["warmup_s"], 2),
                max_other_load=round(max(loads), 2) if loads else None,
            )
        out[name] = dict(batch=batch, steps=steps, repeats=repeats, modes=res)
        keras.utils.clear_session()
    return out


# ------------------------------------------------------------ model matrix
# `--matrix`: what keras-prune prunes in each model of tests/test_models.py
# (same tiny configurations), for docs/models.md.


def _tiny_models():
    import keras
    import keras_hub

    kh = keras_hub.models
    text = dict(
        vocabulary_size=50, num_layers=1, hidden_dim=16, intermediate_dim=32
    )
    dec = dict(text, num_query_heads=2, num_key_value_heads=1)
    bb = {
        "bert": lambda: kh.BertBackbone(
            num_heads=2, max_sequence_length=8, **text
        ),
        "gpt2": lambda: kh.GPT2Backbone(
            num_heads=2, max_sequence_length=8, **text
        ),
        "gemma": lambda: kh.GemmaBackbone(head_dim=8, **dec),
        "llama": lambda: kh.LlamaBackbone(**dec),
        "qwen": lambda: kh.QwenBackbone(**dec),
        "mistral": lambda: kh.MistralBackbone(sliding_window=8, **dec),
        "phi3": lambda: kh.Phi3Backbone(
            max_sequence_length=8, pretraining_sequence_length=8, **dec
        ),
        "vit": lambda: kh.ViTBackbone(
            image_shape=(16, 16, 3),
            patch_size=4,
            num_layers=1,
            num_heads=2,
            hidden_dim=16,
            mlp_dim=32,
        ),
    }
    out = {}
    for arch, cls in [
        ("bert", "BertTextClassifier"),
        ("gpt2", "GPT2CausalLM"),
        ("gemma", "GemmaCausalLM"),
        ("llama", "LlamaCausalLM"),
        ("qwen", "QwenCausalLM"),
        ("mistral", "MistralCausalLM"),
        ("phi3", "Phi3CausalLM"),
        ("vit", "ViTImageClassifier"),
    ]:
        kw = {"num_classes": 4} if "Classifier" in cls else {}
        out[cls] = lambda a=arch, c=cls, k=kw: getattr(kh, c)(
            bb[a](), preprocessor=None, **k
        )
    for fn in (
        "ResNet50",
        "MobileNetV2",
        "EfficientNetB0",
        "DenseNet121",
        "ConvNeXtTiny",
    ):
        out[fn] = lambda f=fn: getattr(keras.applications, f)(
            weights=None, input_shape=(32, 32, 3), classes=4
        )
    return out


def _own(layer):
    return layer._trainable_variables + layer._non_trainable_variables


def _owners(model):
    """id(variable) -> the innermost layer that created it."""
    owner = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for v in _own(layer):
            owner[id(v)] = layer
    return owner


def _category(layer, weight):
    kind = type(layer).__name__
    name = layer.name.lower()
    if "Embedding" in kind:
        return "position embedding" if "position" in name else "embedding"
    if "Conv" in kind:
        return "convolution"
    if kind in ("EinsumDense", "Dense"):
        if any(
            k in name for k in ("query", "key", "value", "attention", "attn")
        ):
            return "attention"
        if (
            any(
                k in name
                for k in (
                    "logits",
                    "predictions",
                    "head",
                    "classifier",
                    "output_dense",
                )
            )
            and "intermediate" not in name
            and "feedforward" not in name
        ):
            return "head" if "feedforward" not in name else "ffn"
        return "ffn"
    return kind


def _contracted(layer, weight_name):
    kind = type(layer).__name__
    if weight_name != "kernel":
        return None
    if kind == "EinsumDense":
        lhs, out = layer.equation.replace("...", "").split("->")
        inp, ker = lhs.split(",")
        return [i for i, c in enumerate(ker) if c in inp and c not in out]
    if kind == "Dense":
        return [0]
    return None


def _is_2_4_along(value, axes):
    others = [i for i in range(value.ndim) if i not in axes]
    k = int(np.prod([value.shape[i] for i in axes]))
    if k % 4:
        return False
    groups = np.transpose(value, list(axes) + others).reshape(k // 4, 4, -1)
    return bool((np.count_nonzero(groups, axis=1) == 2).all())


def matrix_row(name, builder, workdir):
    """What `prune_once(model, 0.5, skip_unsupported=True)` prunes."""
    import keras

    import keras_prune
    from keras_prune.integration.state import pruning_wrappers

    keras.utils.set_random_seed(0)
    row = {"model": name}
    model = builder()
    row["params"] = int(model.count_params())
    try:
        keras_prune.prune_low_magnitude(model)
        row["defaults"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported
        row["defaults"] = f"{type(e).__name__}: {str(e)[:160]}"
    dense_path = os.path.join(workdir, name + "_dense.keras")
    model.save(dense_path)
    row["dense_file_bytes"] = os.path.getsize(dense_path)
    try:
        pruned = keras_prune.prune_once(model, 0.5, skip_unsupported=True)
    except Exception as e:  # noqa: BLE001 - reported
        row["skip_unsupported"] = f"{type(e).__name__}: {str(e)[:160]}"
        return row
    row["skip_unsupported"] = "ok"
    row["class_after_pruning"] = type(pruned).__name__
    owner = _owners(pruned)
    pruned_ids = set()
    cats = {}
    for w in pruning_wrappers(pruned):
        for v in w.pruned_weights:
            pruned_ids.add(id(v))
            c = _category(owner[id(v)], v.name)
            cats[c] = cats.get(c, 0) + int(np.prod(v.shape))
    row["pruned_params_by_kind"] = cats
    row["pruned_params"] = sum(cats.values())
    skipped = {}
    for layer in pruned._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__ == "PruneLowMagnitude":
            continue
        for v in _own(layer):
            if id(v) in pruned_ids or v.name in (
                "pruning_step",
                "nonfinite_count",
            ):
                continue
            if v.name.endswith(("_mask", "_threshold")):
                continue
            if "moving" in v.name:
                continue  # BatchNormalization statistics
            key = f"{type(layer).__name__}.{v.name}"
            skipped[key] = skipped.get(key, 0) + int(np.prod(v.shape))
    row["not_pruned"] = skipped
    stripped = keras_prune.strip_pruning(pruned)
    row["class_after_strip"] = type(stripped).__name__
    path = os.path.join(workdir, name + "_stripped.keras")
    stripped.save(path)
    row["stripped_file_bytes"] = os.path.getsize(path)
    try:
        keras.saving.load_model(path)
        row["stripped_reloads"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported
        row["stripped_reloads"] = f"{type(e).__name__}: {str(e)[:160]}"
    # 2:4 on every attention / feed-forward kernel, along its inputs.
    if any(c in cats for c in ("attention", "ffn")):
        try:
            nm = keras_prune.prune_once(
                model, 0.5, sparsity_m_by_n=(2, 4), skip_unsupported=True
            )
        except ValueError as e:  # e.g. a kernel too small for 2:4
            # Reported, then measured without the depthwise / grouped
            # convolutions (one input channel per group: nothing to group).
            row["m_by_n_defaults"] = f"{type(e).__name__}: {str(e)[:160]}"
            nm = keras_prune.prune_once(
                model,
                0.5,
                sparsity_m_by_n=(2, 4),
                skip_unsupported=True,
                layers=lambda layer: (
                    getattr(layer, "groups", 1) == 1
                    and "Depthwise" not in type(layer).__name__
                ),
            )
        res = {}
        owner = _owners(nm)
        for w in pruning_wrappers(nm):
            for v, m in zip(w.pruned_weights, w.masks):
                axes = _contracted(owner[id(v)], v.name)
                if axes is None:
                    continue
                val = np.where(
                    keras.ops.convert_to_numpy(m),
                    keras.ops.convert_to_numpy(v),
                    0,
                )
                ok = _is_2_4_along(val, axes)
                c = _category(owner[id(v)], v.name)
                good, total = res.get(c, (0, 0))
                res[c] = (good + ok, total + 1)
        row["kernels_2_4_along_inputs"] = {
            c: f"{g}/{t}" for c, (g, t) in res.items()
        }
    keras.utils.clear_session()
    return row


def run_matrix(names=None):
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, builder in _tiny_models().items():
            if names and name not in names:
                continue
            t0 = time.perf_counter()
            rows.append(matrix_row(name, builder, workdir))
            rows[-1]["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------- reporting


def _cell(mode):
    cell = f"{mode['median_step_ms']:.1f} ({mode['ratio_to_dense']:.3f}x"
    if "best_ratio_to_dense" in mode:
        cell += (
            f"; best {mode['best_ratio_to_dense']:.3f}x, paired "
            f"{mode['paired_median_ratio']:.3f}x"
        )
    if "steady_ratio_to_dense" in mode:
        cell += (
            f"; steps 2-N {mode['steady_ratio_to_dense']:.3f}x, best "
            f"{mode['steady_best_ratio_to_dense']:.3f}x, paired "
            f"{mode['steady_paired_median_ratio']:.3f}x; per fit "
            f"+{mode['per_fit_extra_s']:.2f} s"
        )
    return cell + ")"


def table(results):
    lines = [
        "| backend | model | dense ms/step | pruned (no callback) "
        "| pruned + UpdatePruningStep | max other load |",
        "|---|---|---|---|---|---|",
    ]
    for backend, per_model in results.items():
        if "error" in per_model:
            lines.append(
                f"| {backend} | error: {per_model['error'][:80]} | | | | |"
            )
            continue
        for name, r in per_model.items():
            m = r["modes"]
            loads = [
                m[k]["max_other_load"]
                for k in MODES
                if m[k]["max_other_load"] is not None
            ]
            lines.append(
                f"| {backend} | {name} | {m['dense']['median_step_ms']:.1f} "
                f"| {_cell(m['pruned'])} | {_cell(m['pruned+callback'])} "
                f"| {max(loads) if loads else 'n/a'} |"
            )
    return "\n".join(lines)


def _write(path, results, argv):
    """Writes `results` to `path`, keeping its other backends, models and
    matrix."""
    report = {}
    if os.path.exists(path):
        with open(path) as f:
            report = json.load(f)
    report.update(
        benchmark="real_models",
        commit=commit(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        machine=machine(),
        command=" ".join(
            [
                "python -m benchmarks.real_models",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        goals={"pruned": 1.15, "pruned_with_callback": 1.05},
    )
    stored = report.setdefault("results", {})
    for backend, per_model in results.items():
        for row in per_model.values():
            if isinstance(row, dict):  # each row says which run made it
                row.setdefault("commit", report["commit"])
                row.setdefault("date", report["date"])
        if "error" in per_model or "error" in stored.get(backend, {}):
            stored[backend] = per_model
        else:  # a run of some models keeps the others' rows
            stored.setdefault(backend, {}).update(per_model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["resnet50", "gpt2"],
        choices=["resnet50", "gpt2", "gpt2_medium"],
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=10,
        help="batches per timed epoch (default 10)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed epochs per mode (default 5)",
    )
    parser.add_argument(
        "--all-backends",
        action="store_true",
        help="run jax, tensorflow and torch, each in its own process",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        help="with --all-backends: which ones",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help="JSON file to write ('' for none)"
    )
    parser.add_argument(
        "--matrix",
        nargs="*",
        metavar="MODEL",
        help="instead of timing: what is pruned in each "
        "tiny model of tests/test_models.py (all, or "
        "the classes named), on this backend; stored "
        "under 'matrix' in --out",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.matrix is not None:
        import keras

        rows = run_matrix(args.matrix)
        if args.out:
            report = {}
            if os.path.exists(args.out):
                with open(args.out) as f:
                    report = json.load(f)
            report.setdefault("matrix", {})[keras.backend.backend()] = dict(
                commit=commit(),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                machine=machine(),
                rows=rows,
            )
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1)
                f.write("\n")
        return 0

    if args.child:
        import keras

        res = {
            keras.backend.backend(): run_backend(
                args.models, args.steps, args.repeats
            )
        }
        print(table(res), file=sys.stderr, flush=True)
        print("RESULT" + json.dumps(res))
        return 0

    backends = (
        (args.backends or list(BACKENDS))
        if args.all_backends
        else [os.environ.get("KERAS_BACKEND", "tensorflow")]
    )
    results = {}
    for backend in backends:
        print(f"== {backend}", file=sys.stderr, flush=True)
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.real_models",
            "--child",
            "--models",
            *args.models,
            "--steps",
            str(args.steps),
            "--repeats",
            str(args.repeats),
        ]
        env = dict(os.environ, KERAS_BACKEND=backend)
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            check=False,
        )
        lines = [
            ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")
        ]
        if proc.returncode or not lines:
            results[backend] = {"error": f"exit code {proc.returncode}"}
        else:
            results.update(json.loads(lines[-1][len("RESULT") :]))
        if args.out:  # after each backend: a later one may take long
            _write(args.out, results, argv)
    print(table(results))
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
