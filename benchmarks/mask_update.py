"""Benchmark: one mask update, keras-prune's radix select vs. a full sort.

For the current KERAS_BACKEND (or every backend with `--all-backends`, each
in its own subprocess), on a float32 tensor of standard-normal values, it
times (median after one warm-up run; see below for the number of runs):

- ours (compiled in-step): `keras_prune.magnitude_mask(w, sparsity)`
  inside a compiled function, as in a training step;
- eager (the public call): `keras_prune.magnitude_mask(w, 0.9)` called
  eagerly on a backend tensor, as a user calls it (on the CPU it runs the
  NumPy host select on every backend);
- host: `keras_prune.core.masks.host_mask(w, 0.9)` on a NumPy array (what
  `UpdatePruningStep` runs between steps);
- group (compiled global update): one global threshold over the tensor
  split into 4 tensors (`allocation.global_counts` + `mask_for_count` per
  tensor, as `PruningGroup.recompute` in a compiled step);
- full sort: what tfmot does, written with the backend's own ops:
  `keras.ops.top_k(|w|, k=n)`, threshold = `values[k - 1]`,
  mask = `|w| >= threshold`;
- tfmot (TF top_k full sort): tfmot 0.8.1's mask update op for op, in
  TensorFlow eager (`tf.math.top_k(k=size)`, threshold gather, `>=`, one-hot
  of the threshold's position), in the same process whenever TensorFlow is
  importable, whatever the backend;
- one pass: `keras.ops.sum(keras.ops.abs(w))`, the cost of reading the tensor
  once, as a floor.

The machine may be shared, so the methods are timed round-robin
(`--repeats` rounds; in each round a fast method runs as many times in a row
as fill 0.1 s, at most 25), and each gets the median of all its runs: the
load of other processes then hits every method alike. Before each (n,
sparsity) the script waits up to `--max-wait` s for other processes to use
less than `--quiet-cores` cores, and it reports their load while timing.

"ours", "full sort" and "one pass" are compiled with `jax.jit` on JAX and
`tf.function(jit_compile=True)` on TensorFlow, and run eagerly on torch. The
sparsity is passed as a float32 tensor argument, as in training.

Peak memory of ours is measured in a fresh subprocess per measurement: after
a warm-up call (compilation included), the peak RSS (VmHWM) is reset through
/proc/self/clear_refs, one call is run, and `VmHWM - VmRSS(before)` is
reported as a multiple of the tensor's bytes (4 n). It includes the returned
bool mask (1 byte per weight = 0.25x). glibc is told to mmap every block of
64 KiB or more (MALLOC_MMAP_THRESHOLD_), so freed buffers really leave the
process and cannot hide the peak; on TensorFlow the probe runs with
TF_ENABLE_ONEDNN_OPTS=0, because the oneDNN CPU allocator pools large
buffers (same reason). Linux only.

Usage:

    KERAS_BACKEND=jax python -m benchmarks.mask_update --sizes 1048576
    python -m benchmarks.mask_update --all-backends --repeats 3

The tfmot column is timed in the same process as the others, round-robin,
so every speed-up is a side-by-side ratio of one run.
"""

import argparse
import gc
import json
import sys

import numpy as np

from benchmarks import harness

DEFAULT_SIZES = (1048576, 4194304, 16777216)
DEFAULT_SPARSITIES = (0.9, 0.5)


# ----------------------------------------------------------------- functions


