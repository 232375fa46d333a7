"""Regression tests of the third hostile-input pass (issue 15).

Each test reproduces one finding: arrays too large to compress, read-only
decoded arrays, the atomic writer's odd targets, CLI arguments and files
that are valid zip/npz/.keras but not `.kpz`. Models are tiny and shared.
"""

import numpy as np
import pytest

import keras_prune
from keras_prune import _files
from keras_prune.export import _format

# ------------------------------------------------- compress_array sizes


def test_huge_broadcast_view_gets_a_clear_error_not_a_memory_error():
    """Before: a 4 TiB zero-stride view ended in NumPy's MemoryError
    (materialised by np.require)."""
    huge = np.broadcast_to(np.float32(1), (2**40,))
    with pytest.raises(ValueError, match=r"4398046511104 bytes \(4\.0 TiB\)"):
        keras_prune.export.compress_array(huge)
    with pytest.raises(ValueError, match="in parts"):
        keras_prune.compress_array(huge.reshape(2**20, 2**20))


def test_broadcast_view_of_zeros_is_compressed_without_materialising():
    huge = np.broadcast_to(np.float32(0), (2**40,))
    blob = keras_prune.compress_array(huge)
    assert len(blob) == 18
    info = _format.describe_blob(blob)
    assert (info["layout"], info["shape"]) == ("zeros", (2**40,))
    # Loading it back needs max_bytes: the default cap names the size.
    with pytest.raises(keras_prune.CompressedFormatError, match="max_bytes"):
        keras_prune.decompress_array(blob)
    # -0.0 is not a zero: its bits must come back.
    neg = np.broadcast_to(np.float32(-0.0), (3, 4))
    back = keras_prune.decompress_array(keras_prune.compress_array(neg))
    np.testing.assert_array_equal(back.view(np.uint32), neg.view(np.uint32))
    # Small broadcast views of non-zeros still round-trip.
    view = np.broadcast_to(np.arange(3, dtype="float32"), (4, 3))
    back = keras_prune.decompress_array(keras_prune.compress_array(view))
    np.testing.assert_array_equal(back, view)


# ------------------------------------------------- writable arrays


DTYPES = ["bool", "int8", "int16", "float32", "bfloat16", "complex128"]


def test_decompressed_arrays_are_writable():
    """Before: dense arrays came back read-only (views of the decoded
    bytes), unlike np.load's; 0-d and 1-element arrays too."""
    for codec in ("lzma", "zlib", "stored"):
        for dtype in DTYPES:
            _check_writable(dtype, codec)


def _check_writable(dtype, codec):
    cases = [
        np.ones((3, 4), dtype),  # dense
        np.array(np.ones((), dtype)),  # 0-d dense, one byte plane each
        np.ones((1, 1), dtype),
        np.eye(9, dtype=dtype),  # sparse
        np.zeros((2, 2), dtype),  # zeros
        np.zeros((0, 3), dtype),  # empty
        np.ones((70, 3), dtype),  # channel-major candidate
    ]
    for array in cases:
        back = keras_prune.decompress_array(
            keras_prune.compress_array(array, codec=codec)
        )
        assert back.flags.writeable and back.flags.c_contiguous, array.shape
        assert back.dtype == array.dtype and back.shape == array.shape
        assert back.tobytes() == array.tobytes()
        back[...] = 0  # writing must not touch another decoded array
        assert not back.any()


# ------------------------------------------------- misspelt keywords

_M = None


def _model():
    global _M
    if _M is None:
        import keras

        _M = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(3, name="d")]
        )
    return _M


