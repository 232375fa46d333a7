"""`PruningSpec`: argument validation of prune_low_magnitude, prune_once and
the wrapper (unknown keywords, impossible settings), its config, and the
check of schedule values during training on every backend."""

import re
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.core import patterns
from keras_prune.core import schedules
from keras_prune.integration.spec import PruningSpec
from keras_prune.integration.strip import pruning_wrappers

from conftest import BACKEND
from conftest import to_np


def mlp(hidden=4, out=2, inputs=3):
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            L.Dense(hidden, name="d1"),
            L.Dense(out, name="d2"),
        ]
    )


# ---------------------------------------------------------------------------
# Unknown keywords: TypeError naming the keyword and the closest valid one.


def _typo(fn, *args, **kwargs):
    with pytest.raises(TypeError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_misspelt_keyword_of_prune_low_magnitude_on_a_model():
    message = _typo(
        kp.prune_low_magnitude,
        mlp(),
        pruning_shedule=kp.ConstantSparsity(0.9, 0),
    )
    assert "'pruning_shedule'" in message
    assert "Did you mean 'pruning_schedule'?" in message
    assert "prune_low_magnitude()" in message
    message = _typo(kp.prune_low_magnitude, [L.Dense(2)], blok_size=(2, 2))
    assert "'blok_size'" in message and "'block_size'" in message


def test_misspelt_keyword_of_prune_low_magnitude_on_a_layer():
    message = _typo(kp.prune_low_magnitude, L.Dense(2), sparsity_m_by_m=(2, 4))
    assert "'sparsity_m_by_m'" in message
    assert "Did you mean 'sparsity_m_by_n'?" in message
    # Keras layer keywords of the wrapper are suggested too.
    message = _typo(kp.prune_low_magnitude, L.Dense(2), trainabel=False)
    assert "Did you mean 'trainable'?" in message


def test_layer_form_still_accepts_keras_layer_keywords():
    wrapper = kp.prune_low_magnitude(
        L.Dense(2), name="pruned_head", trainable=False, dtype="float32"
    )
    assert wrapper.name == "pruned_head"
    assert wrapper.trainable is False
    assert wrapper.dtype_policy.name == "float32"


def test_misspelt_keyword_of_prune_once_and_the_wrapper():
    model = mlp()
    message = _typo(kp.prune_once, model, 0.5, paterrn="channel")
    assert "prune_once()" in message and "'paterrn'" in message
    assert "Did you mean 'pattern'?" in message
    message = _typo(kp.prune_once, model, 0.5, alocation="global")
    assert "Did you mean 'allocation'?" in message
    message = _typo(kp.PruneLowMagnitude, L.Dense(2), pruning_shedule=None)
    assert "PruneLowMagnitude()" in message and "'pruning_shedule'" in message
    assert "Did you mean 'pruning_schedule'?" in message


def test_unknown_keyword_without_close_match_lists_the_valid_ones():
    message = _typo(kp.prune_low_magnitude, mlp(), zzz=1)
    assert "'zzz'" in message and "Valid keywords" in message


# ---------------------------------------------------------------------------
# Impossible settings.


def test_max_sparsity_below_min_sparsity():
    with pytest.raises(
        ValueError,
        match=re.escape("max_sparsity=0.3 is below min_sparsity=0.5"),
    ):
        kp.prune_low_magnitude(
            mlp(), allocation="global", max_sparsity=0.3, min_sparsity=0.5
        )
    # Per layer: the message names the layer where they cross.
    with pytest.raises(ValueError, match=r"Layer 'd2': max_sparsity=0.2"):
        kp.prune_low_magnitude(
            mlp(),
            allocation="global",
            max_sparsity={"d2": 0.2, ".*": 0.9},
            min_sparsity=0.4,
        )
    # Equal bounds are possible.
    pruned = kp.prune_low_magnitude(
        mlp(), allocation="global", max_sparsity=0.5, min_sparsity=0.5
    )
    assert [w.max_sparsity for w in pruning_wrappers(pruned)] == [0.5, 0.5]


@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.1, "0.5", True])
def test_bounds_must_be_fractions(value):
    error = TypeError if isinstance(value, (str, bool)) else ValueError
    with pytest.raises(error, match="max_sparsity"):
        kp.prune_low_magnitude(mlp(), allocation="global", max_sparsity=value)
    with pytest.raises(ValueError, match="min_sparsity"):
        kp.prune_low_magnitude(
            mlp(), allocation="global", min_sparsity={"d1": value}
        )


