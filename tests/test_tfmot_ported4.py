"""Fourth pass over tfmot's tests and guides: what the earlier passes left.

Custom `PruningSchedule` subclasses written the way tfmot users write them
(TensorFlow ops inside `__call__`, `_should_prune_in_step`, tfmot's
`get_config` form, a subclass of a built-in with its own `__init__`),
trained with and without `UpdatePruningStep`, saved, reloaded and trained
on; and the guide cells tests/test_tfmot_guides.py did not run as written
(the comprehensive guide's size comparison after `strip_pruning` and its
1x16 block cell, the 2:4 guide's look at the converted LiteRT weights).
Written anew; expected values are tfmot's formulas, with keras-prune's step
numbering (row 1 of docs/migrating-from-tfmot.md: the first batch is
step 0).
"""

import os
import tempfile
import zipfile

import keras
import numpy as np
import pytest

import keras_prune

from conftest import BACKEND
from conftest import to_np

tf = pytest.importorskip("tensorflow")


class _Namespace:
    pass


# `tfmot.sparsity.keras.X` in user code is `keras_prune.X`.
tfmot = _Namespace()
tfmot.sparsity = _Namespace()
tfmot.sparsity.keras = keras_prune


def kept_per_mask(model):
    return [
        int(to_np(mask).sum())
        for layer in model.layers
        if isinstance(layer, keras_prune.PruneLowMagnitude)
        for mask in layer.masks
    ]


def nonzero_kernels(model):
    return [
        int(np.count_nonzero(to_np(layer.layer.kernel)))
        for layer in model.layers
        if isinstance(layer, keras_prune.PruneLowMagnitude)
    ]


# ---------------------------------------------------------------------------
# Custom schedules as tfmot users wrote them.


class RampToTarget(tfmot.sparsity.keras.PruningSchedule):
    """A user schedule in TensorFlow ops: sparsity rises as 1 - rate**(4p)."""

    def __init__(self, final_sparsity, begin_step, end_step, frequency=1):
        self.final_sparsity = final_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def __call__(self, step):
        p = tf.cast(step - self.begin_step, tf.float32) / float(
            self.end_step - self.begin_step
        )
        p = tf.minimum(1.0, tf.maximum(0.0, p))
        sparsity = self.final_sparsity * (1.0 - tf.math.pow(0.5, p * 4.0))
        return (
            self._should_prune_in_step(
                step, self.begin_step, self.end_step, self.frequency
            ),
            sparsity,
        )

    def get_config(self):
        return {
            "class_name": self.__class__.__name__,
            "config": {
                "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step,
                "end_step": self.end_step,
                "frequency": self.frequency,
            },
        }


def ramp_reference(step, final=0.8, begin=0, end=6, frequency=1):
    """The same formula in float32 NumPy, and tfmot's update rule."""
    p = np.float32(step - begin) / np.float32(end - begin)
    p = min(np.float32(1.0), max(np.float32(0.0), p))
    sparsity = np.float32(final) * (
        np.float32(1.0) - np.float32(0.5) ** (p * np.float32(4.0))
    )
    update = step >= begin and (step <= end or end < 0)
    return update and (step - begin) % frequency == 0, sparsity


def kept_count(n, sparsity):
    # tfmot's count: round half to even of n * (1 - s), at least one.
    return max(int(np.round(n * (1.0 - float(sparsity)))), 1)


def two_dense_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(20), keras.layers.Dense(10)]
    )


RNG = np.random.default_rng(0)
X = RNG.random((32, 10)).astype("float32")
Y = RNG.random((32, 10)).astype("float32")


def test_tf_ops_schedule_step_by_step_without_the_callback():
    # train_on_batch without UpdatePruningStep: the in-step path evaluates
    # the TensorFlow-op schedule at every step, on every backend.
    model = tfmot.sparsity.keras.prune_low_magnitude(
        two_dense_model(), pruning_schedule=RampToTarget(0.8, 0, 6)
    )
    model.compile("sgd", "mse")
    got, want = [], []
    last = None
    for step in range(8):
        model.train_on_batch(X[4 * step : 4 * step + 4], Y[:4])
        update, sparsity = ramp_reference(step)
        if update:
            last = sparsity
        got.append(kept_per_mask(model))
        want.append([kept_count(200, last), kept_count(200, last)])
    # 200, 141, 103, 80, 65, 56, 50, 50 weights kept of 200.
    assert got == want
    assert [w[0] for w in want] == [200, 141, 103, 80, 65, 56, 50, 50]


