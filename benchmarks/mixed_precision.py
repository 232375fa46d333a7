"""Pruning real models under a mixed precision policy, end to end.

docs/models.md, section 9 ("Session 13"). With
`keras.mixed_precision.set_global_policy(policy)` ("mixed_bfloat16" or
"mixed_float16"), a tiny GPT-2 causal LM (keras-hub, hidden 32) and
ResNet50 (`keras.applications`, 32x32 images): default
`prune_low_magnitude`, 2 `fit` steps with `UpdatePruningStep` (SGD, in a
`LossScaleOptimizer` for float16), exact `kept_count` per pruned tensor
(mask and stored weight), the pruned model saved and reloaded,
`strip_pruning` (same class), the stripped model saved and reloaded:
outputs equal throughout, and the same `generate()` tokens pruned and
stripped for GPT-2. One JSON line per model and policy.

    KERAS_BACKEND=jax python -m benchmarks.mixed_precision --out /tmp/mp.jsonl
"""

import argparse
import json
import os
import tempfile
import time
import traceback

import numpy as np

POLICIES = ("mixed_bfloat16", "mixed_float16")


def _gpt2():
    from benchmarks import hub_sweep_extra as extra

    m = extra.task(
        "GPT2CausalLM",
        "GPT2Backbone",
        vocabulary_size=extra.VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=extra.H,
        intermediate_dim=extra.FFN,
        max_sequence_length=32,
    )()
    return m, extra.tokens(2), "causal_lm"


def _resnet50():
    import keras

    m = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=4
    )
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3))
    return m, x.astype("float32"), "image"


MODELS = {"gpt2": _gpt2, "resnet50": _resnet50}


def run(name, policy):
    import keras
    import keras_hub  # noqa: F401 - before hub_sweep's stub of grain

    import keras_prune as kp
    from benchmarks import hub_sweep
    from benchmarks import hub_sweep_extra
    from keras_prune.integration.strip import pruning_wrappers

    res = dict(model=name, policy=policy, backend=keras.backend.backend())
    t0 = time.time()
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    try:
        m, x, kind = MODELS[name]()
        p = kp.prune_low_magnitude(m)
        res["wrappers"] = len(pruning_wrappers(p))
        res["wrapper_policies"] = sorted(
            {w.dtype_policy.name for w in pruning_wrappers(p)}
        )
        res["kernel_dtypes"] = sorted(
            {
                str(v.dtype)
                for w in pruning_wrappers(p)
                for v in w.pruned_weights
            }
        )
        opt = keras.optimizers.SGD(1e-2)
        if policy == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        if kind == "causal_lm":
            y = x["token_ids"]
            p.compile(optimizer=opt)
        else:
            y = np.array([0, 1], "int32")
            p.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        p.fit(x, y, batch_size=1, verbose=0, callbacks=[kp.UpdatePruningStep()])
        res["step"] = int(hub_sweep.np_(kp.pruning_step(p)))
        wrong = []
        for _w, _owner, v, value in hub_sweep.masked_values(p):
            want = int(kp.kept_count(value.size, 0.5))
            got = (
                int(np.count_nonzero(value)),
                int(np.count_nonzero(hub_sweep.np_(v))),
            )
            if got != (want, want):
                wrong.append((v.path, got, want))
        res["exact_wrong"] = wrong
        want = hub_sweep.outs(p, x)
        res["output_dtypes"] = sorted({str(o.dtype) for o in want})
        d = tempfile.mkdtemp()
        p.save(os.path.join(d, "p.keras"))
        lp = keras.saving.load_model(os.path.join(d, "p.keras"))
        res["pruned_reload_equal"] = all(
            np.array_equal(a, b) for a, b in zip(hub_sweep.outs(lp, x), want)
        )
        if kind == "causal_lm":
            gen = hub_sweep_extra._generate(p, kind)
        s = kp.strip_pruning(p)
        res["strip_same_class"] = type(s) is type(m)
        got = hub_sweep.outs(s, x)
        res["strip_equal"] = all(
            np.array_equal(a, b) for a, b in zip(got, want)
        )
        res["strip_policies"] = sorted(
            {
                layer.dtype_policy.name
                for layer in s._flatten_layers(include_self=False)
                if hasattr(layer, "dtype_policy")
            }
        )
        if kind == "causal_lm":
            res["generate_equal"] = bool(
                np.array_equal(hub_sweep_extra._generate(s, kind), gen)
            )
        s.save(os.path.join(d, "s.keras"))
        ls = keras.saving.load_model(os.path.join(d, "s.keras"))
        res["load_same_class"] = type(ls) is type(m)
        res["load_equal"] = all(
            np.array_equal(a, b) for a, b in zip(hub_sweep.outs(ls, x), got)
        )
    except Exception as e:  # noqa: BLE001 - one line per model
        res["error"] = f"{type(e).__name__}: {str(e)[:600]}"
        res["tb"] = traceback.format_exc()[-3000:]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    res["s"] = round(time.time() - t0, 1)
    return res


def _main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON lines to append to")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--policies", default=",".join(POLICIES))
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    for name in args.models.split(","):
        for policy in args.policies.split(","):
            res = run(name, policy)
            with open(args.out, "a") as f:
                f.write(json.dumps(res, default=str) + "\n")
            keys = ("step", "exact_wrong", "strip_equal", "load_equal", "error")
            print(name, policy, {k: res.get(k) for k in keys}, flush=True)


if __name__ == "__main__":
    _main()