def test_block_larger_than_every_kernel_of_a_layer_names_it():
    # d2's kernel (4, 2) is a single (4, 4) block: never prunable.
    model = mlp(hidden=4, out=2, inputs=8)
    with pytest.raises(ValueError) as info:
        kp.prune_low_magnitude(model, block_size=(4, 4))
    message = str(info.value)
    assert "Layer 'd2'" in message and "block_size=(4, 4)" in message
    assert "0% sparse" in message and "layers=" in message
    # Leaving it out as the message says works, and prunes d1 in blocks.
    pruned = kp.prune_low_magnitude(
        model,
        kp.ConstantSparsity(0.5, 0),
        block_size=(4, 4),
        layers=lambda layer: layer.name != "d2",
    )
    assert [w.layer.name for w in pruning_wrappers(pruned)] == ["d1"]
    # A single layer: raised when it is built.
    wrapper = kp.prune_low_magnitude(L.Dense(2, name="tiny"), block_size=(4, 4))
    with pytest.raises(ValueError, match="Layer 'tiny'"):
        wrapper.build((None, 3))


def test_m_by_n_longer_than_the_input_axis_names_the_layer():
    # d1's kernel (2, 4): 2 weights per input line; (2, 4) pads 2 and puts
    # both zeros in the padding.
    with pytest.raises(ValueError, match=r"Layer 'd1'.*sparsity_m_by_n"):
        kp.prune_low_magnitude(mlp(inputs=2), sparsity_m_by_n=(2, 4))
    # Three weights per line: one real zero per group, allowed.
    kp.prune_low_magnitude(mlp(inputs=3), sparsity_m_by_n=(2, 4))


