"""Schedules: tfmot 0.8.1's published values, validation, config, extras.

Reference: /work/shared/reference/tfmot-semantics.md §1.4-1.6 and §8 items
1-13. Every tfmot vector is checked on the host (Python / NumPy step) and
inside a compiled function on the current backend, and the two must agree
bit for bit.
"""

import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_prune
from keras_prune import _backend
from keras_prune.core import schedules

from conftest import assert_schedule_values_match

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Overrides conftest's fixture for this module: these tests build no
    # layers, and clear_session's gc.collect() costs ~0.5 s per test once
    # TensorFlow and torch are both imported.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


PD = keras_prune.PolynomialDecay
CS = keras_prune.ConstantSparsity

# name -> (factory, [(step, sparsity or None, should_prune or None)]).
# `None` means tfmot's reference does not list that value.
TFMOT_VECTORS = {
    # §8 item 1.
    "pd_0.5_0.9_2000_10000": (
        lambda: PD(
            0.5, 0.9, begin_step=2000, end_step=10000, power=3, frequency=100
        ),
        [
            (0, 0.5, False),
            (1000, 0.5, False),
            (1999, 0.5, False),
            (2000, 0.5, True),
            (2050, 0.507453, False),
            (2100, 0.514813, True),
            (4000, 0.73125, True),
            (6000, 0.85, True),
            (8000, 0.89375, True),
            (9900, 0.899999, True),
            (9999, 0.9, False),
            (10000, 0.9, True),
            (10100, 0.9, False),
            (20000, 0.9, False),
        ],
    ),
    # §8 item 2.
    "pd_0.2_0.8_100_110_f2": (
        lambda: PD(0.2, 0.8, 100, 110, 3, 2),
        [
            (99, 0.2, False),
            (100, 0.2, True),
            (101, 0.3626, False),
            (102, 0.4928, True),
            (105, 0.725, False),
            (110, 0.8, True),
            (111, 0.8, False),
            (112, None, False),
        ],
    ),
    # §8 item 3.
    "pd_0_0.8_0_1000_defaults": (
        lambda: PD(0.0, 0.8, 0, 1000),
        [
            (1, 0.002398, False),
            (100, 0.2168, True),
            (250, 0.4625, False),
            (500, 0.7, True),
            (750, 0.7875, False),
            (1000, 0.8, True),
            (1100, 0.8, False),
        ],
    ),
    # §8 item 4.
    "pd_power1": (
        lambda: PD(0.5, 0.8, 0, 1000, power=1, frequency=100),
        [(100, 0.53, True), (500, 0.65, True), (1000, 0.8, True)],
    ),
    # §8 item 5.
    "pd_power2_f10": (
        lambda: PD(0.25, 0.75, 0, 100, power=2, frequency=10),
        [
            (10, 0.345, True),
            (50, 0.625, True),
            (90, 0.745, True),
            (100, 0.75, True),
        ],
    ),
    # §8 item 6.
    "pd_0.2_0.6_1_4": (
        lambda: PD(0.2, 0.6, 1, 4, 3, 1),
        [
            (1, 0.2, True),
            (2, 0.481481, True),
            (3, 0.585185, True),
            (4, 0.6, True),
        ],
    ),
    # §8 item 7.
    "pd_0_0.9_100_200": (
        lambda: PD(0.0, 0.9, 100, 200, 3, 1),
        [
            (50, 0.0, False),
            (150, 0.7875, True),
            (200, 0.9, True),
            (300, 0.9, False),
        ],
    ),
    # §8 item 8 (the Keras tutorial's schedule).
    "pd_tutorial_844": (
        lambda: PD(0.5, 0.8, 0, 844),
        [(100, 0.5945, True), (800, 0.799958, True), (844, None, False)],
    ),
    # §8 item 9.
    "cs_0.5_0": (
        lambda: CS(0.5, 0),
        [
            (0, 0.5, True),
            (100, 0.5, True),
            (200, 0.5, True),
            (10**9, 0.5, True),
            (1, 0.5, False),
            (99, 0.5, False),
            (101, 0.5, False),
        ],
    ),
    # §8 item 10.
    "cs_0.5_10_50_20": (
        lambda: CS(0.5, 10, 50, 20),
        [
            (10, 0.5, True),
            (30, 0.5, True),
            (50, 0.5, True),
            (9, 0.5, False),
            (29, 0.5, False),
            (70, 0.5, False),
        ],
    ),
    "cs_0.5_7_100_10": (
        lambda: CS(0.5, 7, 100, 10),
        [
            (7, 0.5, True),
            (17, 0.5, True),
            (97, 0.5, True),
            (10, 0.5, False),
            (100, 0.5, False),
            (107, 0.5, False),
        ],
    ),
    # §8 item 12, with the deliberate fix: p = 1 from begin_step on when
    # begin_step == end_step (tfmot gives NaN at step 10).
    "pd_begin_eq_end": (
        lambda: PD(0.2, 0.8, 10, 10, 3, 1),
        [(9, 0.2, False), (10, 0.8, True), (11, 0.8, False)],
    ),
}

HOST_CASES = [
    pytest.param(name, step, sparsity, prune, id=f"{name}@{step}")
    for name, (_, rows) in TFMOT_VECTORS.items()
    for step, sparsity, prune in rows
]