MISSPELT = [
    (
        lambda: keras_prune.prune_once(_model(), sparsty=0.5),
        "sparsty",
        "sparsity",
    ),
    (
        lambda: keras_prune.prune_low_magnitude(to_prun=_model()),
        "to_prun",
        "to_prune",
    ),
    (
        lambda: keras_prune.save_compressed(
            _model(), "m.kpz", include_optimiser=True
        ),
        "include_optimiser",
        "include_optimizer",
    ),
    (
        lambda: keras_prune.load_compressed("m.kpz", max_byte=9),
        "max_byte",
        "max_bytes",
    ),
    (
        lambda: keras_prune.compress_array(np.ones(2), codc="zlib"),
        "codc",
        "codec",
    ),
    (
        lambda: keras_prune.ConstantSparsity(target_sparsty=0.5, begin_step=0),
        "target_sparsty",
        "target_sparsity",
    ),
    (
        lambda: keras_prune.PolynomialDecay(0.1, 0.5, 0, 10, powr=2),
        "powr",
        "power",
    ),
    (
        lambda: keras_prune.PruningSummaries(log_dr="logs"),
        "log_dr",
        "log_dir",
    ),
    (
        lambda: keras_prune.PruningSpec(pruning_shedule=None),
        "pruning_shedule",
        "pruning_schedule",
    ),
    (lambda: keras_prune.shrink(_model(), ratoi=0.5), "ratoi", "ratio"),
    (
        lambda: keras_prune.Block(block_sise=(2, 2)),
        "block_sise",
        "block_size",
    ),
]


def test_misspelt_keywords_name_the_closest_valid_one():
    """Before: Python named the keyword but not the one meant, and
    prune_once(model, sparsty=0.5) only said `sparsity` was missing."""
    for call, wrong, right in MISSPELT:
        with pytest.raises(TypeError) as info:
            call()
        message = str(info.value)
        assert f"unexpected keyword argument {wrong!r}" in message
        assert f"Did you mean {right!r}?" in message
    _keeps_signatures_and_valid_calls()


def _keeps_signatures_and_valid_calls():
    import inspect

    sig = inspect.signature(keras_prune.ConstantSparsity)
    assert list(sig.parameters) == [
        "target_sparsity",
        "begin_step",
        "end_step",
        "frequency",
    ]
    assert "sparsity" in inspect.signature(keras_prune.prune_once).parameters
    schedule = keras_prune.ConstantSparsity(target_sparsity=0.5, begin_step=3)
    assert type(schedule).from_config(schedule.get_config()).begin_step == 3
    with pytest.raises(TypeError, match="takes no keyword arguments"):
        keras_prune.UpdatePruningStep(verbose=1)


# ------------------------------------------------- the atomic writer


def _write(path, data=b"new"):
    from keras_prune._files import atomic_output

    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def test_atomic_output_refuses_what_it_would_replace(tmp_path):
    """Before: a FIFO or /dev/null was replaced by a regular file (as
    root, /dev/null itself); a symlink loop was replaced; errors named the
    temporary file; a 250-character name failed (its temporary name was
    too long); '' wrote a temporary file into the parent folder; bytes
    paths raised "Can't mix bytes and non-bytes"."""
    import errno
    import os

    os.mkfifo(tmp_path / "fifo.kpz")
    (tmp_path / "dir.kpz").mkdir()
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    cases = [
        (tmp_path / "fifo.kpz", errno.EINVAL, "not a regular file"),
        (tmp_path / "dir.kpz", errno.EISDIR, "is a folder"),
        (str(tmp_path / "x") + os.sep, errno.EISDIR, "names a folder"),
        (tmp_path / "loop1", errno.ELOOP, "symbolic link loop"),
        (tmp_path / "no" / "x.kpz", errno.ENOENT, "does not exist"),
        ("", errno.ENOENT, "empty file name"),
    ]
    for path, code, match in cases:
        with pytest.raises(OSError, match=match) as info:
            _write(path)
        assert info.value.errno == code
        assert info.value.filename == os.fspath(path)
    # A device is refused before anything is written (checked without
    # writing: were it not, root would replace /dev/null).
    with pytest.raises(OSError, match="not a regular file"):
        _files._writable_target("/dev/null")
    assert sorted(os.listdir(tmp_path)) == [
        "dir.kpz",
        "fifo.kpz",
        "loop1",
        "loop2",
    ]
    assert os.path.islink(tmp_path / "loop1")
    with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
        _write(3)
    # A 250-character name, a bytes path, a dangling symlink (its target
    # is created, as open() would).
    long = tmp_path / ("a" * 250 + ".kpz")
    _write(long)
    _write(os.fsencode(tmp_path / "b.kpz"))
    os.symlink("target.kpz", tmp_path / "link.kpz")
    _write(tmp_path / "link.kpz")
    assert (tmp_path / "target.kpz").read_bytes() == b"new"
    assert os.path.islink(tmp_path / "link.kpz")
    assert long.read_bytes() == (tmp_path / "b.kpz").read_bytes() == b"new"


def _keeps_the_mode_and_cleans_up(tmp_path):
    """Before: a replaced 0600 file became 0644 (readable by all)."""
    import os
    import stat

    private = tmp_path / "p.kpz"
    private.write_bytes(b"old")
    os.chmod(private, 0o600)
    _write(private)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert private.read_bytes() == b"new"
    from keras_prune._files import atomic_output

    with pytest.raises(KeyboardInterrupt):
        with atomic_output(private) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise KeyboardInterrupt
    assert private.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["p.kpz"]


def _refuses_a_read_only_file(tmp_path):
    import os

    if os.geteuid() == 0:
        return  # root may write read-only files, as open() does
    ro = tmp_path / "ro.kpz"
    ro.write_bytes(b"old")
    os.chmod(ro, 0o444)
    with pytest.raises(PermissionError, match="read-only"):
        _write(ro)
    assert ro.read_bytes() == b"old"


def _failed_write_names_the_target(tmp_path):
    """Disk full / file size limit: OSError without a file name (the CLI
    printed `error: File too large`)."""
    import errno
    import os

    from keras_prune._files import atomic_output

    target = tmp_path / "m.kpz"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as info:
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.kpz"]


def test_atomic_output_mode_read_only_and_failed_writes(tmp_path):
    for i, check in enumerate(
        (
            _keeps_the_mode_and_cleans_up,
            _refuses_a_read_only_file,
            _failed_write_names_the_target,
        )
    ):
        folder = tmp_path / str(i)
        folder.mkdir()
        check(folder)


# ------------------------------------------------- the CLI


def test_cli_argument_errors_are_one_line(capsys):
    """Before: argparse printed its usage over several lines first."""
    from keras_prune import cli

    for argv in (
        ["schedule", "ConstantSparsity(0.5, 0)", "--rows", "-3"],
        ["compress", "m.keras", "o.kpz", "--codec", "bz2"],
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--verbose",
            "-7",
        ],
        ["nope"],
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: argument")
        assert lines[0].endswith("--help)")


def test_cli_empty_plot_missing_input_and_demo_outputs(tmp_path, capsys):
    """Before: `--plot ''` was ignored (exit 0); `inspect missing` exited
    1 through SystemExit; `demo --out FILE` ended in `File exists` (exit
    1) and demo overwrote its outputs without --force."""
    from conftest import cli_error

    line = cli_error(
        ["schedule", "ConstantSparsity(0.5, 0)", "--plot", ""], capsys
    )
    assert "--plot: empty path" in line
    line = cli_error(["inspect", tmp_path / "missing.keras"], capsys)
    assert "no such file" in line
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "not a folder" in cli_error(["demo", "--out", afile], capsys)
    assert "empty path" in cli_error(["demo", "--out", ""], capsys)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "dense.keras").write_bytes(b"mine")
    line = cli_error(["demo", "--out", out], capsys)
    assert "dense.keras" in line and "--force" in line
    assert (out / "dense.keras").read_bytes() == b"mine"