def test_tf_ops_schedule_in_fit_saves_reloads_and_trains_on(tmp_path):
    model = tfmot.sparsity.keras.prune_low_magnitude(
        two_dense_model(), pruning_schedule=RampToTarget(0.8, 0, 6)
    )
    model.compile("sgd", "mse")
    model.fit(
        X,
        Y,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    # Steps 0..7; the last update is step 6, at 0.75: 50 of 200 kept.
    assert kept_per_mask(model) == [50, 50]
    assert nonzero_kernels(model) == [50, 50]

    path = str(tmp_path / "ramp.keras")
    model.save(path)
    with keras.saving.custom_object_scope({"RampToTarget": RampToTarget}):
        loaded = keras.saving.load_model(path)
    schedule = loaded.layers[0].pruning_schedule
    assert type(schedule) is RampToTarget
    assert (
        schedule.get_config() == model.layers[0].pruning_schedule.get_config()
    )
    assert int(to_np(keras_prune.pruning_step(loaded))) == 8
    np.testing.assert_array_equal(to_np(loaded(X)), to_np(model(X)))

    # Past end_step the masks stay: one more epoch keeps 50 of 200.
    loaded.compile("sgd", "mse")
    loaded.fit(
        X,
        Y,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    assert int(to_np(keras_prune.pruning_step(loaded))) == 16
    assert nonzero_kernels(loaded) == [50, 50]

    # The legacy .h5 format too (loaded uncompiled: Keras 3's .h5 cannot
    # restore a compiled string loss such as "mse").
    h5 = str(tmp_path / "ramp.h5")
    model.save(h5)
    with keras.saving.custom_object_scope({"RampToTarget": RampToTarget}):
        from_h5 = keras.models.load_model(h5, compile=False)
    np.testing.assert_array_equal(to_np(from_h5(X)), to_np(model(X)))


class SparsityTable(tfmot.sparsity.keras.PruningSchedule):
    """tfmot's pruning_impl_test schedule: `tf.gather` of a list by step."""

    def __init__(self, values):
        self.values = values

    def __call__(self, step):
        values = tf.constant(self.values, tf.float32)
        return tf.constant(True), tf.gather(values, tf.cast(step, tf.int32))

    def get_config(self):
        return {
            "class_name": "SparsityTable",
            "config": {"values": self.values},
        }


def test_table_schedule_gives_tfmots_conditional_update_counts():
    # tfmot's testConditionalMaskUpdate: with sparsities 0, .1, .1, .3, .3,
    # .5, ... the 100 weights keep 100, 90, 90, 70, 70, 50, ...
    keras.utils.set_random_seed(1)
    base = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(10, use_bias=False)]
    )
    values = [0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5]
    model = tfmot.sparsity.keras.prune_low_magnitude(
        base, pruning_schedule=SparsityTable(values)
    )
    model.compile("sgd", "mse")
    counts = []
    for step in range(8):
        model.train_on_batch(X[4 * step : 4 * step + 4], Y[:4])
        counts.append(kept_per_mask(model)[0])
    assert counts == [100, 90, 90, 70, 70, 50, 50, 50]


class EveryOtherStep(tfmot.sparsity.keras.ConstantSparsity):
    """A built-in subclassed with its own `__init__` (a tfmot idiom)."""

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=2):
        super().__init__(target_sparsity, begin_step, end_step, frequency)


