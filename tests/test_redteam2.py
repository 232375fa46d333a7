"""Regression tests of the second hostile-input pass (issue 15).

Each test reproduces one finding: layers whose masks cannot apply
(quantized, LoRA, zero-size weights), codecs, schedule configs, the `.kpz`
loader's paths, the CLI and the event reader. Models are tiny (a few
units) and a test builds at most a couple of them.
"""

import io
import json
import warnings

import keras
import numpy as np
import pytest

import keras_prune

from conftest import cli_error
from conftest import to_np

X = np.random.RandomState(0).randn(4, 6).astype("float32")
Y = np.random.RandomState(1).randn(4, 3).astype("float32")


def _seq():
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, name="d1"),
            keras.layers.Dense(3, name="d2"),
        ]
    )


# --------------------------------------------- masks that cannot apply


def test_pruning_a_quantized_model_is_refused():
    """Before: int8 kernels were masked as if they were the weights (the
    stripped model predicted 1e5 away from the pruned one), int4 masked
    packed bytes (two weights each), float8 failed in the model copy with
    an unrelated message."""
    # int4 takes the path of int8 (`quantization_mode`); float8's refusal
    # comes before the model copy, which cannot rebuild its scales.
    for mode, prune in [
        ("int8", lambda m: keras_prune.prune_once(m, 0.5)),
        ("float8", keras_prune.prune_low_magnitude),
    ]:
        model = _seq()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # InputLayer has no quantize()
            model.quantize(mode)
        with pytest.raises(
            ValueError, match=rf"'d1' is quantized .*'{mode}'.*strip_pruning"
        ):
            prune(model)


