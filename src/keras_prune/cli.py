"""The `keras-prune` command.

    keras-prune schedule "PolynomialDecay(0.5, 0.9, 2000, 10000)" [--plot F]
    keras-prune prune MODEL.keras --data DATA.npz --sparsity 0.9 --epochs N \
        [--schedule "..."] -o OUT.keras
    keras-prune strip IN.keras OUT.keras
    keras-prune inspect MODEL [--json]        (.keras or compressed)
    keras-prune compress IN OUT.kpz [--strip] [--int8] [--include-optimizer]
    keras-prune decompress IN.kpz OUT.keras
    keras-prune report LOGDIR [--plot F]
    keras-prune shrink MODEL.keras [--ratio R] -o SMALL.keras
    keras-prune demo [--out DIR]

Every command that writes a file refuses to overwrite an existing one
unless `--force` is given, refuses an output name whose extension does not
match what is written (`.kpz` for compressed files, `.keras` for Keras
files, `.png`/`.svg`/`.pdf` for plots), checks its outputs before doing any
work, and writes each output atomically (a temporary file in the same
folder, fsync'ed, then renamed: an interrupted or failed write leaves the
previous file as it was and no temporary file behind). A user error ends
with a one-line `error: ...` message on stderr and exit code 2 (1 for an
I/O error), never a traceback (set KERAS_PRUNE_TRACEBACK=1 to see one).

New subcommands: parse their arguments with `positive_int` and friends,
check outputs with `check_output`, write them inside `atomic_output` (or
with `save_model_output`); `main` turns their exceptions into messages.
"""

import argparse
import json
import os
import sys

from keras_prune._files import atomic_output

#: Output kinds: allowed extensions (lower case).
KERAS_EXTENSIONS = (".keras",)
COMPRESSED_EXTENSIONS = (".kpz",)
PLOT_EXTENSIONS = (".png", ".svg", ".pdf")


class _Parser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line, like every
    other user error: `error: argument --rows: ... (see keras-prune
    schedule --help)`, exit code 2 (argparse prints the usage first)."""

    def error(self, message):
        self.exit(2, f"error: {_one_line(message)} (see {self.prog} --help)\n")


class UserError(Exception):
    """A problem with the command line or the files it names: printed as a
    one-line message, exit code 2."""


# ------------------------------------------------------- argument types


def positive_int(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer, got {value}"
        )
    return value


def non_negative_int(text):
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def step_int(text):
    """argparse type: a training step, an int in [0, 2**31 - 1] (the
    pruning step is an int32 counter)."""
    value = non_negative_int(text)
    if value > (1 << 31) - 1:
        raise argparse.ArgumentTypeError(
            f"must be at most {(1 << 31) - 1} (steps are counted in int32), "
            f"got {value}"
        )
    return value


def positive_float(text):
    """argparse type: a finite float > 0 (a learning rate of NaN, inf, 0
    or -1 would train silently into garbage)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text!r}"
        ) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0, got {value}"
        )
    return value


def fraction(text):
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1), got {text!r}"
        ) from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


# ------------------------------------------------------------- files


def check_input(path, what="input"):
    """Raises `UserError` unless `path` is an existing regular file."""
    path = os.fspath(path)
    if not path:
        raise UserError(f"{what}: empty path")
    if not os.path.exists(path):
        raise UserError(f"{what} {path!r}: no such file")
    if not os.path.isfile(path):
        raise UserError(f"{what} {path!r} is not a regular file")
    return path


