"""The `keras-prune` command, run in-process through `cli.main`."""

import json
import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import cli
from keras_prune.export import compress
from keras_prune.monitoring import explain

from conftest import to_np

X = np.random.default_rng(1).random((6, 16)).astype("float32")


@pytest.fixture
def files(tmp_path):
    """A pruned (wrapped) and a stripped .keras file of a tiny MLP."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, name="a"),
            keras.layers.Dense(8, name="b"),
        ]
    )
    pruned = keras_prune.prune_low_magnitude(
        model, pruning_schedule=keras_prune.ConstantSparsity(0.75, 0)
    )
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(
        X,
        np.zeros((6, 8), "float32"),
        epochs=1,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    pruned_path = tmp_path / "pruned.keras"
    pruned.save(str(pruned_path))
    stripped = keras_prune.strip_pruning(pruned)
    stripped_path = tmp_path / "stripped.keras"
    stripped.save(str(stripped_path))
    return tmp_path, pruned_path, stripped_path, stripped


def run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_inspect_keras_table(files, capsys):
    _, pruned_path, _, _ = files
    rc, out, _ = run(["inspect", pruned_path], capsys)
    assert rc in (0, None)
    lines = out.splitlines()
    assert "pattern" in lines[0] and "ours B" in lines[0]
    a = next(line for line in lines if line.startswith("a "))
    assert "(16, 32)" in a and " 512 " in a and " 384 " in a
    assert "0.7500" in a and "unstructured" in a and " 2048 " in a
    total = next(line for line in lines if line.startswith("total"))
    assert " 768 " in total and " 576 " in total
    assert "keras-prune compress would write" in out


def test_inspect_json_matches_sparsity_report(files, capsys):
    _, _, stripped_path, stripped = files
    rc, out, _ = run(["inspect", stripped_path, "--json"], capsys)
    assert rc in (0, None)
    data = json.loads(out)
    assert data["format"] == "keras"
    assert data["file_bytes"] == stripped_path.stat().st_size
    rows = explain.sparsity_report(stripped, sizes=True)
    assert [r["layer"] for r in data["rows"]] == ["a", "b"]
    for got, want in zip(data["rows"], rows):
        assert got["zeros"] == want["zeros"]
        assert got["compressed_bytes"] == want["compressed_bytes"]
        assert got["dense_bytes"] == want["params"] * 4
        assert got["pattern"] == want["pattern"] == "unstructured"
        assert tuple(got["shape"]) == want["shape"]
    assert data["total"]["params"] == 16 * 32 + 32 * 8
    assert data["total"]["zeros"] == 384 + 192
    assert data["total"]["compressed_bytes"] == sum(
        r["compressed_bytes"] for r in rows
    )
    assert data["compressed_file_bytes"] < data["file_bytes"] / 5


def test_compress_decompress_roundtrip(files, capsys):
    tmp, pruned_path, stripped_path, stripped = files
    out_path = tmp / "m.kpz"
    rc, out, _ = run(["compress", stripped_path, out_path], capsys)
    assert rc in (0, None) and "x smaller" in out
    assert compress.is_compressed_file(str(out_path))
    loaded = keras_prune.load_compressed(str(out_path))
    for a, b in zip(stripped.weights, loaded.weights):
        assert to_np(a).tobytes() == to_np(b).tobytes()
    back = tmp / "back.keras"
    rc, _, _ = run(["decompress", out_path, back], capsys)
    assert rc in (0, None)
    again = keras.saving.load_model(str(back))
    assert np.array_equal(
        again.predict(X, verbose=0), stripped.predict(X, verbose=0)
    )
    # inspect reads compressed files too.
    rc, out, _ = run(["inspect", out_path, "--json"], capsys)
    data = json.loads(out)
    assert data["format"] == "compressed"
    assert data["file_bytes"] == out_path.stat().st_size
    assert data["total"]["zeros"] == 576


def test_compress_keeps_wrappers_unless_strip(files, capsys):
    tmp, pruned_path, _, _ = files
    kept, stripped = tmp / "k.kpz", tmp / "s.kpz"
    run(["compress", pruned_path, kept], capsys)
    run(["compress", "--strip", pruned_path, stripped], capsys)
    from keras_prune.integration.strip import pruning_wrappers

    assert len(pruning_wrappers(keras_prune.load_compressed(str(kept)))) == 2
    assert not pruning_wrappers(keras_prune.load_compressed(str(stripped)))


def test_compress_int8(files, capsys):
    tmp, pruned_path, stripped_path, _ = files
    out_path = tmp / "q.kpz"
    rc, out, _ = run(["compress", "--int8", pruned_path, out_path], capsys)
    assert rc in (0, None) and "int8" in out
    model = keras_prune.load_compressed(str(out_path))
    kernel = to_np(model.get_layer("a")._kernel)
    assert kernel.dtype == np.int8
    assert np.count_nonzero(kernel == 0) == 384
    # 1,418 vs 18,187 bytes: the stripped file holds no optimizer state
    # since strip_pruning returns an uncompiled model (issue 17 item 9).
    assert out_path.stat().st_size < stripped_path.stat().st_size / 10


def test_bad_input_errors(files, capsys, tmp_path):
    bad = tmp_path / "bad.kpz"
    bad.write_bytes(compress.MAGIC + b"\x01\x00garbage")
    rc, _, err = run(["decompress", bad, tmp_path / "x.keras"], capsys)
    assert rc == 2 and "checksum" in err
    # A missing input is a user error like any other: exit 2, one line
    # (was SystemExit, exit code 1).
    rc, _, err = run(["inspect", tmp_path / "missing.keras"], capsys)
    assert rc == 2 and "no such file" in err


def test_strip_still_works(files, capsys):
    tmp, pruned_path, _, _ = files
    out_path = tmp / "s2.keras"
    rc, out, _ = run(["strip", pruned_path, out_path], capsys)
    assert rc in (0, None) and "stripped" in out
    model = keras.saving.load_model(str(out_path))
    assert np.count_nonzero(to_np(model.get_layer("a").kernel) == 0) == 384


@pytest.mark.parametrize(
    "value,pattern",
    [
        (np.ones((8, 4)), "dense"),
        (np.zeros((8, 4)), "all zero"),
        (np.concatenate([np.ones((8, 3)), np.zeros((8, 1))], 1), "channel 1/4"),
        (np.tile(np.array([1, 0, 1, 0], float)[:, None], (2, 5)), "1:2"),
        (np.tile(np.array([0, 0, 0, 1], float)[:, None], (4, 3)), "1:4"),
        (
            np.kron(np.array([[1, 0, 1], [0, 1, 1]]), np.ones((2, 2))),
            "block 2x2",
        ),
        (np.array([[1, 0, 2], [0, 0, 3], [4, 5, 0]], float), "unstructured"),
    ],
)
def test_weight_pattern(value, pattern):
    assert explain.weight_pattern(value) == pattern


def test_pattern_of_random_n_m_and_blocks():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)) + 5
    groups = w.reshape(16, 4, 32)
    for g in range(16):
        for c in range(32):
            groups[g, rng.permutation(4)[:2], c] = 0  # 2 of every 4 inputs
    assert explain.weight_pattern(w) == "2:4"
    blocks = rng.random((8, 6)) < 0.6
    w = np.kron(blocks, np.ones((4, 4))) * (rng.random((32, 24)) + 1)
    assert explain.weight_pattern(w) == "block 4x4"
    w = np.kron(blocks, np.ones((4, 4)))[:30, :22]  # partial edge blocks
    assert explain.weight_pattern(w) == "block 4x4"


def test_pattern_of_conv_kernel_nm_along_input_axis():
    w = np.ones((3, 3, 8, 4))
    w[:, :, 1::2, :] = 0  # 1 of every 2 input channels: 1:2 along axis -2
    assert explain.weight_pattern(w) == "1:2"
    w = np.ones((3, 3, 8, 4))
    w[..., 2] = 0
    assert explain.weight_pattern(w) == "channel 1/4"


def test_random_99_percent_is_not_reported_as_n_m():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 64))
    w[rng.random(w.shape) < 0.99] = 0
    assert explain.weight_pattern(w) == "unstructured"


def test_sparsity_report_exported_and_pandas_friendly(files):
    _, _, _, stripped = files
    rows = keras_prune.sparsity_report(stripped)
    assert keras_prune.sparsity_report is explain.sparsity_report
    keys = set(rows[0])
    assert all(set(r) == keys for r in rows)
    assert {
        "layer",
        "weight",
        "shape",
        "params",
        "zeros",
        "sparsity",
        "pattern",
    } <= keys
    assert rows[0]["params"] == 512 and rows[0]["zeros"] == 384
    text = keras_prune.format_report(rows)
    assert "unstructured" in text.splitlines()[2]


# ------------------------------------------- user errors, outputs (#15)


def cli_main(argv):
    return cli.main([str(a) for a in argv])


def expect_error(argv, capsys, match, rc=2):
    """The command fails with a one-line message and no traceback."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == rc, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]