def test_quantizing_a_pruned_model_is_refused_at_the_next_call():
    """Before: `pruned.quantize('int8')` quantized the wrapped layers,
    whose masks then applied to variables no longer used: predictions were
    1e5 off and no weight was pruned, silently; strip kept no zero."""
    pruned = keras_prune.prune_once(_seq(), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned.quantize("int8")
    with pytest.raises(ValueError, match="'d1' is quantized"):
        pruned.predict(X, verbose=0)
    with pytest.raises(ValueError, match="'d1' is quantized"):
        keras_prune.strip_pruning(pruned)
    assert len(keras_prune.integration.state.pruning_wrappers(pruned)) == 2


def test_lora_layers_are_refused_before_and_after_wrapping():
    """Before: the LoRA product `a @ b` was added to the masked kernel, so
    a 50% pruned Dense with LoRA kept 46 of 48 weights non-zero after
    training and strip, silently."""
    model = _seq()
    model.get_layer("d1").enable_lora(2)
    with pytest.raises(ValueError, match="'d1' has LoRA enabled .rank 2."):
        keras_prune.prune_low_magnitude(model)

    pruned = keras_prune.prune_low_magnitude(_seq())
    pruned.get_layer("prune_low_magnitude_d2").layer.enable_lora(1)
    pruned.compile("sgd", "mse")
    with pytest.raises(ValueError, match="'d2' has LoRA enabled"):
        pruned.fit(X, Y, verbose=0, callbacks=[keras_prune.UpdatePruningStep()])
    with pytest.raises(ValueError, match="enable LoRA afterwards"):
        keras_prune.strip_pruning(pruned)


def test_lora_after_strip_keeps_the_zeros():
    """The documented order works: prune, strip, then enable LoRA."""
    stripped = keras_prune.strip_pruning(keras_prune.prune_once(_seq(), 0.5))
    kernel = to_np(stripped.get_layer("d1").kernel)
    stripped.get_layer("d1").enable_lora(2)
    assert int((kernel == 0).sum()) == 15
    np.testing.assert_array_equal(
        to_np(stripped.get_layer("d1").kernel), kernel
    )


def test_zero_size_weight_is_refused_by_name():
    """Before: ZeroDivisionError in the host select (prune_once,
    UpdatePruningStep) and a TypeError in the compiled step."""
    model = keras.Sequential(
        [keras.Input((0,)), keras.layers.Dense(4, name="empty")]
    )
    with pytest.raises(
        ValueError, match=r"'empty': weight 'kernel' has shape \(0, 4\)"
    ):
        keras_prune.prune_once(model, 0.5)
    with pytest.raises(ValueError, match="Leave the layer out"):
        keras_prune.prune_low_magnitude(model)


# ------------------------------------------------------------- codecs


def test_misspelt_codec_is_refused_for_small_arrays(tmp_path):
    """Before: an array too small to compress never reached the codec, so
    `compress_array(np.zeros(10), codec='xz')` succeeded."""
    model = _seq()
    for codec in ["none", "xz", "LZMA", None, 3, ""]:
        with pytest.raises(ValueError, match="codec must be 'lzma', 'zlib'"):
            keras_prune.compress_array(np.ones(3, "float32"), codec=codec)
        with pytest.raises(ValueError, match="codec must be"):
            keras_prune.save_compressed(model, tmp_path / "m.kpz", codec=codec)
    assert not (tmp_path / "m.kpz").exists()


# ----------------------------------------------------------- schedules


def _numpy_valued_schedules():
    t = keras.ops.convert_to_tensor
    return [
        keras_prune.ConstantSparsity(np.float32(0.3), np.int64(0)),
        keras_prune.ConstantSparsity(t(0.25), 0),
        keras_prune.PolynomialDecay(
            np.float64(0.1), t(0.5, "bfloat16"), 0, 10, power=np.int64(2)
        ),
        keras_prune.ExponentialDecay(
            np.float32(0.1), 0.5, 0, 10, decay=np.float32(0.2)
        ),
        keras_prune.CosineDecay(np.float16(0.1), np.float32(0.5), 0, 10),
    ]


def test_numpy_and_tensor_hyperparameters_give_a_json_config():
    """Before: `ConstantSparsity(np.float32(0.3), 0).get_config()` held a
    NumPy scalar (a tensor for a tensor argument) that `json` cannot
    write, so a pruned model could not be saved."""
    steps = [0, 1, 5, 9, 10, 11, 100]
    for schedule in _numpy_valued_schedules():
        config = json.loads(json.dumps(schedule.get_config()))
        again = type(schedule).from_config(config)
        assert again.get_config() == config
        for step in steps:
            a, b = schedule(np.int64(step)), again(np.int64(step))
            assert bool(a[0]) == bool(b[0])
            assert np.float32(a[1]).tobytes() == np.float32(b[1]).tobytes()
    assert keras_prune.ConstantSparsity(np.float32(0.3), 0).get_config()[
        "config"
    ]["target_sparsity"] == float(np.float32(0.3))
    assert type(_numpy_valued_schedules()[2].power) is int


# ------------------------------------------------- .kpz paths and targets


@pytest.fixture(scope="module")
def small_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return model


def test_save_compressed_refuses_bad_targets_before_writing(
    small_model, tmp_path
):
    """Before: a folder gave 'Device or resource busy' naming a temporary
    file, a missing folder named the temporary file, a bytes path 'Can't
    mix bytes and non-bytes', a text file object 'string argument
    expected', and `model.keras` received `.kpz` bytes."""
    save = keras_prune.save_compressed
    with pytest.raises(IsADirectoryError, match="is a folder; give a file"):
        save(small_model, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist; create it"):
        save(small_model, tmp_path / "missing" / "m.kpz")
    with pytest.raises(TypeError, match="got bytes"):
        save(small_model, bytes(tmp_path / "m.kpz"))
    with pytest.raises(TypeError, match="got a text file object"):
        save(small_model, io.StringIO())
    with pytest.raises(ValueError, match="`path` is empty"):
        save(small_model, "")
    (tmp_path / "victim.keras").write_bytes(b"keep")
    for name in ("victim.keras", "w.H5", "m.json"):
        with pytest.raises(ValueError, match="another format's extension"):
            save(small_model, tmp_path / name)
    assert (tmp_path / "victim.keras").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.keras"]


def test_save_compressed_writes_through_a_symlink(small_model, tmp_path):
    """Before: the atomic rename replaced the link itself by a file, and
    its target kept the old model."""
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "model.kpz"
    target.write_bytes(b"old")
    link = tmp_path / "latest.kpz"
    link.symlink_to(target)
    n = keras_prune.save_compressed(small_model, link)
    assert link.is_symlink()
    assert target.stat().st_size == n
    loaded = keras_prune.load_compressed(str(link))
    np.testing.assert_array_equal(
        to_np(loaded.weights[0]), to_np(small_model.weights[0])
    )


def test_bytes_naming_a_file_are_not_read_as_its_contents(
    small_model, tmp_path, monkeypatch
):
    """Before: `load_compressed(b'm.kpz')` said the file was truncated
    (5 bytes) although m.kpz was a good file."""
    monkeypatch.chdir(tmp_path)
    keras_prune.save_compressed(small_model, "m.kpz")
    with pytest.raises(TypeError, match="pass it as a str or pathlib.Path"):
        keras_prune.load_compressed(b"m.kpz")
    with pytest.raises(keras_prune.CompressedFormatError, match="truncated"):
        keras_prune.load_compressed(b"no-such-file.kpz")
    data = (tmp_path / "m.kpz").read_bytes()
    assert len(keras_prune.load_compressed(data).weights) == 2


# ----------------------------------------------------------------- CLI


def test_cli_prune_refuses_options_it_would_ignore(tmp_path, capsys):
    """Before: with a compiled model and no --loss, `--optimizer nosuch`
    and `--metrics` were silently ignored (exit 0); a 0-sample --data
    ended in 'StopIteration:'."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=np.ones((4, 4), "f4"), y=np.ones((4, 3)))
    np.savez(
        tmp_path / "e.npz", x=np.ones((0, 4), "f4"), y=np.ones((0, 3), "f4")
    )
    base = ["prune", tmp_path / "m.keras", "-o", tmp_path / "o.keras"]
    data = ["--data", tmp_path / "d.npz"]
    assert "--optimizer" in cli_error(
        base + data + ["--optimizer", "nosuch"], capsys
    )
    assert "--metrics would" in cli_error(
        base + data + ["--metrics", "acc"], capsys
    )
    assert "no samples" in cli_error(
        base + ["--data", tmp_path / "e.npz"], capsys
    )
    assert not (tmp_path / "o.keras").exists()


def test_cli_strip_reads_a_compressed_file(tmp_path, capsys):
    """Before: `strip model.kpz out.keras` failed in keras.saving.load_model
    although `inspect`, `compress` and `shrink` read `.kpz` files."""
    from keras_prune import cli

    pruned = keras_prune.prune_once(_seq(), 0.5)
    keras_prune.save_compressed(pruned, tmp_path / "p.kpz")
    argv = ["strip", tmp_path / "p.kpz", tmp_path / "s.keras"]
    assert cli.main([str(a) for a in argv]) == 0
    capsys.readouterr()
    stripped = keras.saving.load_model(tmp_path / "s.keras")
    assert [type(x).__name__ for x in stripped.layers] == ["Dense", "Dense"]
    assert int((to_np(stripped.get_layer("d1").kernel) == 0).sum()) == 15


# ------------------------------------------------------------ eager API


def test_update_masks_now_checks_its_sparsity_and_build():
    """Before: `update_masks_now(True)` pruned at 100%, `'0.5'` at 50%
    (float() read both), None raised float()'s TypeError, and an unbuilt
    wrapper did nothing, silently."""
    pruned = keras_prune.prune_once(_seq(), 0.5)
    wrapper = pruned.get_layer("prune_low_magnitude_d1")
    before = to_np(wrapper.masks[0]).copy()
    for value in (True, "0.5", np.array([0.5]), None):
        with pytest.raises(ValueError, match="sparsity"):
            wrapper.update_masks_now(value)
    np.testing.assert_array_equal(to_np(wrapper.masks[0]), before)
    wrapper.update_masks_now(np.float32(0.2))
    assert int((~to_np(wrapper.masks[0])).sum()) == 6
    unbuilt = keras_prune.PruneLowMagnitude(keras.layers.Dense(3, name="u"))
    with pytest.raises(ValueError, match="'u': the pruning wrapper is not"):
        unbuilt.update_masks_now(0.5)


def test_is_pruned_m_by_n_refuses_odd_pairs():
    """Before: '2:4' and (2, 4, 1) raised 'too many values to unpack',
    (2, 0) 'more than number elements', (True, 4) counted True as 1."""
    for m_by_n in [(2, 0), (2.0, 4), "2:4", (2, 4, 1), (True, 4)]:
        with pytest.raises(ValueError, match="`m_by_n` must be a pair"):
            keras_prune.is_pruned_m_by_n(np.zeros((4, 8)), m_by_n)
    assert keras_prune.is_pruned_m_by_n(np.zeros((4, 8)), (np.int64(2), 4))


def test_monitoring_entry_points_take_strings_and_name_bad_models():
    """Before: describe_schedule('ConstantSparsity(0.5, 0)') raised "'str'
    object is not callable"; sparsity_report('x') an AttributeError."""
    text = "PolynomialDecay(0.1, 0.5, 0, 10, frequency=5)"
    schedule = keras_prune.PolynomialDecay(0.1, 0.5, 0, 10, frequency=5)
    assert keras_prune.describe_schedule(text) == keras_prune.describe_schedule(
        schedule
    )
    with pytest.raises(TypeError, match="sparsity_report expects a keras"):
        keras_prune.sparsity_report("x")
    with pytest.raises(TypeError, match="pruning_plan expects a keras"):
        keras_prune.pruning_plan(None)


# --------------------------------------------------------- report, plots


@pytest.fixture
def one_run(tmp_path):
    from keras_prune.monitoring import events

    writer = events.EventFileWriter(str(tmp_path / "logs" / "train"))
    writer.add_scalars(3, {"model/sparsity": 0.25, "loss": 1.5})
    writer.close()
    return tmp_path / "logs"


def test_report_paths_and_plot_targets(one_run, tmp_path, monkeypatch):
    """Before: `report(log_dir, plot='.')` wrote a hidden `..png` and said
    'wrote .'; a bytes log_dir raised 'a bytes-like object is required';
    an event file's own path gave 'No TensorBoard event files'; a plot
    in a missing folder was drawn before failing."""
    from keras_prune.monitoring import events
    from keras_prune.monitoring.report import report

    monkeypatch.chdir(tmp_path)
    text = report(one_run)
    assert "loss" in text and "1.5" in text
    assert report(bytes(one_run)) == text
    ((run, path),) = events.event_files(one_run)
    assert run == "train"
    assert "1.5" in report(path)
    with pytest.raises(TypeError, match="log_dir must be a folder path"):
        report(None)
    with pytest.raises(ValueError, match="is a folder"):
        report(one_run, plot=".")
    with pytest.raises(FileNotFoundError, match="does not exist; create"):
        report(one_run, plot="missing/p.png")
    with pytest.raises(ValueError, match="cannot write 'txt' files"):
        report(one_run, plot="p.txt")
    with pytest.raises(ValueError, match="is a folder"):
        keras_prune.plot_schedule("ConstantSparsity(0.5, 0)", path=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_function_schedule_refuses_non_numbers():
    """Before: fn returning True pruned at 100% (float(True)), '0.5' at
    50%; 'x' raised float()'s 'could not convert string', and the message
    of a bad value serialised the whole lambda (base64 bytecode)."""
    from keras_prune.core import schedules

    for value in [True, "0.5", np.array([0.25]), None]:

        def fn(step, value=value):
            return value

        schedule = keras_prune.FunctionSchedule(fn, 0, -1, 1)
        with pytest.raises(ValueError, match=r"fn=.*fn\): fn\(7\) returned"):
            schedules.evaluate(schedule, 7)
    ok = keras_prune.FunctionSchedule(lambda s: np.float16(0.25), 0, -1, 1)
    assert schedules.evaluate(ok, 7)[1] == np.float32(0.25)


# ------------------------------------------------ mixed precision, ties


def test_low_precision_layers_with_many_ties_keep_an_exact_count():
    """Masks of bfloat16/float16 kernels whose magnitudes are mostly ties
    (a quarter-step grid): the compiled step and UpdatePruningStep
    (bfloat16 layer) and prune_once (mixed_float16 policy) all keep exactly
    kept_count weights."""
    kernel = np.round(np.random.RandomState(0).randn(6, 40) * 2) / 4
    counts = []
    for dtype, callbacks in [
        ("bfloat16", []),
        ("bfloat16", [keras_prune.UpdatePruningStep()]),
        ("mixed_float16", None),
    ]:
        inp = keras.Input((6,))
        dense = keras.layers.Dense(40, dtype=dtype, name="t")
        model = keras.Model(inp, dense(inp))
        dense.kernel.assign(kernel.astype("float32"))
        if callbacks is None:
            pruned = keras_prune.prune_once(model, 0.5)
        else:
            pruned = keras_prune.prune_low_magnitude(
                model,
                pruning_schedule=keras_prune.ConstantSparsity(0.5, 0, -1, 1),
            )
            pruned.compile("sgd", "mse")
            pruned.fit(
                X,
                np.zeros((4, 40), "float32"),
                batch_size=4,
                verbose=0,
                callbacks=callbacks,
            )
        wrapper = pruned.get_layer("prune_low_magnitude_t")
        counts.append(int(to_np(wrapper.masks[0]).sum()))
    assert counts == [120, 120, 120]


def test_layers_naming_no_layer_is_refused():
    """Before: `layers='zzz'` (or a list with a misspelt name, or [])
    returned a model with those layers silently unpruned."""
    model = _seq()
    for layers in ["zzz", ["d1", "d3"], []]:
        with pytest.raises(ValueError, match="`layers` (entries|is an empty)"):
            keras_prune.prune_low_magnitude(model, layers=layers)
    pruned = keras_prune.prune_low_magnitude(_seq(), layers=["d1", "d.*"])
    assert len(keras_prune.integration.state.pruning_wrappers(pruned)) == 2


def test_cli_output_through_a_symlink_replaces_its_target(tmp_path, capsys):
    """Before: `--force` onto a symlinked output replaced the link by a
    file and left the file it pointed to unchanged."""
    from keras_prune import cli

    _seq().save(tmp_path / "in.keras")
    target = tmp_path / "target.keras"
    target.write_bytes(b"old")
    link = tmp_path / "link.keras"
    link.symlink_to(target)
    argv = ["strip", "--force", tmp_path / "in.keras", link]
    assert cli.main([str(a) for a in argv]) == 0
    capsys.readouterr()
    assert link.is_symlink() and target.read_bytes()[:2] == b"PK"
    assert len(keras.saving.load_model(link).weights) == 4


def test_big_endian_arrays_come_back_native_with_the_same_bits():
    """The documented round trip of a big-endian array: same values bit
    for bit (NaN payload, -0.0) in native byte order."""
    for dtype in [">f2", ">f4", ">f8", ">i2", ">u4", ">i8"]:
        a = (np.arange(70) - 20).astype(dtype).reshape(7, 10)
        if a.dtype.kind == "f":
            a[1, 2] = -0.0
            bits = a.view(f">u{a.dtype.itemsize}")
            bits[1, 1] = bits[3, 3] = np.array(np.nan, dtype).view(bits.dtype)
            bits[3, 3] |= 3  # a NaN payload
        b = keras_prune.decompress_array(keras_prune.compress_array(a))
        native = a.astype(a.dtype.newbyteorder("="))
        assert (
            b.dtype == native.dtype and b.dtype.isnative and b.shape == a.shape
        )
        assert b.tobytes() == native.tobytes()


def test_get_prunable_weights_must_return_the_layers_variables():
    """Before: names ('kernel') raised "'str' object has no attribute
    'shape'", a lone variable was iterated, and a variable of no layer got
    a mask that pruned nothing the layer computes with, silently."""

    def model_of(returns):
        class Custom(keras.layers.Dense, keras_prune.PrunableLayer):
            def get_prunable_weights(self):
                return returns(self)

        return keras.Sequential([keras.Input((3,)), Custom(4, name="c")])

    stray = keras.Variable(np.zeros((3, 4), "float32"))
    for returns, error, match in [
        (lambda layer: ["kernel"], ValueError, "returned 'kernel', which"),
        (lambda layer: [stray], ValueError, "not one of the layer's"),
        (lambda layer: layer.kernel, TypeError, "must return a list"),
    ]:
        with pytest.raises(error, match=f"Layer 'c': .*{match}"):
            keras_prune.prune_low_magnitude(model_of(returns))
    pruned = keras_prune.prune_once(model_of(lambda layer: [layer.kernel]), 0.5)
    assert int((~to_np(pruned.layers[0].masks[0])).sum()) == 6


def test_flags_must_be_bools(small_model, tmp_path):
    """Before: include_optimizer="no", compile="no" and verify="false" were
    truthy strings and did the opposite of what they say."""
    blob = keras_prune.compress_array(np.ones(3, "float32"))
    with pytest.raises(TypeError, match="`verify` must be True or False"):
        keras_prune.decompress_array(blob, verify="false")
    with pytest.raises(TypeError, match="`include_optimizer` must be"):
        keras_prune.save_compressed(
            small_model, tmp_path / "m.kpz", include_optimizer="no"
        )
    keras_prune.save_compressed(small_model, tmp_path / "m.kpz")
    with pytest.raises(TypeError, match="`compile` must be True or False"):
        keras_prune.load_compressed(tmp_path / "m.kpz", compile="no")
    assert keras_prune.decompress_array(blob, verify=np.bool_(True)).sum() == 3


class _Scaled(keras.layers.Layer):
    """A layer keras-prune does not know: one kernel, one scale vector."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.scale = self.add_weight(shape=(3,), name="scale")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self.scale


def test_register_prunable_weights_misspelt_name_is_refused():
    """`register_prunable_weights(cls, ["kernal"])` left the layer silently
    unpruned; a name that matches for some weights only warns."""
    from keras_prune.integration import registry

    x = keras.Input((4,))
    model = keras.Model(x, _Scaled(name="scaled")(x))
    try:
        keras_prune.register_prunable_weights("_Scaled", ["kernal"])
        with pytest.raises(ValueError, match=r"\['kernal'\] names no weight"):
            keras_prune.prune_low_magnitude(model)
        keras_prune.register_prunable_weights("_Scaled", ["kernel", "bias"])
        with pytest.warns(UserWarning, match=r"\['bias'\] names no weight"):
            pruned = keras_prune.prune_once(model, 0.5)
        (row,) = [
            r
            for r in keras_prune.sparsity_report(pruned, pattern=False)
            if r["pruned"]
        ]
        assert row["weight"] == "kernel" and row["zeros"] == 6
    finally:
        registry._REGISTERED.pop("_Scaled", None)


def test_cli_unloadable_model_is_a_user_error(tmp_path, capsys):
    """`inspect d.npz` exited with 1 (the code of an I/O error); a file that
    is no model is the user's error: 2, one line."""
    bad = tmp_path / "d.npz"
    np.savez(bad, a=np.ones(3))
    assert "cannot load model" in cli_error(["inspect", bad], capsys)
