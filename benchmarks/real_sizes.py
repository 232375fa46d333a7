"""Real architectures at real sizes (> 100M parameters), end to end.

docs/models.md, section 9 ("Session 13"). Each model is built from its
constructor with the published configuration written out by hand (GPT-2
base, BERT base, Qwen2.5-0.5B; `keras.applications` EfficientNetV2L,
ConvNeXtLarge, ConvNeXtXLarge with `weights=None`): nothing is downloaded.
Per model, in one process of the backend `KERAS_BACKEND` names:

1. the dense weights are loaded from `<weights-dir>/<model>.npz` (written
   by the first backend that builds the model), so that every backend
   prunes the same numbers;
2. `prune_once(0.5)`, `prune_once(0.8, allocation="global")` and
   `prune_once(0.5, sparsity_m_by_n=(2, 4))`: the kept count of every
   pruned tensor (exact `kept_count` per tensor; total exact and no tensor
   emptied for global; 2 of every 4 along `patterns.contracted_axes` for
   2:4) and a SHA-256 of every mask, compared across backends by
   `--compare`;
3. default `prune_low_magnitude`, 2 `fit` steps (batch 1, SGD; sequence
   16 or 32x32 images) with `UpdatePruningStep`, exact counts again,
   `generate()` of the pruned causal LM, `strip_pruning` (same class,
   outputs equal), `generate()` of the stripped model (same tokens),
   `.keras` save and `load_model` (same class, outputs equal).

Every stage records its wall time and the process's peak RSS
(`resource.getrusage`) after it. One JSON line per model and backend.

    python -m benchmarks.real_sizes --all --out /tmp/real_sizes.jsonl
    KERAS_BACKEND=torch python -m benchmarks.real_sizes --model gpt2_base \
        --out /tmp/real_sizes.jsonl
    python -m benchmarks.real_sizes --compare /tmp/real_sizes.jsonl

`--all` runs every model on jax, tensorflow and torch, one process at a
time (the largest needs about 8 GB). A benchmark, not a test.
"""

import argparse
import gc
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

SEQ = 16
IMAGE = 32
BACKENDS = ("jax", "tensorflow", "torch")


def _hub(task, backbone, task_kw=None, **kw):
    # Imported here: `--help` and `--compare` need no Keras.
    from benchmarks import hub_sweep_extra

    return hub_sweep_extra.task(task, backbone, task_kw=task_kw, **kw)


def _app(name):
    def build():
        import keras

        return getattr(keras.applications, name)(
            weights=None, input_shape=(IMAGE, IMAGE, 3), classes=1000
        )

    return build


def _tokens(vocab, segments=False):
    def inputs():
        from benchmarks import hub_sweep_extra

        x = hub_sweep_extra.tokens(2, seq=SEQ, vocab=vocab)
        if segments:
            x["segment_ids"] = np.zeros((2, SEQ), "int32")
        return x

    return inputs


def _images():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, IMAGE, IMAGE, 3)).astype("float32")


# name: (builder, inputs, kind). The configurations are the published ones
# (Hugging Face config.json of gpt2, bert-base-uncased, Qwen2.5-0.5B).
MODELS = {
    "gpt2_base": (
        lambda: _hub(
            "GPT2CausalLM",
            "GPT2Backbone",
            vocabulary_size=50257,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
            max_sequence_length=1024,
        )(),
        _tokens(50257),
        "causal_lm",
    ),
    "bert_base_classifier": (
        lambda: _hub(
            "BertTextClassifier",
            "BertBackbone",
            task_kw=dict(num_classes=2),
            vocabulary_size=30522,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
            max_sequence_length=512,
            num_segments=2,
        )(),
        _tokens(30522, segments=True),
        "classifier",
    ),
    "qwen2_5_0_5b": (
        lambda: _hub(
            "QwenCausalLM",
            "QwenBackbone",
            vocabulary_size=151936,
            num_layers=24,
            num_query_heads=14,
            num_key_value_heads=2,
            hidden_dim=896,
            intermediate_dim=4864,
            rope_max_wavelength=1000000,
            layer_norm_epsilon=1e-6,
            tie_word_embeddings=True,
        )(),
        _tokens(151936),
        "causal_lm",
    ),
    "EfficientNetV2L": (_app("EfficientNetV2L"), _images, "image"),
    "ConvNeXtLarge": (_app("ConvNeXtLarge"), _images, "image"),
    "ConvNeXtXLarge": (_app("ConvNeXtXLarge"), _images, "image"),
}


