"""Real workflows around pruned models (models6): transfer learning with a
frozen base, LoRA, copies of models holding assets (tokenizers, adapted
lookups), quantization after strip, and nested / shared / wrapper layers.

Tiny models; `benchmarks/models6_workflows.py` runs the same workflows on
`keras.applications` and Keras-Hub models (docs/models.md, "models6")."""

import os

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.integration import state

from conftest import to_np

RNG = np.random.RandomState(0)
X_IMG = RNG.rand(8, 8, 8, 3).astype("float32")
Y_CLS = RNG.randint(0, 3, 8)
SCHEDULE = keras_prune.ConstantSparsity(0.5, 0)


def _transfer_model():
    """Keras' transfer-learning guide in small: a frozen base (conv + BN),
    called with `training=False` on a new Input, and a new head."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    base = keras.Model(inp, x, name="base")
    base.get_layer("bn").moving_mean.assign(np.arange(4, dtype="float32"))
    base.trainable = False
    inputs = keras.Input((8, 8, 3))
    h = base(inputs, training=False)
    h = keras.layers.Dropout(0.2)(h)
    out = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, out)


def _fit(model, optimizer):
    model.compile(
        optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        X_IMG,
        Y_CLS,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )


def _kernels(model):
    return {
        v.path: to_np(v)
        for v in model.weights
        if v.path.endswith("kernel") and "mask" not in v.path
    }


def _wrapper(model, name):
    for w in state.pruning_wrappers(model):
        if w.layer.name == name:
            return w
    raise KeyError(name)


def test_unfreezing_a_base_pruned_while_frozen_trains_its_pruned_layers(
    tmp_path,
):
    """Found by models6 (TensorFlow): a base frozen before pruning, then
    unfrozen (`base.trainable = True`) for fine-tuning, left its pruned
    layers frozen: the wrapper was created trainable over a frozen layer,
    and TensorFlow skips `wrapper.trainable = True` when the flag already
    reads True, so the conv kernel was not in `trainable_variables` and
    silently never trained while the rest of the base did."""
    model = _transfer_model()
    original = _kernels(model)
    bn_before = {
        v.path: to_np(v)
        for v in model.get_layer("base").get_layer("bn").weights
    }
    pruned = keras_prune.prune_low_magnitude(model, pruning_schedule=SCHEDULE)
    conv = _wrapper(pruned, "conv")
    assert conv.trainable is False and conv.layer.trainable is False
    _fit(pruned, "adam")
    after = _kernels(pruned)
    mask = to_np(conv.pruning_vars[0][1])
    # Frozen and pruned: the kept weights are exactly the original ones,
    # the pruned ones exactly zero (the masks of frozen layers are applied).
    assert int(mask.sum()) == 54
    np.testing.assert_array_equal(
        after["conv/kernel"], original["conv/kernel"] * mask
    )
    assert int((after["head/kernel"] != 0).sum()) == 6
    # BatchNormalization stays in inference mode: nothing of it moved.
    bn = pruned.get_layer("base").get_layer("bn")
    for v in bn.weights:
        np.testing.assert_array_equal(to_np(v), bn_before[v.path])

    pruned.get_layer("base").trainable = True
    assert conv.layer.trainable is True
    trainable = {v.path for v in pruned.trainable_variables}
    assert "conv/kernel" in trainable and "bn/gamma" in trainable
    _fit(pruned, keras.optimizers.SGD(0.5))
    tuned = _kernels(pruned)
    kept = mask.astype(bool)
    assert np.all(tuned["conv/kernel"][kept] != after["conv/kernel"][kept])
    assert np.all(tuned["conv/kernel"][~kept] == 0)
    assert keras_prune.pruning_step(pruned) == 4

    out = to_np(pruned.predict(X_IMG, verbose=0))
    stripped = keras_prune.strip_pruning(pruned)
    np.testing.assert_array_equal(
        to_np(stripped.predict(X_IMG, verbose=0)), out
    )
    stripped.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(to_np(loaded.predict(X_IMG, verbose=0)), out)
    counts = {k: int((v != 0).sum()) for k, v in _kernels(loaded).items()}
    assert counts == {"conv/kernel": 54, "head/kernel": 6}


@pytest.mark.parametrize(
    "part,expected", [("head", (108, 6)), ("base", (54, 12))]
)
def test_prune_only_head_or_only_base_with_clone_function(part, expected):
    """tfmot's idiom: `clone_model(model, clone_function=...)` wrapping one
    layer (the head, or the whole nested base)."""
    model = _transfer_model()

    def clone(layer):
        if layer.name == part:
            return keras_prune.prune_low_magnitude(
                layer, pruning_schedule=SCHEDULE
            )
        return layer

    pruned = keras.models.clone_model(model, clone_function=clone)
    _fit(pruned, "adam")
    stripped = keras_prune.strip_pruning(pruned)
    k = _kernels(stripped)
    counts = (
        int((k["conv/kernel"] != 0).sum()),
        int((k["head/kernel"] != 0).sum()),
    )
    assert counts == expected


def test_wrapper_trainable_follows_its_layer():
    frozen = keras.layers.Dense(3)
    frozen.trainable = False
    assert keras_prune.PruneLowMagnitude(frozen).trainable is False
    # `trainable=True` over a frozen layer (every wrapper of a pruned file
    # saved before the rule) keeps it frozen; the flags agree.
    wrapper = keras_prune.PruneLowMagnitude(frozen, trainable=True)
    assert wrapper.trainable is False and frozen.trainable is False
    # `trainable=False` freezes the layer too.
    layer = keras.layers.Dense(3)
    wrapper = keras_prune.PruneLowMagnitude(layer, trainable=False)
    assert layer.trainable is False
    wrapper.trainable = True  # and unfreezing the wrapper unfreezes it
    assert layer.trainable is True
    wrapper.build((None, 4))
    assert {v.name for v in wrapper.trainable_variables} == {"kernel", "bias"}


def test_lora_layer_is_refused_before_the_copy():
    """A sublayer given LoRA (as Keras-Hub's `backbone.enable_lora(4)`
    does) whose holder's config has no LoRA: the copy failed with a bare
    `set_weights` length error ("expecting 8 weights"), naming neither LoRA
    nor the fix."""
    inp = keras.Input((3, 4))
    mha = keras.layers.MultiHeadAttention(1, 2, name="mha")
    model = keras.Model(inp, mha(inp, inp))
    mha._query_dense.enable_lora(2)
    with pytest.raises(
        ValueError, match=r"'mha' \(sublayer 'query'\) has LoRA enabled"
    ):
        keras_prune.prune_low_magnitude(model)


def test_pruned_copy_keeps_an_adapted_lookup_table():
    """The copy pruned is made from configs; an adapted StringLookup's
    vocabulary is an asset, in no config ("Table not initialized")."""
    lookup = keras.layers.StringLookup(name="lookup")
    lookup.adapt(np.array(["a", "b", "c", "a", "b", "a"]))
    inp = keras.Input((1,), dtype="string")
    x = keras.layers.Embedding(5, 4, name="emb")(lookup(inp))
    out = keras.layers.Dense(2, name="d")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    pruned = keras_prune.prune_low_magnitude(model)
    data = np.array([["a"], ["b"], ["c"], ["z"]])
    ids = to_np(pruned.get_layer("lookup")(data)).ravel()
    np.testing.assert_array_equal(ids, [1, 2, 3, 0])


def test_pruned_keras_hub_task_keeps_its_tokenizer_vocabulary():
    """A Keras-Hub task with its preprocessor (vocabulary given as a dict):
    the pruned copy had no vocabulary, so `summary()`, `fit` on strings,
    `generate` and `predict` raised "No vocabulary has been set"."""
    keras_hub = pytest.importorskip("keras_hub")
    vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "Ġ": 3, "Ġa": 4, "Ġb": 5}
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=vocab, merges=["Ġ a", "Ġ b"]
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=4
    )
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=6,
        num_layers=1,
        num_heads=1,
        hidden_dim=4,
        intermediate_dim=4,
        max_sequence_length=4,
    )
    task = keras_hub.models.GPT2CausalLM(backbone, preprocessor=preprocessor)
    pruned = keras_prune.prune_low_magnitude(task)
    copy = pruned.preprocessor.tokenizer
    assert copy is not tokenizer
    assert copy.vocabulary_size() == 6
    assert copy.get_vocabulary() == tokenizer.get_vocabulary()
    assert copy.merges == tokenizer.merges
    lines = []
    pruned.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert "gpt2_tokenizer (GPT2Tokenizer)" in "".join(lines)


def _nested_models():
    enc = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, name="e1"),
            keras.layers.Dense(4, name="e2"),
        ],
        name="enc",
    )
    a, b = keras.Input((6,)), keras.Input((6,))
    d = keras.layers.Subtract()([enc(a), enc(b)])
    siamese = keras.Model([a, b], keras.layers.Dense(1, name="head")(d))
    wrappers = keras.Sequential(
        [
            keras.Input((3, 5, 5, 2)),
            keras.layers.TimeDistributed(keras.layers.Conv2D(2, 3), name="td"),
            keras.layers.TimeDistributed(keras.layers.Flatten()),
            keras.layers.Bidirectional(keras.layers.LSTM(2), name="bi"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    x2 = [RNG.rand(8, 6).astype("float32"), RNG.rand(8, 6).astype("float32")]
    return {
        "siamese": (siamese, x2, RNG.rand(8, 1).astype("float32")),
        "timedistributed_bidirectional": (
            wrappers,
            RNG.rand(8, 3, 5, 5, 2).astype("float32"),
            RNG.rand(8, 2).astype("float32"),
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "siamese",
        pytest.param(
            "timedistributed_bidirectional",
            marks=pytest.mark.skipif(
                os.environ.get("KERAS_PRUNE_MODELS") != "all",
                reason="KERAS_PRUNE_MODELS=all (CI time)",
            ),
        ),
    ],
)
def test_shared_and_wrapper_layers_exact_through_reload(name, tmp_path):
    keras.utils.set_random_seed(0)
    model, x, y = _nested_models()[name]
    pruned = keras_prune.prune_low_magnitude(model, pruning_schedule=SCHEDULE)
    pruned.compile("adam", "mse")
    pruned.fit(
        x,
        y,
        batch_size=4,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    assert keras_prune.pruning_step(pruned) == 2  # the shared encoder: once
    out = to_np(pruned.predict(x, verbose=0))
    stripped = keras_prune.strip_pruning(pruned)
    stripped.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(to_np(loaded.predict(x, verbose=0)), out)
    counts = sorted(
        (int((to_np(v) != 0).sum()), int(np.prod(v.shape)))
        for v in loaded.weights
        if "kernel" in v.name
    )
    expected = {
        # encoder e1 and e2 (one copy, used twice), head
        "siamese": [(2, 4), (16, 32), (24, 48)],
        # output, two recurrent kernels, the conv, two LSTM input kernels
        "timedistributed_bidirectional": [
            (4, 8),
            (8, 16),
            (8, 16),
            (18, 36),
            (72, 144),
            (72, 144),
        ],
    }
    assert counts == expected[name]


def test_int8_after_strip_keeps_every_pruned_zero():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, name="d1"),
            keras.layers.EinsumDense("ab,bc->ac", 5, bias_axes="c", name="e1"),
        ]
    )
    stripped = keras_prune.strip_pruning(keras_prune.prune_once(model, 0.5))
    zeros = {l.name: to_np(l.kernel) == 0 for l in stripped.layers}
    stripped.quantize("int8")
    for layer in stripped.layers:
        q = to_np(layer._kernel)
        assert q.dtype == np.int8
        np.testing.assert_array_equal(q == 0, zeros[layer.name])