def check_output(path, extensions, force=False, what="output"):
    """Checks an output path before any work is done.

    Args:
        path: The output path.
        extensions: Allowed extensions (e.g. `KERAS_EXTENSIONS`).
        force: Allow overwriting an existing file.
        what: How the message names the path (`"output"`, `"--plot"`).

    Returns:
        `path` as a str.

    Raises:
        UserError: empty path, wrong extension, missing or non-folder
            parent, a folder at `path`, or an existing file without `force`.
    """
    path = os.fspath(path)
    if not path:
        raise UserError(f"{what}: empty path")
    if os.path.isdir(path):
        raise UserError(f"{what} {path!r} is a folder")
    ext = os.path.splitext(path)[1].lower()
    if ext not in extensions:
        raise UserError(
            f"{what} {path!r}: expected a name ending in "
            f"{' or '.join(extensions)} for what this command writes"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{what} {path!r}: folder {folder!r} does not exist")
    if os.path.lexists(path):
        if not force:
            raise UserError(
                f"{what} {path!r} exists; pass --force to overwrite it"
            )
        if not os.path.isfile(path):
            raise UserError(f"{what} {path!r} is not a regular file")
    return path


def save_model_output(model, path):
    """`model.save(path)`, atomically."""
    with atomic_output(path) as tmp:
        model.save(tmp)


def _force_arg(parser):
    parser.add_argument(
        "--force", action="store_true", help="overwrite existing output files"
    )


def _schedule(args):
    from keras_prune.core import schedules
    from keras_prune.monitoring import explain

    if args.plot is not None:
        check_output(args.plot, PLOT_EXTENSIONS, args.force, "--plot")
    schedule = schedules.get(args.schedule)
    print(
        explain.describe_schedule(schedule, stop=args.steps, max_rows=args.rows)
    )
    if args.plot is not None:
        with atomic_output(args.plot) as tmp:
            explain.plot_schedule(schedule, path=tmp, stop=args.steps)
        print(f"\nPlot written to {args.plot}")
    return 0


def _load_npz(path):
    """`(x, y, validation or None)` of the `--data` file, each checked.

    Raises:
        UserError: not a readable `.npz`, a member named twice, a member
            whose header claims more bytes than it holds, `x`/`y` missing,
            only one of `x_val`/`y_val`, an array that does not hold
            numbers (complex, strings), or no samples.
    """
    import zipfile

    import numpy as np

    check_input(path, "--data")
    try:
        _check_npz_members(path)
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            missing = [k for k in ("x", "y") if k not in files]
            if missing:
                raise UserError(
                    f"--data {path!r} must hold arrays 'x' and 'y' "
                    f"(optional 'x_val', 'y_val'); missing {missing}, found "
                    f"{files}."
                )
            half = [k for k in ("x_val", "y_val") if k in files]
            if len(half) == 1:
                # The validation data was silently left out before.
                raise UserError(
                    f"--data {path!r} holds {half[0]!r} but not its pair "
                    f"{({'x_val': 'y_val', 'y_val': 'x_val'})[half[0]]!r}; "
                    "give both (validation data) or neither."
                )
            x, y = data["x"], data["y"]
            val = (data["x_val"], data["y_val"]) if half else None
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(
            f"cannot read --data {path!r} (an .npz file of NumPy arrays, "
            f"np.savez): {type(e).__name__}: {e}"
        ) from None
    arrays = {"x": x, "y": y}
    if val is not None:
        arrays.update(x_val=val[0], y_val=val[1])
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            # Keras cast complex samples to float32, dropping the
            # imaginary part, and trained on that (exit 0).
            raise UserError(
                f"--data {path!r}: {name!r} has dtype {array.dtype.name}; "
                "samples and targets must be numbers (bool, int or float)."
            )
    if x.ndim == 0 or len(x) == 0:
        raise UserError(
            f"--data {path!r}: 'x' holds no samples (shape {x.shape}); "
            "pruning needs at least one training batch."
        )
    return x, y, val


def _check_npz_members(path):
    """Refuses an `.npz` whose members are named twice (NumPy reads one of
    them, silently) or claim more data than they hold (NumPy allocated the
    claimed size first: a 500-byte file claiming a 768 GB array ended in
    'out of memory')."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        names = [i.filename.removesuffix(".npy") for i in infos]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UserError(
                f"--data {path!r} holds the array(s) {twice} more than once "
                "(a damaged or edited file); write it again with np.savez."
            )
        for info in infos:
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                fmt = np.lib.format
                read = (
                    fmt.read_array_header_1_0
                    if fmt.read_magic(member) == (1, 0)
                    else fmt.read_array_header_2_0
                )
                shape, _, dtype = read(member)
                if dtype.hasobject:
                    continue  # np.load refuses it (allow_pickle=False)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                held = info.file_size - member.tell()
            if claimed > held:
                raise UserError(
                    f"--data {path!r}: array {info.filename!r} claims shape "
                    f"{shape} of {dtype} ({claimed:,} bytes) but holds "
                    f"{max(held, 0):,} bytes: the file is truncated or "
                    "damaged."
                )


def _prune(args):
    import keras

    import keras_prune
    from keras_prune.core import schedules
    from keras_prune.monitoring import explain

    check_input(args.model, "model")
    check_output(args.output, KERAS_EXTENSIONS, args.force)
    x, y, val = _load_npz(args.data)
    try:
        model, _ = _load_any(args.model)  # .keras or compressed
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - report any loader failure
        raise UserError(f"cannot load model {args.model!r}: {e}") from None
    batches = -(-len(x) // args.batch_size)
    total = batches * args.epochs
    if total > (1 << 31) - 1:
        raise UserError(
            f"--epochs {args.epochs} x {batches} batches = {total} training "
            f"steps, more than {(1 << 31) - 1} (the pruning step is an int32 "
            "counter); lower --epochs or raise --batch-size."
        )
    if args.schedule:
        schedule = schedules.get(args.schedule)
    else:
        end = max(int(0.7 * total), 0)
        schedule = keras_prune.PolynomialDecay(
            0.0,
            args.sparsity,
            0,
            end,
            frequency=max(1, min(100, end // 10 or 1)),
        )
    print(f"schedule: {schedule!r} over {total} steps")
    compile_config = model.get_compile_config() if model.compiled else None
    if compile_config and not args.loss:
        ignored = [
            flag
            for flag, value in (
                ("--optimizer", args.optimizer),
                ("--metrics", args.metrics),
            )
            if value
        ]
        if ignored:
            raise UserError(
                f"{' and '.join(ignored)} would be ignored: the model keeps "
                "its own compile config unless --loss is given. Pass --loss "
                "too (e.g. --loss mse) to compile it anew, or drop "
                f"{' and '.join(ignored)}."
            )
    pruned = keras_prune.prune_low_magnitude(model, pruning_schedule=schedule)
    if compile_config and not args.loss:
        pruned.compile_from_config(compile_config)
        if args.learning_rate is not None:
            pruned.optimizer.learning_rate = args.learning_rate
    else:
        if not args.loss:
            raise UserError(
                "the model has no compile config; pass --loss (e.g. "
                "sparse_categorical_crossentropy) and optionally --optimizer "
                "and --metrics."
            )
        optimizer = keras.optimizers.get(args.optimizer or "adam")
        if args.learning_rate is not None:
            optimizer.learning_rate = args.learning_rate
        pruned.compile(
            optimizer=optimizer, loss=args.loss, metrics=args.metrics or None
        )
    _check_sample_shape(model, x, args.data)
    pruned.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=val,
        verbose=args.verbose,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    _check_finite_weights(pruned, args.output)
    out = pruned if args.keep_wrappers else keras_prune.strip_pruning(pruned)
    save_model_output(out, args.output)
    print()
    print(explain.format_report(explain.sparsity_report(pruned)))
    print(
        f"\nsaved {'pruned' if args.keep_wrappers else 'stripped'} model "
        f"to {args.output}"
    )
    return 0


def _check_sample_shape(model, x, path):
    """Raises `UserError` when the samples of `x` do not fit the model's
    only input (known dimensions only)."""
    try:
        inputs = model.inputs
    except Exception:  # noqa: BLE001 - a subclassed model: unknown
        return
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 1:
        return
    expected = tuple(inputs[0].shape)[1:]
    got = tuple(x.shape)[1:]
    if len(expected) != len(got) or any(
        e is not None and e != g for e, g in zip(expected, got)
    ):
        raise UserError(
            f"--data {path!r}: 'x' holds samples of shape {got}, but the "
            f"model takes inputs of shape {expected} (None: any size)."
        )


def _nonfinite_weight(model):
    """The path of the first float weight of `model` holding NaN or Inf,
    or None."""
    import numpy as np
    from keras import ops

    for variable in model.weights:
        value = ops.convert_to_numpy(variable)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return variable.path
    return None


def _check_finite_weights(model, output):
    """Raises `UserError` (nothing is written) when training left NaN or
    Inf in a weight: a model that computes NaN is not a result."""
    path = _nonfinite_weight(model)
    if path is not None:
        raise UserError(
            f"training diverged: weight {path!r} holds NaN or Inf after "
            f"fit, so nothing was written to {output!r}. Check that --data "
            "holds finite values, or lower --learning-rate."
        )


def _strip(args):
    import keras_prune

    check_input(args.input)
    check_output(args.output, KERAS_EXTENSIONS, args.force)
    model, _ = _load_any(args.input)  # .keras or compressed
    save_model_output(keras_prune.strip_pruning(model), args.output)
    print(f"stripped {args.input} -> {args.output}")
    return 0


def _load_any(path):
    """A model from a `.keras` file or a keras-prune compressed file."""
    import keras

    from keras_prune.export import compress

    check_input(path)
    if compress.is_compressed_file(path):
        return compress.load_compressed(path), "compressed"
    try:
        return keras.saving.load_model(path), "keras"
    except Exception as e:  # noqa: BLE001 - report any loader failure
        raise UserError(
            f"cannot load model {path!r} (neither a keras-prune "
            f"compressed file nor a loadable .keras file): "
            f"{_load_failure_reason(e)}"
        ) from None


def _load_failure_reason(error):
    """The cause in a Keras loading error, without the config dump or
    object list around it (which push it past the one-line limit)."""
    text = str(error)
    marker = "Exception encountered: "
    if marker in text:  # deserialization: "... config={...}. Exception ..."
        text = text[text.rindex(marker) + len(marker) :]
    start = "Example error message for object "
    if start in text:  # "A total of N objects could not be loaded. ..."
        head, _, rest = text.partition(start)
        obj, _, rest = rest.partition(":\n\n")
        reason = rest.partition("\n\nList of objects")[0]
        text = f"{head.strip()} {obj}: {reason}"
    return text


def _file_sizes(path, model, kind):
    import gzip
    import io

    from keras_prune.export import compress

    with open(path, "rb") as f:
        raw = f.read()
    sizes = {
        "file": path,
        "format": kind,
        "file_bytes": len(raw),
        "file_gzip_bytes": len(gzip.compress(raw, 9, mtime=0)),
    }
    if kind == "keras":
        sizes["compressed_file_bytes"] = compress.save_compressed(
            model, io.BytesIO()
        )
    return sizes


def _inspect(args):
    from keras_prune.monitoring import explain

    model, kind = _load_any(args.model)
    rows = explain.sparsity_report(model, sizes=not args.no_sizes)
    files = {} if args.no_sizes else _file_sizes(args.model, model, kind)
    if args.json:
        out = dict(files, rows=rows, total=explain.report_totals(rows))
        print(json.dumps(out, default=list, indent=1))
        return 0
    print(explain.format_report(rows))
    if files:
        print()
        label = "keras-prune compressed" if kind == "compressed" else ".keras"
        print(
            f"file {args.model} ({label}): {files['file_bytes']} bytes, "
            f"gzip -9 {files['file_gzip_bytes']}"
        )
        if "compressed_file_bytes" in files:
            c = files["compressed_file_bytes"]
            print(
                f"keras-prune compress would write {c} bytes "
                f"({files['file_bytes'] / c:.2f}x smaller)"
            )
    return 0


def _compress(args):
    import os

    import keras_prune
    from keras_prune.integration.state import pruning_wrappers

    check_input(args.input)
    check_output(args.output, COMPRESSED_EXTENSIONS, args.force)
    model, _ = _load_any(args.input)
    stripped = False
    if args.strip or args.int8:
        if pruning_wrappers(model):
            model = keras_prune.strip_pruning(model)
            stripped = True
    if args.int8:
        import warnings

        bad = _nonfinite_weight(model)
        if bad is not None:
            raise UserError(
                f"--int8: weight {bad!r} holds NaN or Inf; its int8 scale "
                "would be NaN or Inf and turn finite weights into NaN. "
                "Compress without --int8 (lossless), or fix the weights."
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantize.*")
            model.quantize("int8")
    n = keras_prune.save_compressed(
        model,
        args.output,
        include_optimizer=args.include_optimizer,
        codec=args.codec,
    )
    size_in = os.path.getsize(args.input)
    notes = "".join(
        f", {s}"
        for s, on in (("stripped", stripped), ("int8", args.int8))
        if on
    )
    print(
        f"{args.input} ({size_in} bytes) -> {args.output} ({n} bytes, "
        f"{size_in / n:.2f}x smaller{notes})"
    )
    return 0


def _decompress(args):
    import keras_prune

    check_input(args.input)
    check_output(args.output, KERAS_EXTENSIONS, args.force)
    model = keras_prune.load_compressed(args.input)
    save_model_output(model, args.output)
    print(f"{args.input} -> {args.output}")
    return 0


def _report(args):
    from keras_prune.monitoring import summaries

    if not args.logdir:
        raise UserError(
            "report: empty log directory; pass the log_dir "
            "given to keras_prune.PruningSummaries"
        )
    if args.plot is not None:
        check_output(args.plot, PLOT_EXTENSIONS, args.force, "--plot")
    try:
        if args.plot is not None:
            with atomic_output(args.plot) as tmp:
                text = summaries.report(args.logdir, plot=tmp)
            text = text.replace(tmp, args.plot)
        else:
            text = summaries.report(args.logdir)
    except (FileNotFoundError, NotADirectoryError) as e:
        hint = (
            ""
            if "PruningSummaries" in str(e)
            else (" Pass the log_dir given to keras_prune.PruningSummaries.")
        )
        raise UserError(f"{e}{hint}") from None
    print(text)
    if args.plot is not None:
        print(f"plot: {args.plot}")
    return 0


def _shrink(args):
    import json as json_lib

    import keras_prune

    if args.ratio is not None and not 0.0 <= args.ratio < 1.0:
        raise UserError(
            "--ratio must be in [0, 1) (fraction of each group's channels "
            f"to remove); got {args.ratio}."
        )
    check_output(args.output, KERAS_EXTENSIONS, args.force)
    model, _ = _load_any(args.model)
    small, report = keras_prune.shrink(
        model,
        ratio=args.ratio,
        importance=args.importance,
        return_report=True,
    )
    save_model_output(small, args.output)
    if args.json:
        print(json_lib.dumps(report.as_dict(), indent=1))
    else:
        print(report.format())
        print(f"\nshrunk {args.model} -> {args.output}")
    return 0


def _demo(args):
    from keras_prune import demo

    out = args.out
    if not out:
        raise UserError("--out: empty path")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out!r} exists and is not a folder")
    if os.path.isdir(out):
        # A folder that does not exist yet holds nothing to overwrite: the
        # demo creates it (`keras-prune demo` in a fresh checkout, whose
        # default `out/demo` is not there).
        for name in demo.OUTPUTS:
            ext = os.path.splitext(name)[1]
            check_output(os.path.join(out, name), (ext,), args.force, "--out")
    return demo.main(["--out", out])


def build_parser():
    parser = _Parser(
        prog="keras-prune",
        description="Magnitude-based weight pruning for Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "schedule",
        help="print (and plot) the steps at which masks are recomputed",
    )
    p.add_argument(
        "schedule", help='e.g. "PolynomialDecay(0.5, 0.9, 2000, 10000)"'
    )
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument(
        "--steps",
        type=step_int,
        default=None,
        help="last step shown (default: past the last update)",
    )
    p.add_argument(
        "--rows",
        type=positive_int,
        default=12,
        help="updates listed before condensing",
    )
    _force_arg(p)
    p.set_defaults(fn=_schedule)

    p = sub.add_parser("prune", help="fine-tune a saved model with pruning")
    p.add_argument("model")
    p.add_argument(
        "--data", required=True, help="npz with x, y (optional x_val, y_val)"
    )
    p.add_argument("--sparsity", type=fraction, default=0.9)
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument(
        "--schedule",
        default=None,
        help='overrides --sparsity, e.g. "ConstantSparsity(0.8, 0)"',
    )
    p.add_argument("--loss", default=None)
    p.add_argument(
        "--optimizer",
        default=None,
        help="with --loss (default adam); a compiled model keeps its own",
    )
    p.add_argument("--learning-rate", type=positive_float, default=None)
    p.add_argument("--metrics", nargs="*", default=None)
    p.add_argument(
        "--keep-wrappers",
        action="store_true",
        help="save the pruned model (resumable) instead of stripping",
    )
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("-o", "--output", required=True)
    _force_arg(p)
    p.set_defaults(fn=_prune)

    p = sub.add_parser(
        "strip", help="remove pruning wrappers from a .keras file"
    )
    p.add_argument("input")
    p.add_argument("output")
    _force_arg(p)
    p.set_defaults(fn=_strip)

    p = sub.add_parser(
        "inspect",
        help="per-weight sparsity, pattern and sizes of a .keras or "
        "compressed model",
    )
    p.add_argument("model", help=".keras file or keras-prune compressed file")
    p.add_argument(
        "--json",
        action="store_true",
        help="print {file sizes..., rows: [...], total: {...}}",
    )
    p.add_argument(
        "--no-sizes",
        action="store_true",
        help="skip the (slower) per-tensor size measurements",
    )
    p.set_defaults(fn=_inspect)

    p = sub.add_parser(
        "compress",
        help="write a model (.keras or compressed) as a keras-prune "
        "compressed file (lossless)",
    )
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument(
        "--strip",
        action="store_true",
        help="strip pruning wrappers first (default: keep them, "
        "so pruning can resume after loading)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="strip, then model.quantize('int8') before saving "
        "(lossy: Dense/EinsumDense/Embedding kernels)",
    )
    p.add_argument(
        "--include-optimizer",
        action="store_true",
        help="also store the optimizer's variables",
    )
    p.add_argument("--codec", choices=("lzma", "zlib"), default="lzma")
    _force_arg(p)
    p.set_defaults(fn=_compress)

    p = sub.add_parser(
        "decompress", help="turn a compressed file back into a .keras file"
    )
    p.add_argument("input")
    p.add_argument("output")
    _force_arg(p)
    p.set_defaults(fn=_decompress)

    p = sub.add_parser(
        "report", help="summarise the logs written by PruningSummaries"
    )
    p.add_argument("logdir")
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the sparsity curves and per-weight bars",
    )
    _force_arg(p)
    p.set_defaults(fn=_report)

    p = sub.add_parser(
        "shrink",
        help="remove channels/heads/FFN units: a smaller model of stock layers",
    )
    p.add_argument("model", help=".keras file")
    p.add_argument(
        "--ratio",
        type=float,
        default=None,
        help="fraction of each coupled group to remove, lowest "
        "importance first (default: remove the channels a "
        "ChannelPruning run zeroed)",
    )
    p.add_argument("--importance", choices=("l2", "l1"), default="l2")
    p.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    p.add_argument("-o", "--output", required=True)
    _force_arg(p)
    p.set_defaults(fn=_shrink)

    p = sub.add_parser("demo", help="train, prune, strip and save on digits")
    p.add_argument("--out", default="out/demo")
    _force_arg(p)
    p.set_defaults(fn=_demo)
    return parser


def _one_line(text, limit=500):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def run_command(fn, args):
    """Runs a subcommand; turns every exception into a one-line message.

    Returns the exit code: the command's, 2 for a user error (bad argument,
    malformed file), 1 for an I/O error or anything unexpected, 130 when
    interrupted. `SystemExit` passes through. With KERAS_PRUNE_TRACEBACK=1
    unexpected errors are re-raised with their traceback.
    """
    from keras_prune.export._format import CompressedFormatError

    try:
        return fn(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (UserError, CompressedFormatError, ValueError, TypeError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}{_one_line(e.strerror or e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - never a traceback by default
        if os.environ.get("KERAS_PRUNE_TRACEBACK"):
            raise
        print(
            f"error: {type(e).__name__}: {_one_line(e)} (set "
            "KERAS_PRUNE_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(args.fn, args)


if __name__ == "__main__":
    sys.exit(main())
