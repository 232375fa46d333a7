"""Regression tests of the second hostile-input pass (issue 15).

Each test reproduces one finding: layers whose masks cannot apply
(quantized, LoRA, zero-size weights), codecs, schedule configs, the `.kpz`
loader's paths, the CLI and the event reader. Models are tiny (a few
units) and a test builds at most a couple of them.
"""

import json
import warnings

import keras
import numpy as np
import pytest

import keras_prune

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


@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_pruning_a_quantized_model_is_refused(mode):
    """Before: int8 kernels were masked as if they were the weights (the
    stripped model predicted 1e5 away from the pruned one), int4 masked
    packed bytes (two weights each), float8 failed in the model copy with
    an unrelated message."""
    model = _seq()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # InputLayer has no quantize()
        model.quantize(mode)
    with pytest.raises(ValueError, match=rf"'d1' is quantized .*'{mode}'"):
        keras_prune.prune_once(model, 0.5)
    with pytest.raises(ValueError, match="strip_pruning"):
        keras_prune.prune_low_magnitude(model)


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


@pytest.mark.parametrize("codec", ["none", "xz", "LZMA", None, 3, ""])
def test_misspelt_codec_is_refused_for_small_arrays(codec, tmp_path):
    """Before: an array too small to compress never reached the codec, so
    `compress_array(np.zeros(10), codec='xz')` succeeded."""
    with pytest.raises(ValueError, match="codec must be 'lzma', 'zlib' or"):
        keras_prune.compress_array(np.ones(3, "float32"), codec=codec)
    with pytest.raises(ValueError, match="codec must be"):
        keras_prune.save_compressed(_seq(), tmp_path / "m.kpz", codec=codec)
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