class _Stages:
    """Wall time and peak RSS after each stage."""

    def __init__(self, res):
        self.res = res
        self.res["stages"] = {}
        self.t = time.time()

    def done(self, name):
        gc.collect()
        now = time.time()
        self.res["stages"][name] = dict(
            s=round(now - self.t, 1),
            peak_rss_mb=round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ),
            rss_mb=_rss_mb(),
        )
        self.t = now
        print(name, self.res["stages"][name], file=sys.stderr, flush=True)


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)


def _dense_weights(m, path):
    """Loads the weights saved at `path` into `m`, or saves them there."""
    from benchmarks import hub_sweep

    if os.path.exists(path):
        with np.load(path) as f:
            for i, v in enumerate(m.weights):
                value = f[f"w{i}"]
                if tuple(value.shape) != tuple(v.shape):
                    raise ValueError(f"{path}: weight {i} ({v.path}) shape")
                v.assign(value)
        return "loaded"
    tmp = path + ".tmp.npz"
    values = {f"w{i}": hub_sweep.np_(v) for i, v in enumerate(m.weights)}
    np.savez(tmp, **values)
    os.replace(tmp, path)
    return "saved"


def _digest(mask):
    return hashlib.sha256(np.packbits(mask.astype(bool))).hexdigest()[:16]


def _masked(p):
    """[(owner layer, variable, bool mask, weight * mask)] of `p`."""
    from benchmarks import hub_sweep

    return [
        (owner, v, m.astype(bool), value)
        for (_w, owner, v, value), m in zip(
            hub_sweep.masked_values(p), _masks(p)
        )
    ]


def _masks(p):
    from benchmarks import hub_sweep
    from keras_prune.integration.strip import pruning_wrappers

    return [hub_sweep.np_(m) for w in pruning_wrappers(p) for m in w.masks]


def _check_per_tensor(p, sparsity):
    """Per pruned tensor: mask count == kept_count and weight * mask has
    that many non-zeros. Returns (n tensors, n weights, wrong, digests)."""
    import keras_prune as kp

    wrong, digests, n = [], {}, 0
    for _owner, v, mask, value in _masked(p):
        want = int(kp.kept_count(mask.size, sparsity))
        got = (int(mask.sum()), int(np.count_nonzero(value)))
        if got != (want, want):
            wrong.append((v.path, got, want))
        digests[v.path] = _digest(mask)
        n += mask.size
    return len(digests), n, wrong, digests


def _outputs(m, x):
    from benchmarks import hub_sweep

    return hub_sweep.outs(m, x)


def _max_diff(a, b):
    return max(
        float(np.max(np.abs(u.astype("float64") - w))) if u.size else 0.0
        for u, w in zip(a, b)
    )


def _fit(p, x, kind):
    import keras

    import keras_prune as kp

    if kind == "causal_lm":
        y = x["token_ids"]
        sw = x["padding_mask"]
        p.compile(optimizer=keras.optimizers.SGD(1e-3))
    else:
        y = np.array([0, 1], "int32")
        sw = None
        if kind == "classifier":
            p.compile(optimizer=keras.optimizers.SGD(1e-3))
        else:
            p.compile(
                optimizer=keras.optimizers.SGD(1e-3),
                loss="sparse_categorical_crossentropy",
            )
    p.fit(
        x,
        y,
        sample_weight=sw,
        batch_size=1,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )


def run(name, weights_dir):
    import keras

    # Before `hub_sweep`, whose stub of `grain` would otherwise be what
    # keras-hub's `fit` takes for grain (and fail on).
    import keras_hub  # noqa: F401

    import keras_prune as kp
    from benchmarks import hub_sweep
    from benchmarks import hub_sweep_extra
    from keras_prune.core import patterns
    from keras_prune.integration.strip import pruning_wrappers

    builder, inputs, kind = MODELS[name]
    res = dict(model=name, backend=keras.backend.backend(), kind=kind)
    st = _Stages(res)
    keras.utils.set_random_seed(0)
    m = builder()
    x = inputs()
    res["cls"] = type(m).__name__
    res["params"] = int(m.count_params())
    st.done("build")
    os.makedirs(weights_dir, exist_ok=True)
    res["weights"] = _dense_weights(m, os.path.join(weights_dir, name + ".npz"))
    dense_out = _outputs(m, x)
    st.done("dense weights and forward")

    # 2. One-shot pruning: exact counts and mask digests.
    p = kp.prune_once(m, 0.5)
    n_t, n_w, wrong, dig = _check_per_tensor(p, 0.5)
    res["once"] = dict(tensors=n_t, weights=n_w, wrong=wrong, digests=dig)
    del p
    st.done("prune_once 0.5")

    p = kp.prune_once(m, 0.8, allocation="global")
    masked = _masked(p)
    total = sum(mask.size for _, _, mask, _ in masked)
    kept = sum(int(mask.sum()) for _, _, mask, _ in masked)
    res["global"] = dict(
        total=total,
        kept=kept,
        want=int(kp.kept_count(total, 0.8)),
        nonzero=sum(int(np.count_nonzero(v)) for *_, v in masked),
        empty=[v.path for _, v, mask, _ in masked if not mask.any()],
        digests={v.path: _digest(mask) for _, v, mask, _ in masked},
    )
    del p, masked
    st.done("prune_once global 0.8")

    p = kp.prune_once(m, 0.5, sparsity_m_by_n=(2, 4))
    bad, ok, warned, dig = [], 0, 0, {}
    plan_warn = {
        (r["layer"], r["weight"])
        for r in kp.pruning_plan(p)
        if "WARNING" in r["reason"]
    }
    for owner, v, mask, value in _masked(p):
        axis = patterns.contracted_axes(owner, v)
        dig[v.path] = _digest(mask)
        if kp.is_pruned_m_by_n(value, (2, 4), axis=axis) and not mask.all():
            ok += 1
        elif (owner.name, v.name) in plan_warn:
            warned += 1
        else:
            bad.append((v.path, tuple(v.shape), str(axis)))
    res["m_by_n"] = dict(ok=ok, warned=warned, bad=bad, digests=dig)
    if kind == "causal_lm":
        a = hub_sweep_extra._generate(p, kind)
        b = hub_sweep_extra._generate(kp.strip_pruning(p), kind)
        res["m_by_n"]["generate_equal"] = bool(np.array_equal(a, b))
    del p
    st.done("prune_once 2:4")

    # 3. Default wrap, fit, strip, save, load.
    p = kp.prune_low_magnitude(m)
    # A pruned Keras-Hub model is a subclass of the same name (inplace.py).
    res["same_class_pruned"] = isinstance(p, type(m)) and (
        type(p).__name__ == type(m).__name__
    )
    res["wrappers"] = len(pruning_wrappers(p))
    wrapped = {v.path for w in pruning_wrappers(p) for v in w.pruned_weights}
    res["kernels_not_wrapped"] = sorted(
        v.path
        for v in m.weights
        if v.path.endswith("kernel") and len(v.shape) >= 2
    )
    res["kernels_not_wrapped"] = [
        k for k in res["kernels_not_wrapped"] if k not in wrapped
    ]
    st.done("prune_low_magnitude")
    _fit(p, x, kind)
    res["step"] = int(hub_sweep.np_(kp.pruning_step(p)))
    st.done("fit 2 steps")
    n_t, n_w, wrong, _ = _check_per_tensor(p, 0.5)
    res["fit"] = dict(tensors=n_t, weights=n_w, wrong=wrong)
    want = _outputs(p, x)
    res["pruned_vs_dense_maxdiff"] = _max_diff(want, dense_out)
    if kind == "causal_lm":
        gen_pruned = hub_sweep_extra._generate(p, kind)
    st.done("check and forward")
    s = kp.strip_pruning(p)
    res["strip_same_class"] = type(s) is type(m)
    res["strip_wrappers"] = len(pruning_wrappers(s))
    res["strip_n_weights"] = [len(s.weights), len(m.weights)]
    got = _outputs(s, x)
    res["strip_maxdiff"] = _max_diff(got, want)
    if kind == "causal_lm":
        res["generate_equal"] = bool(
            np.array_equal(hub_sweep_extra._generate(s, kind), gen_pruned)
        )
    st.done("strip")
    d = tempfile.mkdtemp()
    path = os.path.join(d, "stripped.keras")
    s.save(path)
    res["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
    st.done("save")
    del p, m
    gc.collect()
    loaded = keras.saving.load_model(path)
    res["load_same_class"] = type(loaded) is type(s)
    res["load_maxdiff"] = _max_diff(_outputs(loaded, x), got)
    os.remove(path)
    st.done("load")
    res["total_s"] = round(sum(v["s"] for v in res["stages"].values()), 1)
    res["peak_rss_mb"] = max(v["peak_rss_mb"] for v in res["stages"].values())
    return res


def ok(res):
    """The failed checks of one result line (empty: all passed)."""
    bad = []
    if "error" in res:
        return [res["error"]]
    for key in ("once", "fit"):
        if res[key]["wrong"]:
            bad.append(f"{key}: {res[key]['wrong'][:3]}")
    g = res["global"]
    if g["kept"] != g["want"] or g["nonzero"] != g["kept"] or g["empty"]:
        bad.append(f"global: {g['kept']} != {g['want']} or {g['empty']}")
    if res["m_by_n"]["bad"]:
        bad.append(f"2:4: {res['m_by_n']['bad'][:3]}")
    for key in ("same_class_pruned", "strip_same_class", "load_same_class"):
        if not res[key]:
            bad.append(key)
    if res["kernels_not_wrapped"]:
        bad.append(f"not wrapped: {res['kernels_not_wrapped'][:3]}")
    if res["strip_maxdiff"] or res["load_maxdiff"] or res["strip_wrappers"]:
        bad.append("stripped or loaded outputs differ")
    if res["step"] != 2:
        bad.append(f"step {res['step']}")
    for key in ("generate_equal",):
        if res.get(key) is False or res["m_by_n"].get(key) is False:
            bad.append("generate() differs")
    return bad


def compare(path):
    """Prints, per model, the checks and whether the masks of every
    backend are bit-identical (same digests, tensor by tensor)."""
    rows = [json.loads(line) for line in open(path)]
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["backend"]] = r
    for model, runs in by_model.items():
        for backend, r in runs.items():
            print(f"{model} {backend}: {ok(r) or 'all checks pass'}")
        done = [r for r in runs.values() if "error" not in r]
        for stage in ("once", "global", "m_by_n"):
            digests = [r[stage]["digests"] for r in done]
            same = all(d == digests[0] for d in digests)
            names = sorted(r["backend"] for r in done)
            print(
                f"{model} {stage}: masks of {names} "
                f"{'bit-identical' if same else 'DIFFER'}"
            )


