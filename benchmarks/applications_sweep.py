"""The cheap checks of tests/test_applications.py, one model per process.

docs/models.md, section 8 ("Session 13"). With `KERAS_PRUNE_MODELS=all`
the tests rebuild a model for each of their tests; this runs, on one
built model of each named constructor (`weights=None`, the smallest input,
4 classes), the tests' own functions: default wrap covers every kernel and
`prune_once(0.5)` is exact per tensor; 2:4 along the contracted axes;
`allocation="global"` at 0.8 exact with no tensor emptied; and the
stripped `prune_once` model keeps its class and layer count, with outputs
bit-identical to the pruned model's. One JSON line per model.

    KERAS_BACKEND=torch python -m benchmarks.applications_sweep \
        --models InceptionV3,DenseNet121 --out /tmp/apps.jsonl
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

TESTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests")


def run(name):
    sys.path.insert(0, TESTS)
    import keras
    import numpy as np
    import test_applications as t

    import keras_prune as kp
    from keras_prune.integration.strip import pruning_wrappers

    res = dict(model=name, backend=keras.backend.backend(), checks={})
    t0 = time.time()
    model = t.build(name)
    res["params"] = int(model.count_params())
    res["build_s"] = round(time.time() - t0, 1)
    checks = (
        ("wrap_and_prune_once_exact", t.test_prunes_with_defaults_exactly),
        ("m_by_n_2_4", t.test_2_by_4_along_contracted_axes),
        ("global_0_8", t.test_global_allocation_exact_and_no_empty_tensor),
    )
    for key, test in checks:
        t1 = time.time()
        try:
            test(name)
            res["checks"][key] = "ok"
        except Exception as e:  # noqa: BLE001 - one line per check
            res["checks"][key] = f"{type(e).__name__}: {str(e)[:400]}"
        res[key + "_s"] = round(time.time() - t1, 1)
    t1 = time.time()
    try:
        pruned = kp.prune_once(model, 0.5)
        res["wrappers"] = len(pruning_wrappers(pruned))
        x = t.images(name)
        want = t.to_np(pruned(x, training=False))
        stripped = kp.strip_pruning(pruned)
        got = t.to_np(stripped(x, training=False))
        same = (
            type(stripped) is type(model)
            and len(stripped.layers) == len(model.layers)
            and not pruning_wrappers(stripped)
            and np.array_equal(got, want)
        )
        res["checks"]["strip"] = "ok" if same else "differs"
        res["layers"] = len(stripped.layers)
    except Exception as e:  # noqa: BLE001
        res["checks"]["strip"] = f"{type(e).__name__}: {str(e)[:400]}"
        res["tb"] = traceback.format_exc()[-2000:]
    res["strip_s"] = round(time.time() - t1, 1)
    res["total_s"] = round(time.time() - t0, 1)
    return res


def _main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="comma-separated")
    ap.add_argument("--out", required=True, help="JSON lines to append to")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.one:
        for name in args.models.split(","):
            cmd = [sys.executable, "-m", "benchmarks.applications_sweep"]
            cmd += ["--one", "--models", name, "--out", args.out]
            subprocess.run(cmd, check=False)
        return
    import warnings

    warnings.filterwarnings("ignore")
    res = run(args.models)
    with open(args.out, "a") as f:
        f.write(json.dumps(res) + "\n")
    print(args.models, res["total_s"], res["checks"], flush=True)


if __name__ == "__main__":
    _main()
