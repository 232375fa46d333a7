"""Sweep every Keras-Hub backbone (and its main task) through keras-prune.

Issue 17's "Done when" run, done by us first (docs/models.md, section 9).
Each `*Backbone` of keras-hub is built with the tiny configuration of
keras-hub's own backbone test (`self.init_kwargs` and `self.input_data` of
`keras_hub/src/models/*/*_backbone_test.py`: the test files are not in the
wheel, so a source checkout is needed), wrapped in its main task where it
has one (`preprocessor=None`), and checked: default
`prune_low_magnitude`, `prune_once(0.5)` exact counts and the plan,
save/load of the pruned model (wrappers), 2:4 along contracted axes,
`allocation="global"` at 0.8, strip (class, weight count, outputs) and
save/load. One JSON line per model.

    KERAS_BACKEND=jax python -m benchmarks.hub_sweep \
        --keras-hub-src /tmp/keras-hub --out /tmp/hub_sweep.jsonl [--only A,B]

A throwaway harness: it runs keras-hub's test `setUp`s (with `grain`
stubbed) and is not part of the test suite.
"""

import argparse
import glob
import importlib.util
import inspect
import json
import os
import signal
import sys
import tempfile
import time
import traceback
import types
import warnings

import keras
import numpy as np

import keras_prune as kp
from keras_prune.core import patterns
from keras_prune.integration.state import pruning_wrappers

warnings.filterwarnings("ignore")

INDEX = {}


class _Stub(types.ModuleType):
    def __getattr__(self, n):
        if n.startswith("__"):
            raise AttributeError(n)
        return _Stub(n)

    def __call__(self, *a, **k):
        return _Stub("x")


for _m in ("grain", "grain.python"):
    sys.modules.setdefault(_m, _Stub(_m))
ROOT = None  # set by main(): <keras-hub checkout>/keras_hub/src/models