def _main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), help="run one model")
    ap.add_argument("--all", action="store_true", help="every model, backend")
    ap.add_argument("--models", help="comma-separated subset for --all")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", help="JSON lines file to append to")
    ap.add_argument(
        "--weights-dir",
        default=os.path.join(tempfile.gettempdir(), "real_sizes_weights"),
        help="where the dense weights shared by the backends are kept",
    )
    ap.add_argument("--compare", metavar="JSONL", help="summarise a run")
    args = ap.parse_args()
    if args.compare:
        compare(args.compare)
        return
    if args.all:
        names = args.models.split(",") if args.models else list(MODELS)
        for name in names:
            for backend in args.backends.split(","):
                env = dict(os.environ, KERAS_BACKEND=backend)
                cmd = [sys.executable, "-m", "benchmarks.real_sizes"]
                cmd += ["--model", name, "--out", args.out]
                cmd += ["--weights-dir", args.weights_dir]
                print(name, backend, flush=True)
                subprocess.run(cmd, env=env, check=False)
        return
    if not args.model or not args.out:
        ap.error("--model and --out (or --all, or --compare)")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        res = run(args.model, args.weights_dir)
    except Exception as e:  # noqa: BLE001 - one line per model
        import keras

        res = dict(
            model=args.model,
            backend=keras.backend.backend(),
            error=f"{type(e).__name__}: {str(e)[:600]}",
            tb=traceback.format_exc()[-3000:],
        )
    with open(args.out, "a") as f:
        f.write(json.dumps(res, default=str) + "\n")
    print(args.model, res.get("total_s"), ok(res), flush=True)


if __name__ == "__main__":
    _main()
