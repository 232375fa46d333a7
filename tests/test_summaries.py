"""PruningSummaries, reading event files back, report and plots (issue 6)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.integration.strip import pruning_wrappers
from keras_prune.monitoring import events
from keras_prune.monitoring import plots
from keras_prune.monitoring import summaries

from conftest import BACKEND
from conftest import to_np

pytest.importorskip("tensorboard")

PNG_HEADER = b"\x89PNG\r\n\x1a\n"
TAG = "d/kernel"  # <layer>/<weight> of the tiny model


def tiny_model(schedule=None):
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, name="d")]
    )
    schedule = schedule or keras_prune.ConstantSparsity(0.5, 0, frequency=1)
    pruned = keras_prune.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return pruned


def data(n=12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = rng.normal(size=(n, 4)).astype("float32")
    return x, y


class Recorder(keras.callbacks.Callback):
    """Kernel before each batch; mask and threshold after it (synced)."""

    def __init__(self):
        super().__init__()
        self.before, self.after = [], []

    def on_train_batch_begin(self, batch, logs=None):
        wrapper = pruning_wrappers(self.model)[0]
        self.before.append(to_np(wrapper.pruned_weights[0]))

    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        wrapper = pruning_wrappers(model)[0]
        self.after.append(
            dict(
                step=int(to_np(model.optimizer.iterations)),
                mask=to_np(wrapper.masks[0]),
                threshold=to_np(wrapper.thresholds[0]),
            )
        )


def fit(model, log_dir, epochs=2, batch_size=4, callbacks=(), **kwargs):
    x, y = data()
    cb = summaries.PruningSummaries(log_dir, **kwargs)
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        verbose=0,
        validation_data=(x, y),
        callbacks=[keras_prune.UpdatePruningStep(), *callbacks, cb],
    )
    return cb, history


def points(scalars, tag):
    return [s for s, _ in scalars[tag]], [v for _, v in scalars[tag]]


# ------------------------------------------------------------ exact values


def test_epoch_values_are_exact(tmp_path):
    model = tiny_model()
    recorder = Recorder()
    fit(model, tmp_path, callbacks=[recorder])
    scalars = summaries.read_scalars(tmp_path)

    # Steps: optimizer iterations at each epoch end (3 batches per epoch).
    assert int(to_np(model.optimizer.iterations)) == 6
    for suffix in ("sparsity", "threshold", "target_sparsity"):
        assert points(scalars, f"{TAG}/{suffix}")[0] == [3, 6]
    assert points(scalars, "model/sparsity")[0] == [3, 6]

    # Sparsity of weight * mask: exactly what kept_count says, 16 of 32.
    kept = int(to_np(keras_prune.kept_count(32, 0.5)))
    assert kept == 16
    assert points(scalars, f"{TAG}/sparsity")[1] == [0.5, 0.5]
    assert points(scalars, "model/sparsity")[1] == [0.5, 0.5]
    assert points(scalars, f"{TAG}/target_sparsity")[1] == [0.5, 0.5]
    assert points(scalars, "model/target_sparsity")[1] == [0.5, 0.5]

    # Threshold = the smallest |w| kept, from the kernel the last mask update
    # (at the start of the last batch) saw, and the wrapper's variable.
    thresholds = points(scalars, f"{TAG}/threshold")[1]
    for logged, last_batch in zip(thresholds, (2, 5)):
        mask = recorder.after[last_batch]["mask"]
        assert recorder.after[last_batch]["step"] == last_batch + 1
        assert mask.sum() == kept
        min_kept = np.abs(recorder.before[last_batch])[mask].min()
        assert np.float32(logged) == min_kept
        assert np.float32(logged) == recorder.after[last_batch]["threshold"]
    wrapper = pruning_wrappers(model)[0]
    assert np.float32(thresholds[-1]) == to_np(wrapper.thresholds[0])

    # fit metrics, as keras.callbacks.TensorBoard names them.
    assert points(scalars, "train/epoch_loss")[0] == [0, 1]
    assert points(scalars, "validation/epoch_loss")[0] == [0, 1]
    assert "train/epoch_sparsity" in scalars  # from UpdatePruningStep
    assert len(os.listdir(tmp_path / events.PRUNING_RUN)) == 1


def test_files_read_by_tensorboard_itself(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    fit(tiny_model(), tmp_path, epochs=1)
    acc = event_accumulator.EventAccumulator(str(tmp_path / events.PRUNING_RUN))
    acc.Reload()
    ours = summaries.read_scalars(tmp_path)
    assert set(acc.Tags()["scalars"]) == {
        t
        for t in ours
        if "/" in t and not t.startswith(("train/", "validation/"))
    }
    for tag in acc.Tags()["scalars"]:
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == ours[tag]
    assert events.CONFIG_TAG in acc.Tags()["tensors"]


@pytest.mark.parametrize(
    "update_freq, steps_per_execution, expected",
    [
        (2, 1, [2, 4, 6]),
        ("batch", 1, [1, 2, 3, 4, 5, 6]),
        (4, 1, [4]),
        (2, 3, [3, 6]),  # callbacks see every 3rd batch: logs at crossings
    ],
)
def test_update_freq_batches(
    tmp_path, update_freq, steps_per_execution, expected
):
    if steps_per_execution > 1 and BACKEND == "torch":
        pytest.skip("steps_per_execution must be 1 on torch")
    model = tiny_model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="mse",
        steps_per_execution=steps_per_execution,
    )
    fit(model, tmp_path, update_freq=update_freq)
    scalars = summaries.read_scalars(tmp_path)
    assert points(scalars, f"{TAG}/sparsity") == (
        expected,
        [0.5] * len(expected),
    )
    assert points(scalars, "train/batch_loss")[0] == expected
    assert points(scalars, "train/epoch_loss")[0] == [0, 1]


def test_target_is_the_last_update_that_ran(tmp_path):
    schedule = keras_prune.PolynomialDecay(
        0.25, 0.75, begin_step=1, end_step=5, frequency=2
    )
    model = tiny_model(schedule)
    fit(model, tmp_path, epochs=2, update_freq="batch")
    scalars = summaries.read_scalars(tmp_path)
    updates = dict(keras_prune.monitoring.explain.schedule_events(schedule, 7))
    assert sorted(updates) == [1, 3, 5]
    steps, targets = points(scalars, f"{TAG}/target_sparsity")
    _, actual = points(scalars, f"{TAG}/sparsity")
    assert steps == [1, 2, 3, 4, 5, 6]
    for step, target, sparsity in zip(steps, targets, actual):
        ran = [s for s in updates if s <= step - 1]  # steps 0..step-1 ran
        expected = (
            keras_prune.core.schedules.evaluate(schedule, max(ran))[1]
            if ran
            else np.float32(0.0)
        )
        assert np.float32(target) == expected, step
        kept = int(to_np(keras_prune.kept_count(32, expected)))
        assert sparsity == (32 - kept) / 32, step


def test_sparsity_is_of_weight_times_mask(tmp_path):
    model = tiny_model()
    cb, _ = fit(model, tmp_path, epochs=1)
    wrapper = pruning_wrappers(model)[0]
    kernel, mask = to_np(wrapper.pruned_weights[0]), to_np(wrapper.masks[0])
    kernel = kernel.copy()
    kernel[np.unravel_index(np.flatnonzero(mask)[0], kernel.shape)] = 0.0
    wrapper.pruned_weights[0].assign(kernel)
    cb.set_model(model)
    written = cb.log(step=100)
    assert written[f"{TAG}/sparsity"] == 17 / 32  # mask alone says 16 / 32
    assert summaries.read_scalars(tmp_path)[f"{TAG}/sparsity"][-1] == (
        100,
        np.float32(17 / 32),
    )


def test_custom_loop_without_fit(tmp_path):
    model = tiny_model()
    x, _ = data(4)
    for _ in range(3):
        model(x, training=True)
    cb = summaries.PruningSummaries(str(tmp_path))
    cb.set_model(model)
    cb.on_epoch_begin(-1)  # tfmot's custom-loop recipe logs right away
    scalars = summaries.read_scalars(tmp_path)
    # No optimizer step was taken: iterations is 0.
    assert scalars[f"{TAG}/sparsity"] == [(0, 0.5)]
    assert scalars[f"{TAG}/target_sparsity"] == [(0, 0.5)]


def test_nested_weights_get_unique_tags():
    model = keras.Sequential(
        [
            keras.Input((4, 2)),
            keras.layers.Bidirectional(keras.layers.SimpleRNN(3), name="bi"),
        ]
    )
    pruned = keras_prune.prune_low_magnitude(model)
    rows = summaries.pruned_weight_stats(pruned)
    tags = [r["tag"] for r in rows]
    assert len(tags) == 4 and len(set(tags)) == 4
    assert all(t.startswith("bi/") for t in tags)
    assert all(r["step"] == 0 and r["target_sparsity"] == 0.0 for r in rows)


# ----------------------------------------------------------- validation


@pytest.mark.parametrize("log_dir", [None, "", 0, ["logs"]])
def test_log_dir_must_be_a_non_empty_string(log_dir):
    with pytest.raises(ValueError) as e:
        summaries.PruningSummaries(log_dir)
    assert str(e.value) == (
        f"`log_dir` must be a non-empty string. You passed `log_dir`={log_dir}."
    )


def test_arguments(tmp_path):
    assert keras_prune.PruningSummaries is summaries.PruningSummaries
    summaries.PruningSummaries(pathlib.Path(tmp_path))
    for bad in ("often", 0, -1, True, 1.5):
        with pytest.raises(ValueError, match="update_freq"):
            summaries.PruningSummaries(str(tmp_path), update_freq=bad)
    with pytest.raises(TypeError, match="unexpected keyword"):
        summaries.PruningSummaries(str(tmp_path), histogramfreq=1)
    with pytest.warns(UserWarning, match="histogram_freq"):
        summaries.PruningSummaries(str(tmp_path), histogram_freq=1)
    summaries.PruningSummaries(
        str(tmp_path), profile_batch=0, write_graph=False
    )  # no warning needed


# --------------------------------------------------------------- reading


def test_read_scalars_tensor_format(tmp_path):
    """Scalars as tf.summary / TensorBoard v2 write them (tensor protos)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util

    writer = events.EventFileWriter(tmp_path / "train")
    value = summary_pb2.Summary.Value(
        tag="epoch_loss",
        tensor=tensor_util.make_tensor_proto(np.float32(0.25)),
        metadata=summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name="scalars"
            )
        ),
    )
    writer._add_summary(7, [value], None)
    writer.add_text(7, "notes", "not a scalar")
    writer.close()
    assert summaries.read_scalars(tmp_path) == {"train/epoch_loss": [(7, 0.25)]}
    # A misspelt folder is an error, not a run without scalars.
    with pytest.raises(FileNotFoundError, match="nothing"):
        summaries.read_scalars(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    assert summaries.read_scalars(tmp_path / "empty") == {}
    (tmp_path / "notes.txt").write_text("not events")
    with pytest.raises(NotADirectoryError, match="neither a folder"):
        summaries.read_scalars(tmp_path / "notes.txt")


def test_last_update():
    constant = keras_prune.ConstantSparsity(0.5, 0, frequency=100)
    assert summaries.last_update(constant, 250) == (200, np.float32(0.5))
    assert summaries.last_update(constant, 10_000_000)[0] == 10_000_000
    late = keras_prune.ConstantSparsity(0.5, 5000, end_step=6000)
    assert summaries.last_update(late, 4999) is None
    assert summaries.last_update(late, 10**6)[0] == 6000
    custom = keras_prune.FunctionSchedule(
        lambda step: min(0.9, step / 2000),
        begin_step=0,
        end_step=2000,
        frequency=100,
    )
    step, value = summaries.last_update(custom, 1234)
    assert step == 1200
    assert value == keras_prune.core.schedules.evaluate(custom, 1200)[1]


# ----------------------------------------------------- report and plots


def is_png(path):
    path = pathlib.Path(path)
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_HEADER


def test_report_and_plots(tmp_path):
    schedule = keras_prune.PolynomialDecay(0.0, 0.75, 0, 4, frequency=1)
    model = tiny_model(schedule)
    _, history = fit(model, tmp_path / "logs")

    text = summaries.report(tmp_path / "logs", plot=tmp_path / "report.png")
    assert is_png(tmp_path / "report.png")
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith(TAG))
    assert row.split() == [TAG, "32", "0.7500", "0.7500", row.split()[4], "6"]
    assert any(line.startswith("model (all pruned weights)") for line in lines)
    assert "train/epoch_loss" in text

    plots.plot_layer_sparsity(model, tmp_path / "layers.png")
    plots.plot_layer_sparsity(tmp_path / "logs", tmp_path / "layers_log.png")
    plots.plot_layer_sparsity(
        keras_prune.strip_pruning(model), tmp_path / "layers_stripped.png"
    )
    plots.plot_training_sparsity(schedule, history, tmp_path / "history.png")
    plots.plot_training_sparsity(
        None, tmp_path / "logs", tmp_path / "from_logs.png"
    )
    for name in (
        "layers",
        "layers_log",
        "layers_stripped",
        "history",
        "from_logs",
    ):
        assert is_png(tmp_path / f"{name}.png"), name

    rows = plots.layer_sparsity_rows(tmp_path / "logs")
    assert [(r["tag"], r["sparsity"], r["params"]) for r in rows] == [
        (TAG, 0.75, 32)
    ]
    with pytest.raises(FileNotFoundError):
        summaries.report(tmp_path / "empty")
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        plots.plot_training_sparsity(
            schedule, {"loss": [1.0]}, steps_per_epoch=3
        )