def test_user_errors_are_one_line_messages(files, capsys):
    tmp, pruned_path, stripped_path, _ = files
    kpz = tmp / "ok.kpz"
    assert cli_main(["compress", str(stripped_path), str(kpz)]) == 0
    (tmp / "folder.keras").mkdir()
    npz = tmp / "d.npz"
    np.savez(npz, x=X, y=np.zeros((6, 8), "float32"))
    cases = [
        (["decompress", tmp / "missing.kpz", tmp / "o.keras"], "no such file"),
        (["compress", stripped_path, tmp / "nope" / "o.kpz"], "does not exist"),
        (["compress", stripped_path, tmp], "is a folder"),
        (["decompress", kpz, tmp / "folder.keras"], "is a folder"),
        (["decompress", kpz, tmp / "nope" / "o.keras"], "does not exist"),
        (["strip", tmp / "missing.keras", tmp / "s.keras"], "no such file"),
        (["strip", tmp, tmp / "s.keras"], "not a regular file"),
        (
            [
                "schedule",
                "ConstantSparsity(0.5, 0)",
                "--plot",
                tmp / "nope" / "p.png",
            ],
            "does not exist",
        ),
        (
            ["schedule", "ConstantSparsity(0.5, 0)", "--plot", tmp / "p.txt"],
            ".png",
        ),
        (
            ["schedule", "ConstantSparsity(" + "-" * 100_000 + "0.5, 0)"],
            "too long",
        ),
        (["schedule", "Nope(1)"], "Unknown schedule"),
        (["report", ""], "empty"),
        (["report", tmp / "no-logs"], "does not exist"),
        (["report", tmp / "folder.keras"], "No TensorBoard event files"),
        (["report", npz], "neither a folder nor"),
        (
            [
                "prune",
                pruned_path,
                "--data",
                tmp / "missing.npz",
                "-o",
                tmp / "p.keras",
            ],
            "no such file",
        ),
        (
            [
                "prune",
                pruned_path,
                "--data",
                npz,
                "-o",
                tmp / "nope" / "p.keras",
            ],
            "does not exist",
        ),
    ]
    for argv, match in cases:
        expect_error(argv, capsys, match)