STEP_TYPES = {"int": int, "np.int32": np.int32, "np.int64": np.int64}


def _bits(x):
    """The float32 bit pattern of a scalar, as a Python int."""
    value = np.asarray(x)
    assert value.dtype == np.float32, value.dtype
    return int(value.reshape(()).view(np.int32))


def _compiled(fn):
    """`fn` compiled the way the train step is on the current backend."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    return fn


def _in_graph(schedule):
    """Evaluates `schedule` at an int32 tensor step in compiled code."""
    fn = _compiled(lambda step: schedule(step))

    def evaluate(step):
        prune, sparsity = fn(ops.convert_to_tensor(step, "int32"))
        return (
            np.asarray(ops.convert_to_numpy(prune)),
            np.asarray(ops.convert_to_numpy(sparsity)),
        )

    return evaluate


def _assert_value(actual, expected):
    # The reference lists tfmot's float32 values to 6 decimals, mostly
    # rounded but sometimes truncated (tfmot's own value at
    # PolynomialDecay(0.2, 0.6, 1, 4)(2) is 0.48148152, listed as 0.481481),
    # so: within 1e-6, which is also rtol 1e-6 for values near 1.
    assert abs(float(actual) - expected) <= 1e-6, (float(actual), expected)


# ---------------------------------------------------------------------------
# tfmot's published vectors, host evaluation.


@pytest.mark.parametrize("step_type", list(STEP_TYPES))
@pytest.mark.parametrize("name, step, sparsity, prune", HOST_CASES)
def test_tfmot_vectors_on_host(name, step, sparsity, prune, step_type):
    schedule = TFMOT_VECTORS[name][0]()
    should_prune, value = schedule(STEP_TYPES[step_type](step))
    assert np.asarray(value).dtype == np.float32
    assert np.asarray(should_prune).dtype == np.bool_
    assert bool(should_prune) is prune
    if sparsity is not None:
        _assert_value(value, sparsity)


@pytest.mark.parametrize("step_type", list(STEP_TYPES))
def test_pd_6000_is_float32_0_84999996(step_type):
    # §8 item 1: the exact float32 tfmot produces at step 6000.
    _, value = PD(0.5, 0.9, 2000, 10000, 3, 100)(STEP_TYPES[step_type](6000))
    assert _bits(value) == _bits(np.float32(0.84999996))
    assert np.float32(value) != np.float32(0.85)


def test_schedules_evaluate_returns_python_bool_and_float32():
    should_prune, value = schedules.evaluate(PD(0.5, 0.9, 2000, 10000), 2100)
    assert should_prune is True
    assert type(value) is np.float32
    _assert_value(value, 0.514813)
    should_prune, value = schedules.evaluate(CS(0.3, 0), 1)
    assert should_prune is False
    assert value == np.float32(0.3)


# ---------------------------------------------------------------------------
# tfmot's published vectors, in compiled code, bit-identical to the host.


@pytest.mark.parametrize("name", list(TFMOT_VECTORS))
def test_tfmot_vectors_in_graph_bit_identical_to_host(name):
    factory, rows = TFMOT_VECTORS[name]
    schedule = factory()
    evaluate = _in_graph(schedule)
    for step, sparsity, prune in rows:
        host_prune, host_value = schedule(step)
        graph_prune, graph_value = evaluate(step)
        assert graph_prune.dtype == np.bool_ and graph_prune.shape == ()
        assert graph_value.dtype == np.float32 and graph_value.shape == ()
        assert bool(graph_prune) is bool(host_prune) is prune, step
        assert _bits(graph_value) == _bits(host_value), (
            step,
            float(graph_value),
            float(host_value),
        )
        if sparsity is not None:
            _assert_value(graph_value, sparsity)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: PD(0.5, 0.9, 2000, 10000),
        lambda: PD(0.1, 0.95, 3, 997, power=5, frequency=7),
        lambda: PD(0.8, 0.2, 0, 333, power=2, frequency=1),
        lambda: PD(0.0, 0.5, 50, 50, frequency=1),
        lambda: CS(0.7, 13, -1, 9),
    ],
    ids=["pd", "pd_power5", "pd_decreasing", "pd_begin_eq_end", "cs"],
)
def test_dense_step_range_in_graph_bit_identical_to_host(factory):
    # Beyond the listed vectors: every step of a range, including steps that
    # are not multiples of anything, agrees bit for bit.
    schedule = factory()
    evaluate = _in_graph(schedule)
    rng = np.random.default_rng(1)
    steps = sorted(
        {0, 1, 2, 3, 49, 50, 51, 10**6}
        | set(int(s) for s in rng.integers(0, 12000, size=60))
    )
    for step in steps:
        host_prune, host_value = schedule(step)
        graph_prune, graph_value = evaluate(step)
        assert bool(graph_prune) is bool(host_prune), step
        assert_schedule_values_match(graph_value, host_value)


@pytest.mark.parametrize(
    "factory, last_step",
    [
        (lambda: PD(0.5, 0.9, 2000, 10000), 10100),
        (lambda: PD(0.0, 0.8, 0, 1000), 1100),
        (lambda: PD(0.5, 0.8, 0, 844), 900),
        (lambda: PD(0.2, 0.8, 100, 110, 3, 2), 200),
        (lambda: PD(0.1, 0.95, 3, 997, power=5, frequency=7), 1100),
    ],
    ids=["item1", "item3", "item8", "item2", "power5"],
)
def test_every_step_in_graph_bit_identical_to_host(factory, last_step):
    # All steps at once: the schedule evaluated on an int32 vector of steps
    # in compiled code, against the host value of each step.
    schedule = factory()
    steps = np.arange(last_step + 1, dtype=np.int32)
    prune, value = _compiled(lambda s: schedule(s))(
        ops.convert_to_tensor(steps, "int32")
    )
    prune = np.asarray(ops.convert_to_numpy(prune))
    value = np.asarray(ops.convert_to_numpy(value))
    assert value.dtype == np.float32 and value.shape == steps.shape
    host = [schedule(int(s)) for s in steps]
    host_prune = np.array([bool(p) for p, _ in host])
    host_value = np.array([v for _, v in host], dtype=np.float32)
    np.testing.assert_array_equal(prune, host_prune)
    assert_schedule_values_match(value, host_value)
    # The host also evaluates a NumPy vector of steps at once (as
    # keras_prune.monitoring.explain does), with the same bits.
    vector_prune, vector_value = schedule(steps.astype(np.int64))
    np.testing.assert_array_equal(vector_prune, host_prune)
    np.testing.assert_array_equal(
        np.asarray(vector_value, np.float32).view(np.int32),
        host_value.view(np.int32),
    )


@pytest.mark.skipif(BACKEND == "jax", reason="JAX without x64 has no int64")
@pytest.mark.parametrize("name", ["pd_0.5_0.9_2000_10000", "cs_0.5_7_100_10"])
def test_int64_step_tensor_in_graph(name):
    factory, rows = TFMOT_VECTORS[name]
    schedule = factory()
    fn = _compiled(lambda step: schedule(step))
    for step, _, prune in rows:
        graph_prune, graph_value = fn(ops.convert_to_tensor(step, "int64"))
        host_prune, host_value = schedule(step)
        assert bool(ops.convert_to_numpy(graph_prune)) is prune
        assert _bits(ops.convert_to_numpy(graph_value)) == _bits(host_value)


# ---------------------------------------------------------------------------
# Validation (§8 item 11).


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CS(1.0, 0), "target_sparsity must be in range [0,1)"),
        (lambda: CS(-0.1, 0), "target_sparsity must be in range [0,1)"),
        (lambda: CS(0.5, -1), "begin_step should be >= 0"),
        (
            lambda: CS(0.5, 10, 5),
            "begin_step should be <= end_step if end_step != -1",
        ),
        (lambda: CS(0.5, 0, -2), "end_step can be -1 or >= 0"),
        (lambda: CS(0.5, 0, -1, 0), "frequency should be > 0"),
        (lambda: CS(0.5, 0, -1, -3), "frequency should be > 0"),
        (lambda: PD(0.1, 0.5, 0, -1), "end_step cannot be -1."),
        (
            lambda: PD(1.0, 0.5, 0, 10),
            "initial_sparsity must be in range [0,1)",
        ),
        (lambda: PD(0.1, 1.0, 0, 10), "final_sparsity must be in range [0,1)"),
        (lambda: PD(0.1, -0.5, 0, 10), "final_sparsity must be in range [0,1)"),
        (lambda: PD(0.1, 0.5, -1, 10), "begin_step should be >= 0"),
        (
            lambda: PD(0.1, 0.5, 10, 5),
            "begin_step should be <= end_step if end_step != -1",
        ),
        (lambda: PD(0.1, 0.5, 0, 10, 3, 0), "frequency should be > 0"),
        # Step checks come before the sparsity checks.
        (lambda: CS(1.5, -1), "begin_step should be >= 0"),
        (lambda: CS(1.5, 0, -1, 0), "frequency should be > 0"),
        (lambda: PD(1.5, 1.5, 0, -1), "end_step cannot be -1."),
        (
            lambda: PD(1.5, 0.5, 5, 2),
            "begin_step should be <= end_step if end_step != -1",
        ),
        # initial_sparsity is checked before final_sparsity.
        (
            lambda: PD(1.5, 1.5, 0, 10),
            "initial_sparsity must be in range [0,1)",
        ),
    ],
)
def test_validation_messages(make, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        make()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda v: CS(v, 0), "target_sparsity"),
        (lambda v: PD(v, 0.5, 0, 10), "initial_sparsity"),
        (lambda v: PD(0.1, v, 0, 10), "final_sparsity"),
    ],
)
def test_sparsity_that_rounds_to_one_in_float32_is_refused(make, name):
    # 0.99999999999 < 1 but is 1.0 in float32, where schedules compute:
    # tfmot accepts it and then prunes every weight but one.
    with pytest.raises(ValueError, match=f"^{name} must be in range.*float32"):
        make(0.99999999999)
    largest = float(np.nextafter(np.float32(1), np.float32(0)))
    make(largest)  # the largest float32 below 1 is accepted


def test_begin_equal_end_is_accepted_for_both_builtins():
    assert CS(0.5, 0, 0).end_step == 0
    schedule = PD(0.2, 0.8, 0, 0, 3, 1)
    assert schedule(0) == (True, np.float32(0.8))
    assert not np.isnan(schedule(0)[1])


# ---------------------------------------------------------------------------
# Config and serialization (§1.5, §1.6, §8 items 3, 9, 13).

CONFIG_KEYS = {
    "PolynomialDecay": {
        "initial_sparsity",
        "final_sparsity",
        "power",
        "begin_step",
        "end_step",
        "frequency",
    },
    "ConstantSparsity": {
        "target_sparsity",
        "begin_step",
        "end_step",
        "frequency",
    },
    "ExponentialDecay": {
        "initial_sparsity",
        "final_sparsity",
        "begin_step",
        "end_step",
        "decay",
        "frequency",
    },
    "CosineDecay": {
        "initial_sparsity",
        "final_sparsity",
        "begin_step",
        "end_step",
        "frequency",
    },
}

BUILTINS = [
    pytest.param(lambda: PD(0.0, 0.8, 0, 1000), id="PolynomialDecay"),
    pytest.param(
        lambda: PD(0.1, 0.9, 5, 50, power=2, frequency=7),
        id="PolynomialDecay-args",
    ),
    pytest.param(lambda: CS(0.5, 0), id="ConstantSparsity"),
    pytest.param(lambda: CS(0.25, 10, 50, 20), id="ConstantSparsity-args"),
    pytest.param(
        lambda: keras_prune.ExponentialDecay(
            0.1, 0.9, 0, 500, decay=0.2, frequency=10
        ),
        id="ExponentialDecay",
    ),
    pytest.param(
        lambda: keras_prune.CosineDecay(0.0, 0.8, 100, 1000, 50),
        id="CosineDecay",
    ),
]


def test_polynomial_decay_config_is_tfmots():
    assert PD(0.0, 0.8, 0, 1000).get_config() == {
        "class_name": "PolynomialDecay",
        "config": {
            "initial_sparsity": 0.0,
            "final_sparsity": 0.8,
            "power": 3,
            "begin_step": 0,
            "end_step": 1000,
            "frequency": 100,
        },
    }


def test_constant_sparsity_config_is_tfmots():
    assert CS(0.5, 0).get_config() == {
        "class_name": "ConstantSparsity",
        "config": {
            "target_sparsity": 0.5,
            "begin_step": 0,
            "end_step": -1,
            "frequency": 100,
        },
    }


@pytest.mark.parametrize("factory", BUILTINS)
def test_get_config_form_and_from_config_round_trip(factory):
    schedule = factory()
    config = schedule.get_config()
    name = type(schedule).__name__
    assert set(config) == {"class_name", "config"}
    assert config["class_name"] == name
    assert set(config["config"]) == CONFIG_KEYS[name]
    for key, value in config["config"].items():
        assert getattr(schedule, key) == value
    restored = type(schedule).from_config(config["config"])
    assert type(restored) is type(schedule)
    assert restored.__dict__ == schedule.__dict__
    # from_config also accepts the outer {'class_name', 'config'} form.
    assert type(schedule).from_config(config).__dict__ == schedule.__dict__
    assert schedules.get(config).__dict__ == schedule.__dict__


@pytest.mark.parametrize("factory", BUILTINS)
def test_keras_serialization_round_trip(factory):
    schedule = factory()
    name = type(schedule).__name__
    assert keras.saving.get_registered_name(type(schedule)) == (
        f"keras_prune>{name}"
    )
    serialized = keras.saving.serialize_keras_object(schedule)
    assert serialized["registered_name"] == f"keras_prune>{name}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(schedule)
    assert restored.__dict__ == schedule.__dict__
    assert schedules.get(serialized).__dict__ == schedule.__dict__
    for step in (0, 7, 100, 500, 1000, 5000):
        assert schedules.evaluate(restored, step) == (
            schedules.evaluate(schedule, step)
        )


def test_function_schedule_serialization_round_trip():
    @keras.saving.register_keras_serializable(package="test_schedules")
    def linear_ramp(step):
        return min(0.9, step / 1000)

    schedule = keras_prune.FunctionSchedule(linear_ramp, 0, 1000, 50)
    config = schedule.get_config()
    assert config["class_name"] == "FunctionSchedule"
    assert set(config["config"]) == {
        "fn",
        "begin_step",
        "end_step",
        "frequency",
    }
    for restored in (
        keras_prune.FunctionSchedule.from_config(config["config"]),
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(schedule)
        ),
    ):
        assert restored.__dict__ == schedule.__dict__
        assert restored.fn is linear_ramp
        assert schedules.evaluate(restored, 450) == (True, np.float32(0.45))
        assert schedules.evaluate(restored, 475) == (False, np.float32(0.475))


def test_get_returns_instances_unchanged_and_rejects_other_types():
    schedule = PD(0.0, 0.5, 0, 10)
    assert schedules.get(schedule) is schedule
    with pytest.raises(TypeError, match="PruningSchedule"):
        schedules.get(0.5)
    with pytest.raises(ValueError, match="Unknown schedule class 'Nope'"):
        schedules.get({"class_name": "Nope", "config": {}})


# ---------------------------------------------------------------------------
# ExponentialDecay and CosineDecay.

RAMPS = [
    pytest.param(keras_prune.ExponentialDecay, {}, id="exp"),
    pytest.param(keras_prune.ExponentialDecay, {"decay": 0.5}, id="exp-0.5"),
    pytest.param(
        keras_prune.ExponentialDecay, {"decay": 0.001}, id="exp-0.001"
    ),
    pytest.param(keras_prune.CosineDecay, {}, id="cos"),
]

RAMP_ARGS = [
    (0.0, 0.8, 0, 1000, 100),
    (0.1, 0.8, 0, 1000, 100),
    (0.5, 0.9, 2000, 10000, 100),
    (0.3, 0.95, 7, 130, 3),
    (0.2, 0.6, 1, 4, 1),
    (0.8, 0.2, 10, 400, 10),  # decreasing sparsity is allowed
    (0.37, 0.37, 0, 50, 5),
]


@pytest.mark.parametrize("args", RAMP_ARGS, ids=str)
@pytest.mark.parametrize("cls, kwargs", RAMPS)
def test_ramp_endpoints_exact(cls, kwargs, args):
    initial, final, begin, end, frequency = args
    schedule = cls(initial, final, begin, end, frequency=frequency, **kwargs)
    for step in (0, begin - 1, begin):
        if step >= 0:
            assert _bits(schedule(step)[1]) == _bits(np.float32(initial)), step
    for step in (end, end + 1, end + frequency, 10 * end + 5):
        assert _bits(schedule(step)[1]) == _bits(np.float32(final)), step


@pytest.mark.parametrize("args", RAMP_ARGS, ids=str)
@pytest.mark.parametrize("cls, kwargs", RAMPS)
def test_ramp_monotone_and_should_prune_like_polynomial(cls, kwargs, args):
    initial, final, begin, end, frequency = args
    schedule = cls(initial, final, begin, end, frequency=frequency, **kwargs)
    reference = PD(initial, final, begin, end, frequency=frequency)
    stride = max(1, (end - begin) // 400)
    steps = list(range(0, end + 3 * frequency + 2, stride))
    values = []
    for step in steps:
        should_prune, value = schedule(step)
        assert np.asarray(value).dtype == np.float32
        assert bool(should_prune) is bool(reference(step)[0]), step
        values.append(float(value))
    values = np.array(values)
    lo, hi = min(initial, final), max(initial, final)
    assert np.all(values >= np.float32(lo)) and np.all(values <= np.float32(hi))
    diffs = np.diff(values)
    if final >= initial:
        assert np.all(diffs >= 0), steps[int(np.argmin(diffs))]
    else:
        assert np.all(diffs <= 0), steps[int(np.argmax(diffs))]
    if final != initial:
        # It actually ramps: strictly between the endpoints mid-way.
        mid = schedule((begin + end) // 2)[1]
        assert lo < float(mid) < hi


def test_cosine_decay_midpoint():
    _, value = keras_prune.CosineDecay(0.0, 0.8, 0, 1000)(500)
    assert round(float(value), 6) == 0.4


def test_exponential_decay_prunes_early():
    # The docstring's claim: more than linear at half-way.
    schedule = keras_prune.ExponentialDecay(0.0, 0.9, 0, 1000, decay=0.05)
    assert float(schedule(500)[1]) > 0.9 * 0.5
    # Its closed form: gap(p) = gap(0) * (decay**p - decay) / (1 - decay).
    expected = 0.9 + (0.0 - 0.9) * (0.05**0.5 - 0.05) / (1 - 0.05)
    np.testing.assert_allclose(float(schedule(500)[1]), expected, rtol=1e-6)


def test_cosine_decay_closed_form():
    schedule = keras_prune.CosineDecay(0.2, 0.7, 100, 300, frequency=1)
    for step in (120, 150, 200, 277):
        p = (step - 100) / 200
        expected = 0.7 + (0.2 - 0.7) * (1 + np.cos(np.pi * p)) / 2
        np.testing.assert_allclose(
            float(schedule(step)[1]), expected, rtol=1e-6
        )


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_exponential_decay_invalid_decay(decay):
    with pytest.raises(ValueError, match="decay"):
        keras_prune.ExponentialDecay(0.0, 0.9, 0, 1000, decay=decay)


@pytest.mark.parametrize(
    "cls", [keras_prune.ExponentialDecay, keras_prune.CosineDecay]
)
def test_ramp_validation_like_polynomial_decay(cls):
    with pytest.raises(ValueError, match=re.escape("end_step cannot be -1.")):
        cls(0.0, 0.5, 0, -1)
    with pytest.raises(
        ValueError, match=re.escape("final_sparsity must be in range [0,1)")
    ):
        cls(0.0, 1.0, 0, 10)


@pytest.mark.parametrize(
    "cls", [keras_prune.ExponentialDecay, keras_prune.CosineDecay]
)
def test_ramp_in_graph_matches_host(cls):
    schedule = cls(0.1, 0.9, 20, 820, frequency=20)
    evaluate = _in_graph(schedule)
    for step in (0, 20, 21, 40, 300, 420, 819, 820, 821, 2000):
        host_prune, host_value = schedule(step)
        graph_prune, graph_value = evaluate(step)
        assert bool(graph_prune) is bool(host_prune)
        assert graph_value.dtype == np.float32
        np.testing.assert_allclose(graph_value, host_value, rtol=1e-6)


# ---------------------------------------------------------------------------
# FunctionSchedule and string parsing.


def test_function_schedule_values_and_should_prune():
    calls = []

    def fn(step):
        calls.append(step)
        return min(0.9, step / 1000)

    schedule = keras_prune.FunctionSchedule(
        fn, begin_step=5, end_step=505, frequency=50
    )
    reference = CS(0.5, 5, 505, 50)
    for step in (0, 4, 5, 6, 55, 250, 455, 505, 555, 2000):
        should_prune, value = schedule(step)
        assert type(value) is np.float32
        assert value == np.float32(min(0.9, step / 1000))
        assert bool(should_prune) is bool(reference(step)[0]), step
    assert all(type(s) is int for s in calls)
    assert calls[-1] == 2000


@pytest.mark.parametrize("bad", [1.5, 1.0, -0.01, float("nan")])
def test_function_schedule_invalid_output_names_the_step(bad):
    schedule = keras_prune.FunctionSchedule(lambda step: bad, 0, -1, 10)
    with pytest.raises(ValueError, match=re.escape("fn(150)")):
        schedule(150)
    with pytest.raises(ValueError, match=re.escape("fn(150)")):
        schedules.evaluate(schedule, 150)


def test_function_schedule_rejects_non_callable_and_bad_steps():
    with pytest.raises(TypeError, match="callable"):
        keras_prune.FunctionSchedule(0.5)
    with pytest.raises(ValueError, match="frequency should be > 0"):
        keras_prune.FunctionSchedule(lambda s: 0.5, frequency=0)


def test_get_parses_a_schedule_string():
    parsed = schedules.get(
        "PolynomialDecay(0.5, 0.9, 2000, 10000, frequency=100)"
    )
    assert type(parsed) is PD
    assert parsed.__dict__ == PD(0.5, 0.9, 2000, 10000).__dict__
    parsed = schedules.get("  ConstantSparsity(0.8, begin_step=7) ")
    assert parsed.__dict__ == CS(0.8, 7).__dict__
    parsed = schedules.get("CosineDecay(0.0, 0.8, 0, 1000, frequency=10)")
    assert (
        parsed.__dict__
        == keras_prune.CosineDecay(0.0, 0.8, 0, 1000, 10).__dict__
    )
    parsed = schedules.get("ExponentialDecay(0.0, 0.8, 0, 1000, decay=0.1)")
    assert parsed.decay == 0.1


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("PolynomialDecay(0.5, 0.9", r"Cannot parse schedule"),
        ("", r"Cannot parse schedule|Expected a schedule call"),
        ("PolynomialDecay", r"Expected a schedule call like"),
        ("0.5", r"Expected a schedule call like"),
        (
            "schedules.PolynomialDecay(0.5, 0.9, 0, 10)",
            r"Expected a schedule call like",
        ),
        (
            "Polynomial(0.5, 0.9, 0, 10)",
            r"Unknown schedule 'Polynomial'; choose one of .*PolynomialDecay",
        ),
        ("PolynomialDecay(x, 0.9, 0, 10)", r"must be literal numbers"),
        (
            "PolynomialDecay(0.5, 0.9, 0, end_step=__import__('os'))",
            r"must be literal numbers",
        ),
        # Parsed fine, but the schedule itself rejects the values.
        (
            "PolynomialDecay(0.5, 0.9, 10, 5)",
            re.escape("begin_step should be <= end_step if end_step != -1"),
        ),
        (
            "ConstantSparsity(1.5, 0)",
            re.escape("target_sparsity must be in range [0,1)"),
        ),
    ],
)
def test_get_rejects_bad_strings(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        schedules.get(text)


# ---------------------------------------------------------------------------
# Custom schedules written by users.


class TfmotStylePolynomialDecay(keras_prune.PruningSchedule):
    """tfmot 0.8.1's PolynomialDecay, as a tfmot user would write it."""

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        import tensorflow as tf

        self.tf = tf
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = power
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(
            self.begin_step, self.end_step, self.frequency, False
        )
        self._validate_sparsity(initial_sparsity, "initial_sparsity")
        self._validate_sparsity(final_sparsity, "final_sparsity")

    def __call__(self, step):
        tf = self.tf
        p = tf.math.divide(
            tf.cast(step - self.begin_step, tf.float32),
            tf.constant(self.end_step - self.begin_step, dtype=tf.float32),
        )
        p = tf.math.minimum(1.0, tf.math.maximum(0.0, p))
        sparsity = tf.math.add(
            tf.math.multiply(
                self.initial_sparsity - self.final_sparsity,
                tf.math.pow(1 - p, self.power),
            ),
            self.final_sparsity,
            name="sparsity",
        )
        should_prune = tf.convert_to_tensor(
            self._should_prune_in_step(
                step, self.begin_step, self.end_step, self.frequency
            )
        )
        return should_prune, sparsity

    def get_config(self):
        return {"class_name": type(self).__name__, "config": {}}


class PlainPythonSchedule(keras_prune.PruningSchedule):
    """A schedule in plain Python/NumPy: a step table, returns (bool, float)."""

    def __init__(self, table, frequency):
        self.table = table
        self.frequency = frequency

    def __call__(self, step):
        step = int(step)
        sparsity = 0.0
        for start, value in self.table:
            if step >= start:
                sparsity = value
        return step % self.frequency == 0, float(np.float64(sparsity))

    def get_config(self):
        return {
            "class_name": "PlainPythonSchedule",
            "config": {"table": self.table, "frequency": self.frequency},
        }


class TorchSchedule(keras_prune.PruningSchedule):
    def __call__(self, step):
        import torch

        s = torch.tensor(int(step))
        return (torch.remainder(s - 50, 25) == 0) & (s >= 50), (
            torch.clamp(s.float() / 200.0, 0.0, 0.9)
        )


class JaxSchedule(keras_prune.PruningSchedule):
    def __call__(self, step):
        import jax.numpy as jnp

        s = jnp.asarray(int(step), jnp.int32)
        return jnp.logical_and(jnp.mod(s - 50, 25) == 0, s >= 50), (
            jnp.clip(s.astype(jnp.float32) / 200.0, 0.0, 0.9)
        )


@pytest.mark.parametrize(
    "args",
    [
        (0.5, 0.9, 2000, 10000, 3, 100),
        (0.0, 0.8, 0, 1000, 3, 100),
        (0.2, 0.6, 1, 4, 3, 1),
        (0.1, 0.95, 3, 997, 5, 7),
        (0.8, 0.2, 0, 333, 2, 1),
        (0.5, 0.8, 0, 1000, 1, 100),
    ],
    ids=str,
)
def test_polynomial_decay_within_two_ulps_of_tfmots_formula(args):
    # tfmot's own code (TF eager ops, tf.pow) against the built-in, which
    # uses repeated float32 products so that every backend gives the same
    # bits. They agree to 2 float32 ulps of 1.0 at every step.
    pytest.importorskip("tensorflow")
    ours = PD(*args)
    theirs = TfmotStylePolynomialDecay(*args)
    begin, end = args[2], args[3]
    steps = np.unique(
        np.r_[
            0 : end + 5 : max(1, (end - begin) // 300),
            begin,
            end,
            begin + 1,
            end - 1,
        ]
    )
    for step in steps:
        prune, value = ours(int(step))
        tf_prune, tf_value = schedules.evaluate(theirs, int(step))
        assert bool(prune) is tf_prune, step
        assert abs(float(value) - float(tf_value)) <= 1.2e-7, step


def test_custom_tfmot_style_schedule_validates_like_tfmot():
    pytest.importorskip("tensorflow")
    with pytest.raises(ValueError, match=re.escape("end_step cannot be -1.")):
        TfmotStylePolynomialDecay(0.0, 0.9, 0, -1)
    with pytest.raises(
        ValueError, match=re.escape("initial_sparsity must be in range [0,1)")
    ):
        TfmotStylePolynomialDecay(1.0, 0.9, 0, 100)


@pytest.mark.parametrize(
    "step, prune, sparsity",
    [
        (150, True, 0.7875),
        (50, False, 0.0),
        (200, True, 0.9),
        (300, False, 0.9),
        (101, True, None),
    ],
)
def test_custom_tfmot_style_schedule(step, prune, sparsity):
    tf = pytest.importorskip("tensorflow")
    schedule = TfmotStylePolynomialDecay(0.0, 0.9, 100, 200, 3, 1)
    raw = schedule(np.int64(step))
    assert all(isinstance(x, tf.Tensor) for x in raw)  # really TF tensors
    should_prune, value = schedules.evaluate(schedule, step)
    assert type(should_prune) is bool and should_prune is prune
    assert type(value) is np.float32
    builtin = PD(0.0, 0.9, 100, 200, 3, 1)(step)[1]
    # tf.pow vs the built-in's repeated products: a few float32 ulps apart.
    assert abs(float(value) - float(builtin)) <= 1.2e-7
    if sparsity is not None:
        _assert_value(value, sparsity)


@pytest.mark.parametrize(
    "step, prune, sparsity",
    [
        (0, True, 0.0),
        (99, False, 0.0),
        (150, True, 0.5),
        (151, False, 0.5),
        (200, True, 0.75),
        (1000, True, 0.75),
    ],
)
def test_custom_plain_python_schedule(step, prune, sparsity):
    schedule = PlainPythonSchedule([(100, 0.5), (200, 0.75)], 50)
    should_prune, value = schedules.evaluate(schedule, step)
    assert type(should_prune) is bool and should_prune is prune
    assert type(value) is np.float32 and value == np.float32(sparsity)


@pytest.mark.parametrize(
    "cls, module", [(TorchSchedule, "torch"), (JaxSchedule, "jax")]
)
@pytest.mark.parametrize(
    "step, prune, sparsity",
    [
        (150, True, 0.75),
        (40, False, 0.2),
        (175, True, 0.875),
        (176, False, 0.88),
        (1000, True, 0.9),
    ],
)
def test_custom_schedule_returning_framework_tensors(
    cls, module, step, prune, sparsity
):
    lib = pytest.importorskip(module)
    should_prune, value = schedules.evaluate(cls(), step)
    assert type(should_prune) is bool and should_prune is prune
    assert type(value) is np.float32
    # The user's own division runs where their library puts it: on an
    # NVIDIA GPU, jax divides approximately (40 / 200 -> 0.19999999).
    if module == "jax" and lib.default_backend() != "cpu":
        np.testing.assert_allclose(value, sparsity, rtol=0, atol=1e-7)
    else:
        assert value == np.float32(sparsity)


@pytest.mark.parametrize(
    "make, needs",
    [
        (lambda: PlainPythonSchedule([(100, 0.5), (200, 0.75)], 50), None),
        (
            lambda: TfmotStylePolynomialDecay(0.0, 0.9, 100, 200, 3, 1),
            "tensorflow",
        ),
        (
            lambda: keras_prune.FunctionSchedule(
                lambda s: min(0.9, s / 400), 0, -1, 30
            ),
            None,
        ),
    ],
    ids=["plain", "tfmot_style", "function"],
)
def test_custom_schedule_from_compiled_code_via_host_call(make, needs):
    # What the wrapper does for schedules that are not `in_graph`.
    if needs:
        pytest.importorskip(needs)
    schedule = make()
    assert schedule.in_graph is False

    def step_fn(step):
        return _backend.host_call(
            lambda s: schedules.evaluate(schedule, s), step
        )

    if BACKEND == "tensorflow":
        import tensorflow as tf

        # tf.numpy_function cannot be XLA-compiled; see the xfail below.
        fn = tf.function(step_fn)
    else:
        fn = _compiled(step_fn)
    for step in (0, 60, 90, 150, 151, 200, 360):
        prune, value = fn(ops.convert_to_tensor(step, "int32"))
        expected_prune, expected_value = schedules.evaluate(schedule, step)
        assert bool(ops.convert_to_numpy(prune)) is expected_prune
        value = np.asarray(ops.convert_to_numpy(value))
        assert _bits(value) == _bits(expected_value)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow XLA only")
@pytest.mark.xfail(
    strict=True,
    reason="Known limitation: tf.numpy_function (host_call on TensorFlow) "
    "has no XLA kernel, so a host-evaluated schedule cannot run in a "
    "jit_compile=True step (Keras' default on TF with a GPU).",
)
def test_host_call_under_tensorflow_xla():
    import tensorflow as tf

    schedule = PlainPythonSchedule([(100, 0.5)], 50)
    fn = tf.function(
        lambda step: _backend.host_call(
            lambda s: schedules.evaluate(schedule, s), step
        ),
        jit_compile=True,
    )
    prune, value = fn(ops.convert_to_tensor(150, "int32"))
    assert bool(prune) and float(value) == 0.5


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow XLA only")
def test_fit_with_host_schedule_and_jit_compile_falls_back_on_tensorflow():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    pruned = keras_prune.prune_low_magnitude(
        model, PlainPythonSchedule([(0, 0.5)], 1)
    )
    with pytest.warns(UserWarning, match="jit_compile"):
        pruned.compile("sgd", "mse", jit_compile=True)
    assert pruned.jit_compile is False
    x = np.ones((8, 4), "float32")
    pruned.fit(x, np.ones((8, 8), "float32"), batch_size=4, verbose=0)
    assert keras_prune.pruning_step(pruned) == 2
    mask = keras.ops.convert_to_numpy(pruned.layers[0].masks[0])
    assert int(mask.sum()) == 16


def test_evaluate_rejects_a_schedule_that_does_not_return_a_pair():
    class Broken(keras_prune.PruningSchedule):
        def __call__(self, step):
            return 0.5

    with pytest.raises(TypeError, match=r"must return a pair"):
        schedules.evaluate(Broken(), 3)


def test_base_class_requires_call_and_get_config():
    schedule = keras_prune.PruningSchedule()
    with pytest.raises(NotImplementedError, match="__call__"):
        schedule(0)
    with pytest.raises(NotImplementedError, match="get_config"):
        schedule.get_config()


@pytest.mark.parametrize(
    "step, begin, end, freq, expected",
    [
        (0, 0, -1, 1, True),
        (10**9, 0, -1, 100, True),
        (10, 10, 10, 3, True),
        (11, 10, 10, 1, False),
        (9, 10, 20, 1, False),
        (20, 10, 20, 5, True),
        (20, 10, 20, 3, False),  # end is a pruning step only on frequency
        (19, 10, 20, 3, True),
        (7, 7, 100, 10, True),
        (10, 7, 100, 10, False),
    ],
)
def test_should_prune_in_step_rule(step, begin, end, freq, expected):
    rule = keras_prune.PruningSchedule._should_prune_in_step
    assert bool(rule(step, begin, end, freq)) is expected
    graph = _compiled(lambda s: rule(s, begin, end, freq))
    result = graph(ops.convert_to_tensor(step, "int32"))
    assert bool(ops.convert_to_numpy(result)) is expected


@pytest.mark.parametrize(
    "power", [0, -1, 0.0, float("nan"), float("inf"), "3", True, None]
)
def test_polynomial_decay_validates_power(power):
    with pytest.raises(ValueError, match=r"power must be a finite number > 0"):
        keras_prune.PolynomialDecay(0.0, 0.5, 0, 10, power=power)


@pytest.mark.parametrize(
    "value", [float("nan"), 1.5, -0.5, float("inf"), float("-inf")]
)
def test_evaluate_checks_custom_schedule_values(value):
    class Custom(keras_prune.PruningSchedule):
        def __call__(self, step):
            return step == 4, np.float32(value)

    # Checked at every step, whether or not it prunes there.
    for step in (3, 4):
        with pytest.raises(ValueError) as info:
            schedules.evaluate(Custom(), step)
        message = str(info.value)
        assert "Custom()" in message and f"at step {step}" in message
        assert f"sparsity {float(np.float32(value))!r}" in message
    # 0 and 1 are valid values.
    for ok in (0.0, 1.0):
        value = ok
        assert schedules.evaluate(Custom(), 4) == (True, np.float32(ok))