def load(path):
    name = "khtest_" + os.path.basename(path)[:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases(pattern="*_backbone_test.py", only=None):
    out = []
    paths = sorted(glob.glob(f"{ROOT}/*/{pattern}"))
    if only is not None:
        paths = [INDEX[only]]
    for path in paths:
        try:
            mod = load(path)
        except Exception as e:
            out.append(
                (
                    os.path.basename(path),
                    None,
                    None,
                    f"import: {type(e).__name__}: {e}"[:300],
                )
            )
            continue
        for cname, c in vars(mod).items():
            if not (
                inspect.isclass(c)
                and c.__module__ == mod.__name__
                and hasattr(c, "setUp")
            ):
                continue
            try:
                t = c("setUp")
                t.setUp()
            except Exception as e:
                out.append(
                    (cname, None, None, f"setUp: {type(e).__name__}: {e}"[:300])
                )
                continue
            kw = getattr(t, "init_kwargs", None)
            if kw is None:
                continue
            cls = None
            for n, v in vars(mod).items():
                if (
                    inspect.isclass(v)
                    and n.endswith("Backbone")
                    and issubclass(v, keras.Model)
                    and n != "Backbone"
                ):
                    ps = inspect.signature(v.__init__).parameters
                    if (
                        all(k in ps for k in kw)
                        or "kwargs" in ps
                        and cls is None
                    ):
                        if all(k in ps for k in kw):
                            cls = v
            out.append(
                (cname, (cls, kw), getattr(t, "input_data", None), None, path)
            )
    return out


TASK_ORDER = [
    "CausalLM",
    "Seq2SeqLM",
    "AudioToText",
    "TextClassifier",
    "ImageClassifier",
    "ImageSegmenter",
    "ObjectDetector",
    "DepthEstimator",
]


def err(e):
    return f"{type(e).__name__}: {str(e)[:600]}"


def np_(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def outs(m, x):
    return [np_(t) for t in keras.tree.flatten(m(x, training=False))]


def eff_rank(v):
    return sum(1 for d in v.shape if int(d) > 1)


def check_exact(p, sparsity):
    bad = []
    rows = kp.sparsity_report(p, pattern=False)
    for r in rows:
        if r["pruned"]:
            want = int(kp.kept_count(r["params"], sparsity))
            got = r["params"] - r["zeros"]
            if got != want:
                bad.append((r["layer"], r["weight"], r["shape"], got, want))
    return rows, bad


def masked_values(p):
    out = []
    for w in pruning_wrappers(p):
        for v, m in zip(w.pruned_weights, w.masks):
            from keras_prune.integration import registry

            owner = registry.owner_of(w.layer, v)
            out.append((w, owner, v, np.where(np_(m), np_(v), 0)))
    return out


def find_task(bb_cls):
    import keras_hub  # here: `--help` (the import test) needs none of it

    cands = {}
    for n in dir(keras_hub.models):
        c = getattr(keras_hub.models, n)
        if (
            isinstance(c, type)
            and issubclass(c, keras_hub.models.Task)
            and getattr(c, "backbone_cls", None) is bb_cls
        ):
            for i, base in enumerate(TASK_ORDER):
                if any(b.__name__ == base for b in c.__mro__):
                    cands.setdefault(i, c)
                    break
    return cands[min(cands)] if cands else None


def main(case_name, use_task):
    res = dict(case=case_name, task=use_task)
    found = {c[0]: c for c in cases(only=case_name)}
    _, (cls, kw), x, _, _ = found[case_name]
    keras.utils.set_random_seed(0)
    t0 = time.time()

    def build():
        bb = cls(**kw)
        if not use_task:
            return bb
        tcls = find_task(cls)
        if tcls is None:
            return bb
        kws = dict(backbone=bb, preprocessor=None)
        import inspect

        params = inspect.signature(tcls.__init__).parameters
        if "num_classes" in params:
            kws["num_classes"] = 3
        if "depth_estimation_type" in params:
            kws["depth_estimation_type"] = "relative"
        return tcls(**kws)

    try:
        m = build()
        res["cls"] = type(m).__name__
        res["n_weights"] = len(m.weights)
        outs(m, x)
    except Exception as e:
        res["build"] = err(e)
        res["tb"] = traceback.format_exc()[-3000:]
        return res
    res["build_s"] = round(time.time() - t0, 1)
    check_model(m, x, res)
    res["total_s"] = round(time.time() - t0, 1)
    return res


def check_model(m, x, res):
    """Runs the sweep's checks on the built model `m` (inputs `x`), adding
    their results to the dict `res`. Also used by `hub_sweep_extra`."""
    # B. default wrap
    try:
        p = kp.prune_low_magnitude(m)
        res["default_wrap"] = "ok"
        res["wrappers"] = len(pruning_wrappers(p))
        del p
    except Exception as e:
        res["default_wrap"] = err(e)
        res["tb"] = traceback.format_exc()[-3000:]
    # C. prune_once 0.5
    try:
        p = kp.prune_once(m, 0.5)
        rows, bad = check_exact(p, 0.5)
        res["exact_bad"] = bad
        res["n_pruned"] = sum(r["pruned"] for r in rows)
        plan = kp.pruning_plan(p)
        res["plan_pruned"] = sum(r["pruned"] for r in plan)
        skipped = {}
        for r in plan:
            if not r["pruned"] and sum(1 for d in r["shape"] if d > 1) >= 2:
                skipped.setdefault(r["reason"][:110], []).append(
                    f"{r['layer']}/{r['weight']}{r['shape']}"
                )
        res["skipped_rank2"] = skipped
        res["plan_rows"] = len(plan)
        res["model_float_vars"] = len(
            [v for v in m.weights if "float" in str(v.dtype)]
        )
        y1 = outs(p, x)
        try:  # the pruned model, wrappers and all, saves and reloads
            d = tempfile.mkdtemp()
            p.save(os.path.join(d, "p.keras"))
            lp = keras.saving.load_model(os.path.join(d, "p.keras"))
            res["pruned_reload_cls"] = type(lp).__name__
            res["pruned_reload_wrappers"] = len(pruning_wrappers(lp))
            res["pruned_reload_maxdiff"] = max(
                float(np.max(np.abs(a - b))) if a.size else 0.0
                for a, b in zip(y1, outs(lp, x))
            )
            del lp
        except Exception as e:
            res["pruned_reload"] = err(e)
        s = kp.strip_pruning(p)
        res["strip_cls_ok"] = type(s) is type(m)
        res["strip_nweights"] = (len(s.weights), len(m.weights))
        y2 = outs(s, x)
        res["strip_out_maxdiff"] = max(
            float(np.max(np.abs(a - b))) if a.size else 0.0
            for a, b in zip(y1, y2)
        )
        d = tempfile.mkdtemp()
        path = os.path.join(d, "s.keras")
        s.save(path)
        l = keras.saving.load_model(path)
        y3 = outs(l, x)
        res["reload_cls"] = type(l).__name__
        res["reload_maxdiff"] = max(
            float(np.max(np.abs(a - b))) if a.size else 0.0
            for a, b in zip(y2, y3)
        )
        del p, s, l
    except Exception as e:
        res["prune_once"] = err(e)
        res["tb"] = traceback.format_exc()[-3000:]
    # D. 2:4
    try:
        p = kp.prune_once(m, 0.5, sparsity_m_by_n=(2, 4))
        plan = kp.pruning_plan(p)
        warned = {
            (r["layer"], r["weight"]) for r in plan if "WARNING" in r["reason"]
        }
        nm_bad, nm_ok = [], 0
        for _w, owner, v, val in masked_values(p):
            axis = patterns.contracted_axes(owner, v)
            ok = kp.is_pruned_m_by_n(val, (2, 4), axis=axis)
            sp = 1 - np.count_nonzero(val) / val.size
            if ok and sp > 0:
                nm_ok += 1
            elif (owner.name, v.name) not in warned:
                nm_bad.append(
                    (
                        owner.name,
                        v.name,
                        tuple(v.shape),
                        axis,
                        bool(ok),
                        round(sp, 3),
                    )
                )
        res["nm_ok"] = nm_ok
        res["nm_bad"] = nm_bad
        res["nm_warned"] = sorted(map(str, warned))
        del p
    except Exception as e:
        res["nm"] = err(e)
    # E. global 0.8
    try:
        p = kp.prune_once(m, 0.8, allocation="global")
        rows = kp.sparsity_report(p, pattern=False)
        pr = [r for r in rows if r["pruned"]]
        N = sum(r["params"] for r in pr)
        K = sum(r["params"] - r["zeros"] for r in pr)
        res["global"] = dict(
            N=N,
            kept=K,
            want=int(kp.kept_count(N, 0.8)),
            collapsed=[
                (r["layer"], r["weight"])
                for r in pr
                if r["zeros"] == r["params"]
            ],
        )
        del p
    except Exception as e:
        res["global"] = err(e)
    return res


def _main():
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keras-hub-src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="comma-separated test classes")
    ap.add_argument("--backbone", action="store_true", help="no task")
    args = ap.parse_args()
    ROOT = os.path.join(args.keras_hub_src, "keras_hub", "src", "models")
    globals()["ROOT"] = ROOT
    INDEX.update({c[0]: c[4] for c in cases() if c[1]})

    def alarm(*a):
        raise TimeoutError("case took > 240 s")

    signal.signal(signal.SIGALRM, alarm)
    names = args.only.split(",") if args.only else list(INDEX)
    for name in names:
        signal.alarm(240)
        try:
            r = main(name, not args.backbone)
        except BaseException as e:  # noqa: BLE001 - one line per model
            r = dict(case=name, crash=err(e))
        signal.alarm(0)
        keras.utils.clear_session()
        print(
            name,
            "ok" if r.get("default_wrap") == "ok" else "see out",
            flush=True,
        )
        with open(args.out, "a") as f:
            f.write(json.dumps(r, default=str) + "\n")


if __name__ == "__main__":
    _main()