def test_builtin_subclass_with_its_own_init_reloads_as_itself(tmp_path):
    model = tfmot.sparsity.keras.prune_low_magnitude(
        two_dense_model(), pruning_schedule=EveryOtherStep(0.5, 1)
    )
    # Its config names the subclass, with the built-in's arguments.
    assert model.layers[0].pruning_schedule.get_config() == {
        "class_name": "EveryOtherStep",
        "config": {
            "target_sparsity": 0.5,
            "begin_step": 1,
            "end_step": -1,
            "frequency": 2,
        },
    }
    path = str(tmp_path / "every_other.keras")
    model.save(path)
    with keras.saving.custom_object_scope({"EveryOtherStep": EveryOtherStep}):
        loaded = keras.saving.load_model(path)
    schedule = loaded.layers[0].pruning_schedule
    assert type(schedule) is EveryOtherStep
    assert (schedule.begin_step, schedule.frequency) == (1, 2)
    assert [bool(schedule(s)[0]) for s in range(5)] == [
        False,
        True,
        False,
        True,
        False,
    ]


# ---------------------------------------------------------------------------
# The comprehensive guide, cells not run as written elsewhere.


def gzipped_model_size(model):
    """The guide's `get_gzipped_model_size(model)`."""
    _, keras_file = tempfile.mkstemp(".h5")
    model.save(keras_file, include_optimizer=False)
    _, zipped_file = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(
        zipped_file, "w", compression=zipfile.ZIP_DEFLATED
    ) as f:
        f.write(keras_file)
    return os.path.getsize(zipped_file)


def setup_model():
    return keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(20), keras.layers.Flatten()]
    )


def test_guide_export_cell_measures_the_model_strip_pruning_changed():
    # The guide prints the size of `model_for_pruning` after calling
    # `strip_pruning(model_for_pruning)`. tfmot's strip returns a new model,
    # so the first size includes the wrappers. keras-prune strips in place
    # (row 15): both names are the stripped model and the sizes are equal;
    # measure the pruned model before stripping it.
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(setup_model())
    before = gzipped_model_size(model_for_pruning)
    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert model_for_export is model_for_pruning
    after = gzipped_model_size(model_for_export)
    assert gzipped_model_size(model_for_pruning) == after
    assert after < before
    assert [type(layer).__name__ for layer in model_for_export.layers] == [
        "Dense",
        "Flatten",
    ]


def test_guide_block_sparsity_cell_keeps_whole_1x16_blocks():
    # pruning_params = {'block_size': [1, 16]} on the guide's Dense(20):
    # the (20, 20) kernel is padded to (20, 32), 40 blocks of 1x16; at the
    # default 0.5, tfmot keeps 20 whole blocks.
    keras.utils.set_random_seed(0)
    base_model = setup_model()
    pruning_params = {"block_size": [1, 16]}
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
        base_model, **pruning_params
    )
    model_for_pruning.compile(loss="mse", optimizer="adam")
    model_for_pruning.fit(
        X[:1, :10].repeat(2, axis=1),
        Y[:1, :10].repeat(2, axis=1),
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        verbose=0,
    )
    mask = to_np(model_for_pruning.layers[0].masks[0])
    blocks = [mask[:, :16], mask[:, 16:]]
    for block in blocks:
        # Each row of a block column is all kept or all pruned.
        assert np.all(block.all(axis=1) | ~block.any(axis=1))
    assert sum(int(b.all(axis=1).sum()) for b in blocks) == 20


# ---------------------------------------------------------------------------
# The 2:4 guide's look at the converted LiteRT model (TensorFlow).


