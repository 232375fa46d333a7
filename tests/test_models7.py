"""Keras-Hub tasks and configurations beyond the earlier sweeps (models7).

docs/models.md, section 11. `benchmarks/models7_sweep.py` builds every
MaskedLM and TextEmbedder task, more causal LM classes and non-default
configurations; the regressions of what it found are checked here on tiny
models:

- a sublayer held by two wrapped layers (Keras-Hub's `RobertaMaskedLM`:
  the `MaskedLMHead` and the backbone's `TokenAndPositionEmbedding` both
  hold the token embedding) got two masks, counted twice by
  `allocation="global"`, and `fit` raised that the container was never
  called with `training=True`;
- Keras-Hub's `MaskedLMHead` with its own `output_kernel` (ESM's untied
  masked LM head) blocked default pruning.

`KERAS_PRUNE_MODELS=all` adds the real `RobertaMaskedLM` and
`ESMMaskedPLM`, built tiny from their constructors.
"""

import os
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.core import patterns
from keras_prune.integration import registry
from keras_prune.integration.state import pruning_wrappers

from conftest import assert_same_outputs
from conftest import to_np

VOCAB = 24
SEQ = 6
HIDDEN = 8
BATCH = 2

FULL = os.environ.get("KERAS_PRUNE_MODELS", "") == "all"


def outputs(model, x):
    return [to_np(t) for t in keras.tree.flatten(model(x, training=False))]


def pairs_of(pruned):
    """(wrapped layer name, variable, mask) of every mask."""
    return [
        (w.layer.name, v, m)
        for w in pruning_wrappers(pruned)
        for v, m in zip(w.pruned_weights, w.masks)
    ]


# ------------------------------------ one sublayer held by two wrapped layers