def _functions():
    """Uncompiled `fn(w, sparsity) -> result` for each method."""
    from keras import ops

    import keras_prune

    def ours(w, sparsity):
        return keras_prune.magnitude_mask(w, sparsity)

    def full_sort(w, sparsity):
        mags = ops.abs(w)
        flat = ops.reshape(mags, (-1,))
        n = flat.shape[0]
        k = keras_prune.kept_count(n, sparsity)
        values, _ = ops.top_k(flat, k=n)  # descending: a full sort
        threshold = ops.take(values, k - 1)
        return ops.greater_equal(mags, threshold)

    def one_pass(w, sparsity):
        del sparsity
        return ops.sum(ops.abs(w))

    def group(w, sparsity):
        from keras_prune.core import allocation
        from keras_prune.core import masks

        flat = ops.reshape(w, (-1,))
        n = flat.shape[0]
        cut = [0, n // 4, n // 2, 3 * n // 4, n]
        bits = [masks.magnitude_bits(flat[a:b]) for a, b in zip(cut, cut[1:])]
        counts, _ = allocation.global_counts(
            bits, keras_prune.kept_count(n, sparsity)
        )
        return [
            masks.mask_for_count(b, counts[i], b.shape)[0]
            for i, b in enumerate(bits)
        ]

    return {
        "ours": ours,
        "full_sort": full_sort,
        "one_pass": one_pass,
        "group": group,
    }


def _tfmot_tf_update(w_tf, sparsity):
    """tfmot 0.8.1's unstructured mask update, in TensorFlow eager."""
    import tensorflow as tf

    mags = tf.abs(w_tf)
    n = tf.size(mags)
    keep = tf.cast(
        tf.maximum(tf.round(tf.cast(n, tf.float32) * (1.0 - sparsity)), 1.0),
        tf.int32,
    )
    flat = tf.reshape(mags, [-1])
    values, order = tf.math.top_k(flat, k=n)
    threshold = tf.gather(values, keep - 1)
    at = tf.gather(order, keep - 1)
    above = tf.greater_equal(mags, threshold)
    hit = tf.reshape(
        tf.one_hot(at, n, on_value=True, off_value=False), tf.shape(mags)
    )
    return tf.logical_or(above, hit)


def _weights(n, seed):
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def _tensorflow_importable():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------- timing


def run_backend(
    sizes,
    sparsities,
    repeats,
    seed,
    with_tfmot_tf=True,
    quiet=None,
    skip_eager=False,
    full_sort=True,
):
    """Times every method for the current backend. Returns a list of rows.

    The methods are timed round-robin (`harness.time_interleaved`), so that
    the load of other processes on a shared machine hits all of them alike.
    `quiet`: keyword arguments of `harness.wait_quiet`, called before each
    (n, sparsity); the cores used by other processes during the timing are
    recorded in `other_load_cores`.
    """
    quiet = quiet or {}
    import keras
    from keras import ops

    import keras_prune

    backend = keras.backend.backend()
    fns = {k: harness.compile_fn(f) for k, f in _functions().items()}
    tf_ok = with_tfmot_tf and _tensorflow_importable()
    rows = []
    for n in sizes:
        w_np = _weights(n, seed)
        w = ops.convert_to_tensor(w_np)
        w_tf = None
        if tf_ok:
            import tensorflow as tf

            w_tf = tf.constant(w_np)
        for s in sparsities:
            s_t = ops.convert_to_tensor(np.float32(s))
            row = {"backend": backend, "n": n, "sparsity": s}
            calls = {
                name: (lambda fn=fns[name]: fn(w, s_t))
                for name in ("ours", "one_pass", "full_sort", "group")
                if full_sort or name != "full_sort"
            }
            if not skip_eager:
                from keras_prune.core import masks

                calls["eager"] = lambda: keras_prune.magnitude_mask(w, s)
                calls["host"] = lambda: masks.host_mask(w_np, s)[0]
            if tf_ok:
                import tensorflow as tf

                s_tf = tf.constant(s, tf.float32)
                calls["tfmot_tf"] = lambda: _tfmot_tf_update(w_tf, s_tf)
            harness.wait_quiet(**quiet)
            timed = harness.time_interleaved(calls, repeats)
            row["other_load_cores"] = timed.pop(None)
            for name, t in timed.items():
                row[f"{name}_s"] = t["median_s"]
                row[f"{name}_all_s"] = t["runs_s"]
                row[f"{name}_first_call_s"] = t["first_call_s"]
                harness.log(
                    f"{backend} n={n} s={s} {name}: {t['median_s'] * 1e3:.1f}"
                    f" ms (median of {len(t['runs_s'])} runs: "
                    f"{[round(x * 1e3, 1) for x in t['runs_s'][:6]]}...)"
                )
            harness.log(
                f"other processes used {row['other_load_cores']:.2f} cores"
            )
            row.setdefault("tfmot_tf_s", None)
            outs = {name: call() for name, call in calls.items()}
            # Correctness: ours keeps exactly kept_count; it agrees with the
            # full sort wherever the full sort has no ties at the threshold.
            k = int(ops.convert_to_numpy(keras_prune.kept_count(n, s)))
            ours_m = np.asarray(ops.convert_to_numpy(outs["ours"]), bool)
            sort_m = np.asarray(
                ops.convert_to_numpy(outs.get("full_sort", outs["ours"])), bool
            )
            row["expected_kept"] = k
            row["ours_kept"] = int(ours_m.sum())
            for name in ("eager", "host"):
                if name in outs:
                    other = np.asarray(ops.convert_to_numpy(outs[name]), bool)
                    row[f"{name}_equals_ours"] = bool(
                        np.array_equal(other.reshape(ours_m.shape), ours_m)
                    )
            group_m = np.concatenate(
                [
                    np.asarray(ops.convert_to_numpy(m), bool)
                    for m in outs["group"]
                ]
            )
            row["group_kept"] = int(group_m.sum())
            row["full_sort_kept"] = int(sort_m.sum())
            row["ours_vs_full_sort_mismatches"] = int(
                np.count_nonzero(ours_m != sort_m)
            )
            if tf_ok:
                tf_m = np.asarray(outs["tfmot_tf"].numpy(), bool)
                row["tfmot_tf_kept"] = int(tf_m.sum())
            del outs, ours_m, sort_m
            gc.collect()
            rows.append(row)
    return rows


# ----------------------------------------------------------------- memory


def memory_probe(method, n, sparsity, seed):
    """Runs in a fresh process: peak extra RSS of one call, in bytes."""
    from keras import ops

    fn = harness.compile_fn(_functions()[method])
    w = ops.convert_to_tensor(_weights(n, seed))
    s_t = ops.convert_to_tensor(np.float32(sparsity))
    out = harness.sync(fn(w, s_t))  # warm-up, compilation included
    del out
    gc.collect()
    if not harness.reset_peak_rss():
        return None
    before = harness.proc_status_kib("VmRSS")["VmRSS"]
    out = harness.sync(fn(w, s_t))
    peak = harness.proc_status_kib("VmHWM")["VmHWM"]
    del out
    return (peak - before) * 1024


def measure_memory(method, n, sparsity, seed):
    """Peak extra memory of one call as a multiple of 4 n bytes, or None."""
    import keras

    env = dict(harness.MEMORY_PROBE_ENV)
    env["KERAS_BACKEND"] = keras.backend.backend()
    if env["KERAS_BACKEND"] == "tensorflow":
        # With oneDNN on, TensorFlow allocates large CPU buffers from a
        # pooling (BFC) allocator that keeps the warm-up run's buffers
        # resident, so the measured run shows no growth at all. The plain
        # allocator gives the real peak; XLA's buffer plan is the same.
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    try:
        result = harness.run_child(
            [
                harness.module_name(__spec__ or __file__),
                "--memory-probe",
                method,
                "--n",
                str(n),
                "--sparsity",
                str(sparsity),
                "--seed",
                str(seed),
            ],
            env,
            timeout=900,
            label=f"memory probe {method} n={n}",
        )
    except RuntimeError as e:
        harness.log(f"memory probe failed: {e}")
        return None
    extra = result.get("extra_bytes")
    return None if extra is None else extra / (4 * n)


def add_memory(rows, seed, sort_memory):
    for row in rows:
        n, s, b = row["n"], row["sparsity"], row["backend"]
        row["ours_peak_x"] = measure_memory("ours", n, s, seed)
        harness.log(f"{b} n={n} s={s} ours peak: {row['ours_peak_x']}")
        if sort_memory:
            row["full_sort_peak_x"] = measure_memory("full_sort", n, s, seed)
            harness.log(
                f"{b} n={n} s={s} full-sort peak: {row['full_sort_peak_x']}"
            )


# ----------------------------------------------------------------- tables

HEADERS = (
    "backend",
    "n",
    "sparsity",
    "tfmot-TF ms",
    "eager (public) ms",
    "compiled ms",
    "host ms",
    "group ms",
    "full-sort ms",
    "one-pass ms",
    "eager vs tfmot",
    "compiled vs tfmot",
    "host vs tfmot",
    "group vs tfmot",
    "eager / one-pass",
    "host / one-pass",
    "compiled peak mem",
)


def _ratio(a, b, spec=".0f"):
    if a is None or b is None or b == 0:
        return "n/a"
    return format(a / b, spec) + "x"


def table(rows):
    out = []
    for r in rows:
        ms = lambda key: harness.fmt(  # noqa: E731
            None if r.get(key) is None else r[key] * 1e3
        )
        mem = lambda key: (  # noqa: E731
            "n/a" if r.get(key) is None else f"{r[key]:.2f}x"
        )
        tfmot = r.get("tfmot_tf_s")
        out.append(
            (
                r["backend"],
                f"{r['n']:,}",
                f"{r['sparsity']:g}",
                ms("tfmot_tf_s"),
                ms("eager_s"),
                ms("ours_s"),
                ms("host_s"),
                ms("group_s"),
                ms("full_sort_s"),
                ms("one_pass_s"),
                _ratio(tfmot, r.get("eager_s")),
                _ratio(tfmot, r.get("ours_s")),
                _ratio(tfmot, r.get("host_s")),
                _ratio(tfmot, r.get("group_s")),
                _ratio(r.get("eager_s"), r["one_pass_s"], ".1f"),
                _ratio(r.get("host_s"), r["one_pass_s"], ".1f"),
                mem("ours_peak_x"),
            )
        )
    return harness.markdown_table(HEADERS, out)


def _loads(row):
    return harness.fmt(row.get("other_load_cores"), ".2f")


def check_lines(rows):
    lines = []
    for r in rows:
        ok = r["ours_kept"] == r["expected_kept"]
        lines.append(
            f"- {r['backend']} n={r['n']} s={r['sparsity']:g}: ours kept "
            f"{r['ours_kept']} (expected {r['expected_kept']}, "
            f"group kept {r.get('group_kept', 'n/a')}, eager and host "
            f"masks equal ours: {r.get('eager_equals_ours', 'n/a')}/"
            f"{r.get('host_equals_ours', 'n/a')}, "
            f"{'OK' if ok else 'WRONG'}); full sort kept "
            f"{r['full_sort_kept']}; tfmot-TF kept "
            f"{r.get('tfmot_tf_kept', 'n/a')}; ours vs full-sort mask "
            f"differences: {r['ours_vs_full_sort_mismatches']}; other "
            f"processes' load while timing (cores): {_loads(r)}"
        )
    return "\n".join(lines)


def tfmot_venv_table(results):
    headers = (
        "n",
        "sparsity",
        "update ms (tf.function)",
        "sort only ms",
        "tfmot _update_mask ms",
        "realised sparsity",
    )
    rows = []
    for r in results:
        rows.append(
            (
                f"{r['n']:,}",
                f"{r['sparsity']:g}",
                harness.fmt(r["seconds"] * 1e3),
                harness.fmt(r["sort_seconds"] * 1e3),
                harness.fmt(
                    None
                    if r.get("tfmot_impl_seconds") is None
                    else r["tfmot_impl_seconds"] * 1e3
                ),
                f"{r['realised_sparsity']:.6f}",
            )
        )
    return harness.markdown_table(headers, rows)


# ----------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    p.add_argument(
        "--sparsities", type=float, nargs="+", default=DEFAULT_SPARSITIES
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--all-backends",
        action="store_true",
        help="run once per backend, each in a subprocess; one table",
    )
    p.add_argument("--backends", nargs="+", default=list(harness.BACKENDS))
    p.add_argument(
        "--no-memory", action="store_true", help="skip peak-memory probes"
    )
    p.add_argument(
        "--no-sort-memory",
        action="store_true",
        help="probe the peak memory of ours only, not of the full sort",
    )
    p.add_argument(
        "--no-full-sort",
        action="store_true",
        help="skip the backend full sort (seconds per call at 16.8M)",
    )
    p.add_argument(
        "--no-tfmot",
        action="store_true",
        help="skip the in-process TensorFlow top_k (tfmot) column",
    )
    p.add_argument(
        "--tfmot-venv",
        action="store_true",
        help="also time real tfmot 0.8.1 in .venv-tfmot (run_tfmot "
        "'mask_sort') as a cross-check of the tfmot-TF column",
    )
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.2,
        help="before timing, wait until other processes use fewer cores",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=20.0,
        help="longest wait (s) for a quiet machine before each timing",
    )
    p.add_argument(
        "--json-out", help="also write all results to this JSON file"
    )
    p.add_argument(
        "--from-json",
        nargs="+",
        help="print the tables of earlier --json-out files (combined)",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sparsity", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _tfmot_venv(sizes, repeats, seed, quiet):
    run_tfmot = harness.load_run_tfmot()
    if run_tfmot is None:
        harness.log("benchmarks/tfmot_env.py not found: skipping --tfmot-venv")
        return None
    results = []
    for n in sizes:
        harness.log(f"tfmot venv mask_sort n={n}")
        harness.wait_quiet(**quiet)
        results.append(
            run_tfmot(
                "mask_sort", n=n, sparsity=0.9, repeats=repeats, seed=seed
            )
        )
    return results


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    if args.memory_probe:
        extra = memory_probe(
            args.memory_probe, args.n, args.sparsity, args.seed
        )
        harness.write_json(args.json_out, {"extra_bytes": extra})
        return 0

    child_args = [
        "--sizes",
        *map(str, args.sizes),
        "--sparsities",
        *map(str, args.sparsities),
        "--repeats",
        str(args.repeats),
        "--seed",
        str(args.seed),
        "--quiet-cores",
        str(args.quiet_cores),
        "--max-wait",
        str(args.max_wait),
    ]
    child_args += ["--no-memory"] if args.no_memory else []
    child_args += ["--no-sort-memory"] if args.no_sort_memory else []
    child_args += ["--no-tfmot"] if args.no_tfmot else []
    child_args += ["--no-full-sort"] if args.no_full_sort else []

    quiet = {"max_cores": args.quiet_cores, "max_wait_s": args.max_wait}
    venv_results = None
    if args.from_json:
        rows, venv_results = [], []
        for path in args.from_json:
            with open(path) as f:
                saved = json.load(f)
            rows += saved.get("rows") or []
            venv_results += saved.get("tfmot_venv") or []
            machine = saved.get("machine") or harness.machine_info()
    elif args.all_backends:
        rows = []
        for b in args.backends:
            harness.log(f"=== backend {b} ===")
            try:
                result = harness.run_child(
                    [
                        harness.module_name(__spec__ or __file__),
                        "--child",
                        *child_args,
                    ],
                    {"KERAS_BACKEND": b},
                    label=f"mask_update {b}",
                )
            except RuntimeError as e:
                harness.log(f"backend {b} failed, going on without it: {e}")
                continue
            rows += result["rows"]
            if args.json_out:  # partial results survive a later failure
                harness.write_json(args.json_out, {"rows": rows})
        machine = harness.machine_info()
    else:
        rows = run_backend(
            args.sizes,
            args.sparsities,
            args.repeats,
            args.seed,
            with_tfmot_tf=not args.no_tfmot,
            full_sort=not args.no_full_sort,
            quiet=quiet,
        )
        if not args.no_memory:
            add_memory(rows, args.seed, not args.no_sort_memory)
        machine = harness.machine_info()
        if args.child:
            harness.write_json(args.json_out, {"rows": rows})
            return 0

    if args.tfmot_venv and not args.no_tfmot and not args.from_json:
        venv_results = _tfmot_venv(args.sizes, args.repeats, args.seed, quiet)

    print(f"Machine: {harness.format_machine(machine)}")
    print(
        "Methods timed round-robin after 1 warm-up call each; median of all "
        "runs (fast methods run up to 25 times per round).\n"
    )
    print(table(rows))
    print()
    print(check_lines(rows))
    if venv_results:
        print("\nReal tfmot 0.8.1 (.venv-tfmot, tf_keras), same tensors:\n")
        print(tfmot_venv_table(venv_results))
    if not args.from_json:
        harness.save_results(
            "mask_update",
            {"rows": rows, "tfmot_venv": venv_results, "machine": machine},
            args.json_out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