@pytest.mark.skipif(BACKEND != "tensorflow", reason="LiteRT conversion")
def test_guide_2_by_4_weights_in_the_converted_model():
    keras.utils.set_random_seed(0)
    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params_2_by_4 = {"sparsity_m_by_n": (2, 4)}
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            prune_low_magnitude(
                keras.layers.Conv2D(4, 3, padding="same", name="dense_like"),
                pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                    target_sparsity=0.5, begin_step=0, frequency=100
                ),
            ),
            prune_low_magnitude(
                keras.layers.Conv2D(8, 3, padding="same", name="structural"),
                **pruning_params_2_by_4,
            ),
            keras.layers.Flatten(),
            prune_low_magnitude(
                keras.layers.Dense(16, name="structural_pruning_dense"),
                **pruning_params_2_by_4,
            ),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    images = RNG.random((8, 8, 8, 1)).astype("float32")
    model.fit(
        images,
        RNG.random((8, 16)).astype("float32"),
        verbose=0,
        callbacks=tfmot.sparsity.keras.UpdatePruningStep(),
    )
    model = tfmot.sparsity.keras.strip_pruning(model)
    tflite_model = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = tf.lite.Interpreter(
        model_content=tflite_model, experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    # Keras 3 names the traced op `<layer>_1/MatMul` (plain Keras models
    # too), so the guide's lookup `'structural_pruning_dense/MatMul' in
    # name` finds nothing; the layer name itself does.
    names = [d["name"] for d in details]
    assert not any("structural_pruning_dense/MatMul" in n for n in names)
    (dense,) = [
        d for d in details if "structural_pruning_dense_1/MatMul" in d["name"]
    ]
    dense = interpreter.tensor(dense["index"])()
    assert dense.shape == (16, 512)  # (out, in): 2:4 along the last axis
    assert (np.count_nonzero(dense.reshape(-1, 4), axis=1) == 2).all()
    convs = [
        d for d in interpreter._get_ops_details() if "CONV_2D" in d["op_name"]
    ]
    conv = interpreter.tensor(convs[1]["inputs"][1])()
    assert conv.shape == (8, 3, 3, 4)  # (out, h, w, in)
    groups = np.abs(conv.reshape(-1, 4)) > 1e-9
    assert (groups.sum(axis=1) == 2).all()
    first = interpreter.tensor(convs[0]["inputs"][1])()
    assert np.count_nonzero(first) == 18  # 0.5 of 36
    # tfmot's check_sparsity_m_by_n.py reads LiteRT tensors with
    # `is_pruned_m_by_n(weights, m_by_n, "C_IN")`.
    assert keras_prune.is_pruned_m_by_n(dense, (2, 4), "C_IN")
    assert keras_prune.is_pruned_m_by_n(conv, (2, 4), "C_IN")
    # A one-channel kernel has at most one weight per group of 4 along
    # C_IN: tfmot's checker (and keras-prune's) reports it as 2:4.
    assert keras_prune.is_pruned_m_by_n(first, (2, 4), "C_IN")


class OwnFromConfig(tfmot.sparsity.keras.PruningSchedule):
    """A user schedule that writes out tfmot's `from_config` itself."""

    def __init__(self, target_sparsity, begin_step):
        self.target_sparsity = target_sparsity
        self.begin_step = begin_step

    def __call__(self, step):
        return (
            self._should_prune_in_step(step, self.begin_step, -1, 1),
            tf.constant(self.target_sparsity, tf.float32),
        )

    def get_config(self):
        return {
            "class_name": "OwnFromConfig",
            "config": {
                "target_sparsity": self.target_sparsity,
                "begin_step": self.begin_step,
            },
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_schedule_with_tfmots_own_from_config_reloads(tmp_path):
    # tfmot hands `from_config` the inner arguments; keras-prune handed it
    # the whole `{'class_name', 'config'}` pair, so `cls(**config)` failed
    # with a TypeError and the model could not be loaded.
    model = tfmot.sparsity.keras.prune_low_magnitude(
        two_dense_model(), pruning_schedule=OwnFromConfig(0.25, 3)
    )
    scope = {"OwnFromConfig": OwnFromConfig}
    with keras.saving.custom_object_scope(scope):
        wrapper = keras_prune.PruneLowMagnitude.from_config(
            model.layers[0].get_config()
        )
    assert type(wrapper.pruning_schedule) is OwnFromConfig
    assert wrapper.pruning_schedule.get_config()["config"] == {
        "target_sparsity": 0.25,
        "begin_step": 3,
    }
    path = str(tmp_path / "own.keras")
    model.save(path)
    with keras.saving.custom_object_scope(scope):
        loaded = keras.saving.load_model(path)
    schedules = [layer.pruning_schedule for layer in loaded.layers]
    assert [(s.target_sparsity, s.begin_step) for s in schedules] == [
        (0.25, 3),
        (0.25, 3),
    ]