def test_save_compressed_into_a_fifo_is_refused(tmp_path):
    """Before: the FIFO was replaced by a regular file."""
    import os
    import stat

    fifo = tmp_path / "m.kpz"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        keras_prune.save_compressed(_model(), fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["m.kpz"]


# ------------------------------------------------- files that are not .kpz


def test_load_compressed_names_what_a_foreign_file_is(tmp_path):
    import io
    import zipfile

    blob = keras_prune.compress_array(np.arange(6.0))
    with pytest.raises(
        keras_prune.CompressedFormatError, match="decompress_array"
    ):
        keras_prune.load_compressed(blob)
    npz = tmp_path / "a.kpz"
    with open(npz, "wb") as f:
        np.savez(f, a=np.ones(3))
    with pytest.raises(keras_prune.CompressedFormatError, match=".npz"):
        keras_prune.load_compressed(npz)
    with pytest.raises(keras_prune.CompressedFormatError, match="zip"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("config.json", "{}")
        keras_prune.load_compressed(buf.getvalue())
    # Before: UnicodeDecodeError from read().
    with open(npz, "r") as text:
        with pytest.raises(TypeError, match="binary file object"):
            keras_prune.load_compressed(text)
    # Before: "only -4 remain".
    for short in (b"", b"KPRA"):
        with pytest.raises(
            keras_prune.CompressedFormatError, match="shorter than"
        ):
            _format.describe_blob(short)


def test_config_may_not_import_keras_test_modules():
    """Keras ships tests next to its layers: a config naming
    `keras.src.layers.core.dense_test` imported pytest (and the
    preprocessing tests TensorFlow)."""
    import sys

    from keras_prune.export import compress

    for module in (
        "keras.src.layers.core.dense_test",
        "keras.src.testing.test_case",
        "keras_hub.src.tests.test_case",
    ):
        config = {"module": module, "class_name": "X", "config": {}}
        if module in sys.modules:
            continue
        with pytest.raises(
            keras_prune.CompressedFormatError, match="refusing to import"
        ):
            compress._check_modules(config, "t")
        assert module not in sys.modules
    compress._check_modules(
        {"module": "keras.layers", "class_name": "Dense"}, "t"
    )


# ------------------------------------------------- registry


def test_unknown_kernels_are_not_left_dense_by_their_name():
    """Before: an unknown layer's `token_mixing_kernel` (an MLP-Mixer
    token-mixing projection) or `position_wise_kernel` matched the names
    of learned tables (`token`, `position`) and stayed dense, silently."""
    import keras

    from keras_prune.integration import registry

    class TokenMix(keras.layers.Layer):
        def build(self, shape):
            self.add_weight(name="token_mixing_kernel", shape=(4, 4))
            self.add_weight(name="register_tokens", shape=(2, 4))
            self.add_weight(name="position_embedding", shape=(4, 4))

        def call(self, x):
            return x

    layer = TokenMix(name="mix")
    layer.build((None, 4, 4))
    with pytest.raises(
        keras_prune.UnsupportedLayerError, match=r"\['token_mixing_kernel"
    ):
        registry.find_unsupported(layer)
    # The learned tables themselves are still dense by name.
    reasons = {
        v.name: reason
        for _, v, pruned, reason in registry.weight_decisions(layer)
        if not pruned
    }
    assert "learned tokens" in reasons["register_tokens"]
    assert "position" in reasons["position_embedding"]
    _register_takes_any_iterable_once()


def _register_takes_any_iterable_once():
    """Before: a generator was used up by the type check, and () was
    registered: the layer declared dense, silently."""
    from keras_prune.integration import registry

    try:
        keras_prune.register_prunable_weights(
            "RedTeam3Layer", (n for n in ["kernel"])
        )
        assert registry._REGISTERED["RedTeam3Layer"] == ("kernel",)
        for bad in (None, 3, "kernel", [1]):
            with pytest.raises(TypeError, match="list of variable names"):
                keras_prune.register_prunable_weights("RedTeam3Layer", bad)
        assert registry._REGISTERED["RedTeam3Layer"] == ("kernel",)
    finally:
        registry._REGISTERED.pop("RedTeam3Layer", None)


# ------------------------------------------------- report on odd trees


def test_event_files_do_not_follow_links_above_the_log_folder(tmp_path):
    """Before: a link to `/` inside the log folder walked the whole file
    system (40 s here, /proc included, 503 foreign event files)."""
    import os

    from keras_prune.monitoring import events

    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1").write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "events.out.tfevents.2").write_bytes(b"")
    os.symlink("/", tmp_path / "logs" / "root")
    os.symlink("..", run / "up")
    os.symlink(elsewhere, tmp_path / "logs" / "linked_run")
    with pytest.warns(events.CorruptEventFileWarning) as caught:
        found = events.event_files(tmp_path / "logs")
    assert found == [
        (
            "linked_run",
            str(tmp_path / "logs" / "linked_run" / "events.out.tfevents.2"),
        ),
        ("run", str(run / "events.out.tfevents.1")),
    ]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and all("not followed" in m for m in messages)


def test_report_reads_each_event_file_once(tmp_path):
    """Before: `report` read every file twice (scalars, then config): a
    corrupt record was reported twice and a large file cost two passes."""
    from keras_prune.monitoring import events
    from keras_prune.monitoring import summaries

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "events.out.tfevents.1").write_bytes(b"\0" * 4096)
    with pytest.warns(events.CorruptEventFileWarning) as caught:
        text = summaries.report(logs)
    assert "No keras-prune pruning scalars" in text
    assert len(caught) == 1 and "byte offset 0" in str(caught[0].message)