def test_pattern_that_fits_some_weights_of_a_layer_warns_once():
    # SimpleRNN(8) on 2 features: the kernel (2, 8) has 2 weights per input
    # line (no N:M zero lands on them), the recurrent kernel (8, 8) fits.
    model = keras.Sequential([keras.Input((3, 2)), L.SimpleRNN(8, name="rnn")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kp.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    ours = [w for w in caught if "larger than some" in str(w.message)]
    assert len(ours) == 1
    assert "Layer 'rnn'" in str(ours[0].message)
    assert "kernel (2, 8)" in str(ours[0].message)


@pytest.mark.parametrize(
    "shape",
    [
        (3, 2),
        (4, 4),
        (5, 3),
        (2, 8),
        (8, 2),
        (3, 3, 2, 2),
        (1, 1, 3, 4),
        (2, 5),
        (9, 1),
        (1, 9),
    ],
)
def test_fit_rule_matches_the_masks(shape):
    """The rule that refuses a pattern says exactly when masks stay dense."""
    w = np.random.RandomState(0).randn(*shape).astype("float32") + 5.0
    for block in [(2, 2), (4, 4), (8, 1), (1, 8), (3, 2), (16, 16)]:
        mask = to_np(patterns.block_mask(w, 0.9, block)[0])
        fits = PruningSpec(block_size=block)._fits(shape, -1)
        assert (not mask.all()) == fits, (shape, block)
    for m_by_n in [(2, 4), (1, 4), (3, 4), (1, 2), (4, 8)]:
        for axis in range(len(shape)):
            mask = to_np(patterns.m_by_n_mask(w, m_by_n, 0.9, axis=axis)[0])
            fits = PruningSpec(sparsity_m_by_n=m_by_n)._fits(shape, axis)
            assert (not mask.all()) == fits, (shape, m_by_n, axis)


# ---------------------------------------------------------------------------
# The spec and the wrapper's config.

WRAPPER_KEYS = [
    "pruning_schedule",
    "block_size",
    "block_pooling_type",
    "sparsity_m_by_n",
    "pattern",
    "skip_unsupported",
    "allocation",
    "pruning_group",
    "max_sparsity",
    "min_sparsity",
]


def test_wrapper_config_keys_and_values_unchanged():
    wrapper = kp.prune_low_magnitude(
        L.Dense(2, name="d"),
        kp.PolynomialDecay(0.1, 0.6, 0, 10),
        block_size=(1, 2),
        block_pooling_type="MAX",
    )
    config = wrapper.get_config()
    assert [k for k in config if k in WRAPPER_KEYS] == WRAPPER_KEYS
    assert list(config)[-len(WRAPPER_KEYS) :] == WRAPPER_KEYS
    assert config["block_size"] == (1, 2)
    assert config["block_pooling_type"] == "MAX"
    assert config["sparsity_m_by_n"] is None
    assert config["allocation"] == "layer"
    assert config["pruning_group"] is None
    assert config["pruning_schedule"]["registered_name"] == (
        "keras_prune>PolynomialDecay"
    )
    restored = kp.PruneLowMagnitude.from_config(config)
    assert restored.get_config() == config
    assert restored.pruning_spec.pruning_schedule.get_config() == (
        wrapper.pruning_schedule.get_config()
    )


def test_config_written_by_earlier_versions_loads():
    # A wrapper config as keras-prune wrote it before PruningSpec (lists
    # where JSON turned tuples into lists).
    config = {
        "name": "prune_low_magnitude_d",
        "trainable": True,
        "dtype": "float32",
        "layer": keras.saving.serialize_keras_object(L.Dense(3, name="d")),
        "pruning_schedule": {
            "module": "keras_prune.core.schedules",
            "class_name": "ConstantSparsity",
            "config": {
                "class_name": "ConstantSparsity",
                "config": {
                    "target_sparsity": 0.5,
                    "begin_step": 0,
                    "end_step": -1,
                    "frequency": 100,
                },
            },
            "registered_name": "keras_prune>ConstantSparsity",
        },
        "block_size": [1, 1],
        "block_pooling_type": "AVG",
        "sparsity_m_by_n": [2, 4],
        "pattern": None,
        "skip_unsupported": False,
        "allocation": "layer",
        "pruning_group": None,
        "max_sparsity": None,
        "min_sparsity": None,
    }
    wrapper = kp.PruneLowMagnitude.from_config(config)
    assert wrapper.sparsity_m_by_n == (2, 4)
    assert wrapper.block_size == (1, 1)
    assert wrapper.pruning_schedule.target_sparsity == 0.5


def test_spec_round_trips_its_config_with_mappings():
    spec = PruningSpec(
        pruning_schedule={"d1": 0.5, "d.*": kp.PolynomialDecay(0, 0.8, 0, 9)},
        layers=["d1", "d2"],
    )
    config = spec.get_config()
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(spec)
    )
    assert isinstance(again, PruningSpec)
    assert again.get_config() == config
    d1, d2 = mlp().layers
    assert again.for_layer(d1)["pruning_schedule"].target_sparsity == 0.5
    assert again.for_layer(d2)["pruning_schedule"].final_sparsity == 0.8
    assert again.selects(d2) and not again.selects(L.Dense(1, name="x"))


def test_spec_rejects_bad_values_with_the_argument_named():
    for kwargs, match in [
        ({"block_size": (0, 2)}, "`block_size` must be positive"),
        ({"block_size": (True, 2)}, "`block_size` must be a pair"),
        ({"skip_unsupported": "yes"}, "`skip_unsupported`"),
        ({"layers": [3]}, "`layers`"),
        ({"layers": "d(("}, "`layers` key 'd\\(\\(' is not a valid regex"),
        ({"pruning_policy": object()}, "`pruning_policy`"),
        ({"pruning_schedule": {"[": 0.5}}, "`pruning_schedule` key"),
    ]:
        with pytest.raises((TypeError, ValueError), match=match):
            PruningSpec(**kwargs)


# ---------------------------------------------------------------------------
# Schedule values, checked during training on every backend.


@keras.saving.register_keras_serializable(package="test_spec")
class BadFrom(kp.PruningSchedule):
    """0.5 before step `at`, `value` from it on; updates every step."""

    def __init__(self, value, at):
        self.value = value
        self.at = at

    def __call__(self, step):
        return True, (0.5 if int(step) < self.at else self.value)

    def get_config(self):
        return {
            "class_name": "BadFrom",
            "config": {"value": self.value, "at": self.at},
        }


@keras.saving.register_keras_serializable(package="test_spec")
class BadFromInGraph(BadFrom):
    """`BadFrom` written with keras.ops, run inside the compiled step."""

    in_graph = True

    def __call__(self, step):
        value = keras.ops.where(keras.ops.less(step, self.at), 0.5, self.value)
        return keras.ops.greater_equal(step, 0), value


BAD_VALUES = [float("nan"), 1.5, -0.5, float("inf"), float("-inf")]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_host_check_names_schedule_step_and_value(value):
    schedule = BadFrom(value, 3)
    assert schedules.evaluate(schedule, 2) == (True, np.float32(0.5))
    with pytest.raises(ValueError) as info:
        schedules.evaluate(schedule, 3)
    message = str(info.value)
    assert f"BadFrom(value={value!r}, at=3)" in message
    assert "at step 3" in message and f"sparsity {value!r}" in message
    # Planning ahead stops before the bad step; planning from it raises.
    assert len(schedules.evaluate_range(schedule, 0, 10)) == 3
    with pytest.raises(ValueError, match="at step 3"):
        schedules.evaluate_range(schedule, 3, 10)


def _fit(schedule, callback, steps=6, clipnorm=None):
    model = mlp(hidden=4, out=2, inputs=4)
    pruned = kp.prune_low_magnitude(model, schedule)
    pruned.compile(keras.optimizers.SGD(0.01, clipnorm=clipnorm), "mse")
    rng = np.random.RandomState(0)
    x = rng.randn(steps * 2, 4).astype("float32")
    y = rng.randn(steps * 2, 2).astype("float32")
    callbacks = [kp.UpdatePruningStep()] if callback else []
    pruned.fit(
        x,
        y,
        batch_size=2,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    return pruned


def _backend_error():
    """What a ValueError raised inside the compiled step surfaces as."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.errors.InvalidArgumentError
    return ValueError  # JAX re-raises the callback's type; torch is eager


@pytest.mark.parametrize(
    "callback,value,compile_kwargs",
    [
        (True, 1.5, {}),  # host updates: the plan raises
        # Clipping by norm keeps the updates in the step (host_updates).
        (True, float("inf"), {"clipnorm": 1.0}),
        (False, float("nan"), {}),  # in-step, no callback
        ("in_graph", -0.5, {}),  # a user's in-graph schedule, no callback
    ],
    ids=["host", "in_step_callback", "no_callback", "in_graph"],
)
def test_training_stops_at_the_bad_step(callback, value, compile_kwargs):
    schedule = BadFrom(value, 3)
    if callback == "in_graph":
        schedule, callback = BadFromInGraph(value, 3), False
    holder = {}
    original = kp.prune_low_magnitude

    def spy(*args, **kwargs):
        holder["model"] = original(*args, **kwargs)
        return holder["model"]

    expected = ValueError if callback else _backend_error()
    with pytest.raises(expected) as info:
        kp.prune_low_magnitude = spy
        try:
            _fit(schedule, callback, **compile_kwargs)
        finally:
            kp.prune_low_magnitude = original
    message = str(info.value)
    assert f"{type(schedule).__name__}(" in message and "at step 3" in message
    assert f"sparsity {value!r}" in message
    if BACKEND == "jax" and not callback:
        return  # the failed step's donated state is gone (Keras on JAX)
    wrappers = pruning_wrappers(holder["model"])
    for wrapper in wrappers:
        assert wrapper._schedule_errors is None  # the callback let go
        for mask in wrapper.masks:
            # Pruned to 0.5 at steps 0-2; nothing from the bad value.
            kept = int(to_np(mask).sum())
            assert kept == to_np(mask).size // 2, (wrapper.name, kept)


def test_function_schedule_message_names_the_value():
    schedule = kp.FunctionSchedule(lambda step: float("nan"), 0, -1, 1)
    with pytest.raises(ValueError, match=r"fn\(7\) returned nan at step 7"):
        schedules.evaluate(schedule, 7)


def test_prune_once_refuses_nan_sparsity():
    with pytest.raises(
        ValueError, match=r"`sparsity` must be a number in \[0, 1\], got nan"
    ):
        kp.prune_once(mlp(), float("nan"))