@pytest.mark.parametrize(
    "argv",
    [
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--batch-size",
            "0",
        ],
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--batch-size",
            "-4",
        ],
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--epochs",
            "0",
        ],
        [
            "prune",
            "m.keras",
            "--data",
            "d.npz",
            "-o",
            "o.keras",
            "--sparsity",
            "1.5",
        ],
        ["schedule", "ConstantSparsity(0.5, 0)", "--rows", "-3"],
        ["schedule", "ConstantSparsity(0.5, 0)", "--rows", "0"],
        ["schedule", "ConstantSparsity(0.5, 0)", "--steps", "-1"],
    ],
)
def test_bad_numbers_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_huge_schedules_print_without_per_step_arrays(capsys):
    import tracemalloc

    tracemalloc.start()
    try:
        assert cli_main(["schedule", "PolynomialDecay(0,0.9,0,300000000)"]) == 0
        assert (
            cli_main(
                [
                    "schedule",
                    "ConstantSparsity(0.5, 0)",
                    "--steps",
                    "2000000000",
                    "--rows",
                    "3",
                ]
            )
            == 0
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak
    out = capsys.readouterr().out
    assert "3000001 mask updates" in out
    assert "(2999989 more)" in out and " 300000000 " in out
    # --rows 3: two first rows, one last, the rest counted once.
    assert "20000000 mask updates" in out
    assert "(19999997 more)" in out and "1999999900" in out


def test_rows_lists_each_update_once(capsys):
    for rows in (1, 2, 3, 5, 12, 20):
        assert (
            cli_main(
                [
                    "schedule",
                    "ConstantSparsity(0.5, 0, 1000)",
                    "--rows",
                    str(rows),
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        steps = [
            line.split()[0]
            for line in out.splitlines()
            if re.fullmatch(r"\s*\d+\s+\d\.\d{6}\s+\d+", line)
        ]
        assert len(steps) == len(set(steps)) == min(rows, 11), (rows, out)
        assert steps[0] == "0"
        assert steps[-1] == "1000" or rows == 1


def test_outputs_need_force_and_matching_extension(files, capsys):
    tmp, pruned_path, stripped_path, _ = files
    victim = tmp / "victim.keras"
    victim.write_bytes(b"precious")
    expect_error(["compress", stripped_path, victim], capsys, ".kpz")
    expect_error(["strip", pruned_path, victim], capsys, "--force")
    assert victim.read_bytes() == b"precious"
    out = tmp / "m.kpz"
    assert cli_main(["compress", stripped_path, out]) == 0
    first = out.read_bytes()
    expect_error(["compress", stripped_path, out], capsys, "--force")
    expect_error(["decompress", out, tmp / "m.kpz.bin"], capsys, ".keras")
    assert (
        cli_main(["compress", "--force", "--codec", "zlib", stripped_path, out])
        == 0
    )
    assert out.read_bytes() != first
    assert cli_main(["strip", "--force", pruned_path, victim]) == 0
    assert keras.saving.load_model(str(victim)).get_layer("a")
    # No temporary files left behind.
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")]


def test_failed_write_keeps_previous_output(files, capsys, monkeypatch):
    import os

    tmp, pruned_path, _, _ = files
    out = tmp / "s.keras"
    out.write_bytes(b"previous")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    expect_error(
        ["strip", "--force", pruned_path, out], capsys, "No space left", rc=1
    )
    monkeypatch.undo()
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []
