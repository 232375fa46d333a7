"""prune_once and first-fit-step time on ResNet50 (issue 17 item 11).

Run from the repository root:

    python -m benchmarks.realmodels_compile                  # this backend
    python -m benchmarks.realmodels_compile --all-backends   # one process each
    python -m benchmarks.realmodels_compile --no-fit         # prune_once only

Goals (issue 17.11): `prune_once` on ResNet50 <= 3 s on every backend, and
the first pruned `fit` step's compile time <= 1.5x the dense one's.

Each backend runs in its own process (with `--all-backends`, a child per
backend). Before anything is timed the process warms what Keras itself does
once per process: the first `get_config()` under JAX or torch imports
TensorFlow (about 8 s on a loaded 2-core machine), so a tiny Sequential's
config is serialized first; that time is reported as `warmup_s`, outside
every number below. Models are `keras.applications.ResNet50(weights=None,
input_shape=(S, S, 3), classes=10)` (nothing downloaded), a new one for
every measurement, built outside the timed region.

1. `prune_once(model, 0.5)`: the first call in the process and a second
   call (both on new models), then `allocation="global"` and
   `sparsity_m_by_n=(2, 4)` once each. Next to them, a dense baseline in
   the same process: `keras.models.clone_model(model)` plus one eager pass
   over its weights (`set_weights(get_weights())`), first and second call:
   the machine is shared, and the ratio to this baseline says more than
   seconds taken under an unknown load.
2. First `fit` step (compile + 1 step: `fit` on one batch of `--fit-batch`
   images of `--fit-size`^2 pixels, one epoch), for the dense model, the
   pruned one (`prune_low_magnitude`, `ConstantSparsity(0.5, 0)`) with
   `UpdatePruningStep`, and the same without a callback; then a second
   one-batch `fit` of each (no compile) so that `first - second`
   approximates the compile time. On JAX the XLA compile seconds Keras'
   steps take are also summed from `jax_log_compiles`.

The machine's load (`os.getloadavg`) before and after, and the CPU cores
used by other processes during each measurement, go with the numbers into
the one results file, `benchmarks/results/realmodels_compile.json` (run
block: command, commit, date, machine).
"""

import argparse
import logging
import os
import re
import sys
import time

from benchmarks import harness

harness.quiet_logs()

NAME = "realmodels_compile"


def _resnet(size):
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.ResNet50(
        weights=None, input_shape=(size, size, 3), classes=10
    )


def _timed(fn):
    load = harness.ForeignLoad()
    t0 = time.perf_counter()
    out = fn()
    harness.sync(out if not hasattr(out, "weights") else [])
    seconds = time.perf_counter() - t0
    return out, {"s": seconds, "other_cores": load.cores()}


class _CompileLog(logging.Handler):
    """Sums JAX's compile log lines (`jax_log_compiles`) by phase."""

    _SECONDS = r" .* in ([\d.e-]+) sec"
    PHASES = {
        "trace": re.compile(r"Finished tracing \+ transforming" + _SECONDS),
        "lower": re.compile(r"Finished jaxpr to MLIR module" + _SECONDS),
        "xla": re.compile(r"Finished XLA compilation of" + _SECONDS),
    }

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.reset()

    def reset(self):
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.programs = 0

    def emit(self, record):
        msg = record.getMessage()
        for phase, pattern in self.PHASES.items():
            m = pattern.search(msg)
            if m:
                self.seconds[phase] += float(m.group(1))
                if phase == "xla":
                    self.programs += 1

    def snapshot(self):
        out = {f"{k}_s": round(v, 4) for k, v in self.seconds.items()}
        out["xla_programs"] = self.programs
        return out


def _jax_compile_log():
    import jax

    handler = _CompileLog()
    jax.config.update("jax_log_compiles", True)
    for name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
    # The messages are WARNING records; keep them out of stderr.
    logging.getLogger("jax").propagate = False
    return handler


def _warm_keras():
    """What Keras does once per process: the first config imports TF."""
    import keras

    t0 = time.perf_counter()
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    keras.saving.serialize_keras_object(tiny)
    tiny.get_config()
    return time.perf_counter() - t0


def _dense_baseline(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _prune_once(args):
    import keras_prune

    rows = []

    def measure(label, fn):
        model = _resnet(args.size)
        _, row = _timed(lambda: fn(model))
        row["what"] = label
        rows.append(row)
        harness.log(f"{label:<32} {row['s']:7.2f} s")

    measure("dense baseline, first", _dense_baseline)
    measure("prune_once, first", lambda m: keras_prune.prune_once(m, 0.5))
    measure("prune_once, second", lambda m: keras_prune.prune_once(m, 0.5))
    measure("dense baseline, second", _dense_baseline)
    measure(
        "prune_once global",
        lambda m: keras_prune.prune_once(m, 0.5, allocation="global"),
    )
    measure(
        "prune_once 2:4",
        lambda m: keras_prune.prune_once(m, 0.5, sparsity_m_by_n=(2, 4)),
    )
    return rows


def _fit(args, compile_log):
    import numpy as np

    import keras_prune

    rng = np.random.RandomState(0)
    x = rng.rand(args.fit_batch, args.fit_size, args.fit_size, 3)
    x = x.astype("float32")
    y = rng.randint(0, 10, args.fit_batch)

    def make(mode):
        model = _resnet(args.fit_size)
        callbacks = []
        if mode != "dense":
            model = keras_prune.prune_low_magnitude(model)
            if mode == "pruned + UpdatePruningStep":
                callbacks = [keras_prune.UpdatePruningStep()]
        model.compile("sgd", "sparse_categorical_crossentropy")
        return model, callbacks

    rows = []
    fit_args = harness.fit_data(x, y, args.fit_batch)  # built untimed
    for mode in ("dense", "pruned + UpdatePruningStep", "pruned, no callback"):
        model, callbacks = make(mode)

        def one_fit(model=model, callbacks=callbacks):
            model.fit(
                **fit_args,
                epochs=1,
                verbose=0,
                callbacks=callbacks,
            )
            return []

        if compile_log is not None:
            compile_log.reset()
        _, first = _timed(one_fit)
        row = {"mode": mode, "first_s": first["s"]}
        row["first_other_cores"] = first["other_cores"]
        if compile_log is not None:
            row["jax_compile"] = compile_log.snapshot()
        _, second = _timed(one_fit)
        row["second_s"] = second["s"]
        row["second_other_cores"] = second["other_cores"]
        row["compile_estimate_s"] = first["s"] - second["s"]
        rows.append(row)
        extra = ""
        if compile_log is not None:
            c = row["jax_compile"]
            extra = (
                f"; JAX: {c['xla_programs']} programs, trace "
                f"{c['trace_s']:.2f} s, lower {c['lower_s']:.2f} s, XLA "
                f"{c['xla_s']:.2f} s"
            )
        harness.log(
            f"fit {mode:<28} first {first['s']:7.2f} s, second "
            f"{second['s']:6.2f} s{extra}"
        )
    dense = rows[0]
    for row in rows:
        row["first_vs_dense"] = row["first_s"] / dense["first_s"]
        row["compile_vs_dense"] = row["compile_estimate_s"] / max(
            dense["compile_estimate_s"], 1e-9
        )
        if "jax_compile" in row:
            d = dense["jax_compile"]
            c = row["jax_compile"]
            total = c["trace_s"] + c["lower_s"] + c["xla_s"]
            dtotal = d["trace_s"] + d["lower_s"] + d["xla_s"]
            row["jax_compile_vs_dense"] = total / max(dtotal, 1e-9)
    return rows


def run_backend(args):
    import keras

    if keras.backend.backend() == "torch":
        import torch

        # As in benchmarks.shrink: untrained networks' denormal activations
        # make eager torch several times slower, by the weights' values.
        torch.set_flush_denormal(True)
    out = {
        "backend": keras.backend.backend(),
        "loadavg_before": list(os.getloadavg()),
        "warmup_s": _warm_keras(),
        "size": args.size,
    }
    harness.log(
        f"[{out['backend']}] Keras warm-up (TF import by get_config) "
        f"{out['warmup_s']:.2f} s, not counted"
    )
    out["prune_once"] = _prune_once(args)
    if not args.no_fit:
        compile_log = None
        if out["backend"] == "jax":
            compile_log = _jax_compile_log()
        out["fit"] = {
            "size": args.fit_size,
            "batch": args.fit_batch,
            "rows": _fit(args, compile_log),
        }
    out["loadavg_after"] = list(os.getloadavg())
    return out


def table(results):
    lines = []
    headers = ["backend", "what", "s", "other cores"]
    rows = []
    for r in results:
        for p in r["prune_once"]:
            rows.append(
                [
                    r["backend"],
                    p["what"],
                    harness.fmt(p["s"], ".2f"),
                    harness.fmt(p["other_cores"], ".2f"),
                ]
            )
    lines.append(harness.markdown_table(headers, rows))
    rows = []
    for r in results:
        if not r.get("fit"):
            continue
        for f in r["fit"]["rows"]:
            rows.append(
                [
                    r["backend"],
                    f["mode"],
                    harness.fmt(f["first_s"], ".2f"),
                    harness.fmt(f["second_s"], ".2f"),
                    harness.fmt(f["first_vs_dense"], ".2f"),
                    harness.fmt(f["compile_vs_dense"], ".2f"),
                    harness.fmt(f.get("jax_compile_vs_dense"), ".2f"),
                ]
            )
    if rows:
        lines.append("")
        lines.append(
            harness.markdown_table(
                [
                    "backend",
                    "fit mode",
                    "first fit s",
                    "second fit s",
                    "first / dense",
                    "(first - second) / dense",
                    "JAX compile / dense",
                ],
                rows,
            )
        )
    for r in results:
        lines.append(
            f"{r['backend']}: load average before "
            f"{r['loadavg_before'][0]:.2f}, after {r['loadavg_after'][0]:.2f}"
            f"; Keras warm-up {r['warmup_s']:.2f} s (excluded)"
        )
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64, help="prune_once input")
    p.add_argument("--fit-size", type=int, default=32)
    p.add_argument("--fit-batch", type=int, default=8)
    p.add_argument("--no-fit", action="store_true")
    p.add_argument("--all-backends", action="store_true")
    p.add_argument("--backends", nargs="+", default=list(harness.BACKENDS))
    p.add_argument(
        "--json-out",
        default=None,
        help="results file (default benchmarks/results/realmodels_compile"
        ".json; a child writes its backend's result here)",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        harness.write_json(args.json_out, run_backend(args))
        return 0
    results = []
    if args.all_backends:
        for b in args.backends:
            harness.log(f"=== backend {b} ===")
            child = harness.child_argv(
                harness.module_name(__spec__ or __file__),
                {
                    "size": args.size,
                    "fit_size": args.fit_size,
                    "fit_batch": args.fit_batch,
                },
                ["no_fit"] if args.no_fit else [],
            )
            try:
                results.append(
                    harness.run_child(child, {"KERAS_BACKEND": b}, label=b)
                )
            except RuntimeError as e:
                harness.log(f"backend {b} failed, going on without it: {e}")
    else:
        results.append(run_backend(args))
    print(f"Machine: {harness.format_machine(harness.machine_info())}\n")
    print(table(results))
    path = harness.save_results(NAME, {"results": results}, args.json_out)
    harness.log(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