# ------------------------------------------------------- no TensorFlow

NO_TF_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError
    import keras, numpy as np, keras_prune
    from keras_prune.monitoring import summaries

    log_dir, png = sys.argv[1], sys.argv[2]
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, name="d")])
    model = keras_prune.prune_low_magnitude(
        model,
        pruning_schedule=keras_prune.ConstantSparsity(0.5, 0, frequency=1))
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 8), "float32")
    model.fit(x, x[:, :4], batch_size=4, epochs=2, verbose=0,
              callbacks=[keras_prune.PruningSummaries(log_dir, update_freq=1)])
    scalars = summaries.read_scalars(log_dir)
    summaries.report(log_dir, plot=png)
    print(json.dumps(dict(backend=keras.backend.backend(),
                          tf=sys.modules["tensorflow"] is not None,
                          sparsity=scalars["d/kernel/sparsity"])))
""")


def test_works_without_tensorflow(tmp_path):
    backend = BACKEND if BACKEND != "tensorflow" else "jax"
    if backend == "jax":
        pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TF_SCRIPT,
            str(tmp_path / "logs"),
            str(tmp_path / "r.png"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == dict(
        backend=backend, tf=False, sparsity=[[s, 0.5] for s in (1, 2, 3, 4)]
    )
    assert is_png(tmp_path / "r.png")