@keras.saving.register_keras_serializable(package="test_models7")
class _Embeddings(keras.layers.Layer):
    """Keras-Hub's `TokenAndPositionEmbedding`: a token embedding and a
    position embedding (left dense by default) in one container."""

    def __init__(self, token_embedding=None, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding or keras.layers.Embedding(
            VOCAB, HIDDEN, name="token_embedding"
        )
        self.position_embedding = keras.layers.Embedding(
            SEQ, HIDDEN, name="position_embedding"
        )

    def build(self, shape):
        self.token_embedding.build(shape)
        self.position_embedding.build(shape)

    def call(self, ids):
        positions = keras.ops.arange(keras.ops.shape(ids)[-1])
        return self.token_embedding(ids) + self.position_embedding(positions)


@keras.saving.register_keras_serializable(package="test_models7")
class _Head(keras.layers.Layer):
    """Keras-Hub's `MaskedLMHead` given the token embedding: a Dense of its
    own, then the embedding's table as the output projection."""

    def __init__(self, token_embedding, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.dense = keras.layers.Dense(HIDDEN, name="intermediate_dense")

    def build(self, shape):
        self.dense.build(shape)

    def call(self, x):
        return self.token_embedding(self.dense(x), reverse=True)


@keras.saving.register_keras_serializable(package="test_models7")
class _SharedTableLM(keras.Model):
    """A Functional model described by its constructor, as Keras-Hub tasks
    are; its two graph layers `embeddings` and `head` hold one table."""

    def __init__(self, **kwargs):
        ids = keras.Input((SEQ,), dtype="int32")
        table = keras.layers.ReversibleEmbedding(
            VOCAB, HIDDEN, name="token_embedding"
        )
        embeddings = _Embeddings(token_embedding=table, name="embeddings")
        hidden = keras.layers.Dense(HIDDEN, name="ffn")(embeddings(ids))
        head = _Head(table, name="head")
        super().__init__(ids, head(hidden), **kwargs)
        self.embeddings = embeddings
        self.head = head

    def get_config(self):
        return {"name": self.name}


def _ids(n=BATCH):
    return np.random.RandomState(0).randint(0, VOCAB, (n, SEQ)).astype("int32")


def test_sublayer_held_by_two_wrapped_layers_gets_one_mask(tmp_path):
    # RobertaMaskedLM (DistilBERT's, XLM-RoBERTa's): the token embedding
    # had a mask in the container's wrapper and one in the head's. The tiny
    # RobertaMaskedLM kept 2,238 weights at global 0.8 instead of
    # kept_count(11,264, 0.8) = 2,253. Now the table is wrapped on its own
    # and both holders' wrappers call its wrapper: the container's prunes
    # only the position embedding, the head's only its Dense.
    keras.utils.set_random_seed(0)
    model = _SharedTableLM(name="shared_lm")
    x = _ids()
    want_dense = outputs(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the global guard's floor
        pruned = kp.prune_once(model, 0.8, allocation="global")
    pairs = pairs_of(pruned)
    assert sorted((n, v.path) for n, v, _ in pairs) == [
        ("embeddings", "embeddings/position_embedding/embeddings"),
        ("ffn", "ffn/kernel"),
        ("head", "head/intermediate_dense/kernel"),
        ("token_embedding", "embeddings/token_embedding/embeddings"),
    ]
    total = sum(int(np.prod(v.shape)) for _, v, _ in pairs)
    assert total == (VOCAB + SEQ + 2 * HIDDEN) * HIDDEN == 368
    kept = sum(int(to_np(m).sum()) for _, _, m in pairs)
    assert kept == kp.kept_count(total, 0.8) == 74
    # Both holders call the table's wrapper.
    table_wrapper = pruned.embeddings.layer.token_embedding
    assert isinstance(table_wrapper, kp.PruneLowMagnitude)
    assert pruned.head.layer.token_embedding is table_wrapper
    want = outputs(pruned, x)
    assert not np.array_equal(want[0], want_dense[0])
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert sorted(
        (w.layer.name, len(w.masks)) for w in pruning_wrappers(loaded)
    ) == [("embeddings", 1), ("ffn", 1), ("head", 1), ("token_embedding", 1)]
    table_wrapper = loaded.embeddings.layer.token_embedding
    assert table_wrapper is loaded.head.layer.token_embedding
    for a, b in zip(outputs(loaded, x), want):
        assert_same_outputs(a, b)
    stripped = kp.strip_pruning(pruned)
    assert type(stripped) is _SharedTableLM
    assert pruning_wrappers(stripped) == []
    assert stripped.embeddings.token_embedding is stripped.head.token_embedding
    for a, b in zip(outputs(stripped, x), want):
        assert_same_outputs(a, b)
    assert sum(int(np.count_nonzero(to_np(v))) for _, v, _ in pairs) == kept


def test_sublayer_held_by_two_wrapped_layers_trains():
    # Before: fit raised "The pruned layers ['embeddings'] ... are never
    # called with training=True" (the two wrappers of one table).
    keras.utils.set_random_seed(0)
    wrapped = kp.prune_low_magnitude(_SharedTableLM(name="shared_lm"))
    wrapped.compile("sgd", "sparse_categorical_crossentropy")
    x = _ids(2 * BATCH)
    y = np.zeros((2 * BATCH, SEQ), "int32")
    wrapped.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    pairs = pairs_of(wrapped)
    assert len({id(v) for _, v, _ in pairs}) == len(pairs) == 4
    for w in pruning_wrappers(wrapped):
        assert int(to_np(w.pruning_step)) == 2
    for _, v, m in pairs:
        m = to_np(m).astype(bool)
        assert int(m.sum()) == kp.kept_count(m.size, 0.5), v.path
        assert not np.any(to_np(v)[~m]), v.path
    want = outputs(wrapped, x)
    for a, b in zip(outputs(kp.strip_pruning(wrapped), x), want):
        assert_same_outputs(a, b)


@keras.saving.register_keras_serializable(package="test_models7")
class _Block(keras.layers.Layer, kp.PrunableLayer):
    """A custom layer with a kernel of its own and a Dense sublayer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(HIDDEN, name="dense")

    def build(self, shape):
        self.dense.build(shape)
        self.kernel = self.add_weight(shape=(HIDDEN, HIDDEN), name="kernel")

    def call(self, x):
        return keras.ops.matmul(self.dense(x), self.kernel)

    def get_prunable_weights(self):
        return [self.kernel, self.dense.kernel]


@keras.saving.register_keras_serializable(package="test_models7")
class _Outer(keras.layers.Layer):
    """Holds a `_Block` that the model also calls directly."""

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = block
        self.proj = keras.layers.Dense(HIDDEN, name="proj")

    def build(self, shape):
        self.proj.build(shape)

    def call(self, x):
        return self.proj(self.block(x))


@keras.saving.register_keras_serializable(package="test_models7")
class _NestedChosen(keras.Model):
    def __init__(self, **kwargs):
        x = keras.Input((HIDDEN,))
        block = _Block(name="block")
        outer = _Outer(block, name="outer")
        super().__init__(x, block(outer(x)), **kwargs)

    def get_config(self):
        return {"name": self.name}


def test_layer_inside_a_wrapped_layer_keeps_its_sublayers():
    # Both `outer` and the `block` it holds are graph layers, each wrapped
    # (the block has a kernel of its own, so it is wrapped whole); the
    # block's Dense is the block's, not shared by two wrapped layers, so it
    # is not wrapped on its own (the first version of
    # `prune._shared_sublayers` counted `outer` as a second holder).
    keras.utils.set_random_seed(0)
    pruned = kp.prune_once(_NestedChosen(name="nested"), 0.5)
    got = sorted(
        (w.layer.name, sorted(v.path for v in w.pruned_weights))
        for w in pruning_wrappers(pruned)
    )
    assert got == [
        ("block", ["outer/block/dense/kernel", "outer/block/kernel"]),
        ("outer", ["outer/proj/kernel"]),
    ]


# ------------------------------------------ Keras-Hub's MaskedLMHead, untied


def _head_model(tied):
    from keras_hub.layers import MaskedLMHead

    hidden = keras.Input((SEQ, HIDDEN))
    positions = keras.Input((2,), dtype="int32")
    table = None
    if tied:
        table = keras.layers.ReversibleEmbedding(VOCAB, HIDDEN)
        table.build((None,))
    head = MaskedLMHead(
        vocabulary_size=VOCAB,
        token_embedding=table,
        activation=None,
        name="mlm_head",
    )
    return keras.Model([hidden, positions], head(hidden, positions))


def _head_inputs():
    rng = np.random.RandomState(1)
    return [
        rng.randn(BATCH, SEQ, HIDDEN).astype("float32"),
        np.tile(np.array([[1, 4]], "int32"), (BATCH, 1)),
    ]


def test_masked_lm_head_output_kernel_pruned_by_default():
    # ESMMaskedPLM: `MaskedLMHead` without a token embedding holds its own
    # `output_kernel (hidden, vocab)`, which raised UnsupportedLayerError
    # with the defaults. It is the LM head's projection: pruned, N:M along
    # `hidden` (what `matmul(x, output_kernel)` contracts).
    pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    model = _head_model(tied=False)
    x = _head_inputs()
    plan = {
        (r["weight"], r["pruned"], r["reason"])
        for r in kp.pruning_plan(kp.prune_low_magnitude(model))
    }
    assert ("output_kernel", True, "output projection (LM head)") in plan
    assert ("kernel", True, "kernel") in plan  # intermediate_dense
    assert ("output_bias", False, "bias: never pruned") in plan
    pruned = kp.prune_once(model, 0.5)
    got = {v.name: int(to_np(m).sum()) for _, v, m in pairs_of(pruned)}
    assert got == {
        "kernel": kp.kept_count(HIDDEN * HIDDEN, 0.5),
        "output_kernel": kp.kept_count(HIDDEN * VOCAB, 0.5),
    }
    for a, b in zip(outputs(kp.strip_pruning(pruned), x), outputs(pruned, x)):
        assert_same_outputs(a, b)
    nm = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    head = nm.get_layer("prune_low_magnitude_mlm_head").layer
    kernel = next(v for v in head.weights if v.name == "output_kernel")
    assert patterns.contracted_axes(head, kernel) == 0
    value = to_np(kernel)
    assert kp.is_pruned_m_by_n(value, (2, 4), axis=0)
    assert np.count_nonzero(value) == HIDDEN * VOCAB // 2


def test_masked_lm_head_tied_prunes_its_dense_and_the_table():
    # Tied to the token embedding, the head holds no output kernel: the
    # by-class default names only weights the layer has.
    pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    model = _head_model(tied=True)
    head = model.get_layer("mlm_head")
    assert registry._known_names(head) is None
    pruned = kp.prune_once(model, 0.5)
    got = sorted((v.name, int(to_np(m).sum())) for _, v, m in pairs_of(pruned))
    assert got == [
        ("embeddings", kp.kept_count(VOCAB * HIDDEN, 0.5)),
        ("kernel", kp.kept_count(HIDDEN * HIDDEN, 0.5)),
    ]
    x = _head_inputs()
    for a, b in zip(outputs(kp.strip_pruning(pruned), x), outputs(pruned, x)):
        assert_same_outputs(a, b)


# ------------------------------------- real Keras-Hub tasks (models=all only)


full_only = pytest.mark.skipif(not FULL, reason="KERAS_PRUNE_MODELS=all")


@full_only
@pytest.mark.parametrize(
    "name", ["roberta_masked_lm", "distil_bert_masked_lm", "esm_masked_plm"]
)
def test_real_masked_lm(name):
    pytest.importorskip("keras_hub")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from benchmarks import models7_sweep

    res = models7_sweep.run(name)
    assert res["default_wrap"] == "ok"
    assert res["exact_bad"] == []
    assert res["nm_ok"] == res["n_pruned"]
    assert res["global"]["kept"] == res["global"]["want"]
    assert res["strip_out_maxdiff"] == 0.0
    assert res["fit_step"] == 2 and res["fit_bad"] == []
    assert res["fit_strip_maxdiff"] == 0.0


# ------------------------------- a model whose own config does not round trip


class _BrokenConfigDense(keras.layers.Dense):
    """keras-hub 0.32's `LlamaTransformerDecoder`: `get_config()` reads an
    attribute `__init__` never set."""

    def get_config(self):
        return {**super().get_config(), "scale": self.rope_scaling_factor}


class _DropsAnArgument(keras.Model):
    """keras-hub 0.32's tied `LlamaCausalLM`: its config leaves out an
    argument (`tie_word_embeddings`) that changes its weights."""

    def __init__(self, bias=False, **kwargs):
        x = keras.Input((4,))
        y = _BrokenConfigDense(8, use_bias=bias, name="decoder")(x)
        super().__init__(x, keras.layers.Dense(2, name="head")(y), **kwargs)

    def get_config(self):
        return {"name": self.name}


def test_copy_error_names_the_config_that_does_not_round_trip():
    # Before: only "layer 'decoder' ... could not be re-created:
    # AttributeError ... rope_scaling_factor", the fallback's failure; the
    # cause to fix is the model's config (3 weights instead of 4).
    model = _DropsAnArgument(bias=True, name="drops")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback's warning
        with pytest.raises(ValueError) as info:
            kp.prune_low_magnitude(model)
    text = str(info.value)
    assert "Model 'drops' (_DropsAnArgument) could not be copied" in text
    assert "(ValueError: 3 weights instead of 4)" in text
    assert "rope_scaling_factor" in text
    assert isinstance(info.value, kp.integration.rewrite.LayerCopyError)


def test_report_lists_a_variable_two_layers_track_once():
    # SpectralNormalization tracks its layer's kernel as its own variable:
    # sparsity_report listed it twice (as `spectral_normalization/kernel`
    # and `dense/kernel`), doubling the report's totals.
    keras.utils.set_random_seed(0)
    x = keras.Input((HIDDEN,))
    h = keras.layers.SpectralNormalization(keras.layers.Dense(HIDDEN))(x)
    model = keras.Model(x, keras.layers.Dense(4)(h))
    pruned = kp.prune_once(model, 0.8, allocation="global")
    rows = [r for r in kp.sparsity_report(pruned, pattern=False) if r["pruned"]]
    assert sorted(r["params"] for r in rows) == [HIDDEN * 4, HIDDEN * HIDDEN]
    kept = sum(r["params"] - r["zeros"] for r in rows)
    assert kept == kp.kept_count(HIDDEN * (HIDDEN + 4), 0.8) == 19
