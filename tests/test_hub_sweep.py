"""Keras-Hub models beyond tests/test_models.py, pruned with the defaults.

Issue 17's "Done when": a separate run on further Keras-Hub models and
configurations finds no layer that blocks default pruning. Each model here
is built tiny from its constructor (1 layer, hidden 16, vocabulary 50;
nothing is downloaded; `preprocessor=None` for tasks) and checked, without
`fit`, on the backend of this process:

- `prune_low_magnitude(model)` with the defaults does not raise and keeps
  the class;
- `prune_once(model, 0.5)`: every pruned weight keeps exactly
  `kept_count(n, 0.5)` non-zeros; `pruning_plan` lists every float weight
  of the model with a reason, and no weight of rank >= 2 is left dense as
  an "unknown layer";
- `prune_once(model, 0.5, sparsity_m_by_n=(2, 4))`: every pruned weight
  is 2:4 along its contracted axes and not dense, or the plan warns;
- `strip_pruning`: same class, same number of weights, outputs equal to
  the pruned model's.

`KERAS_PRUNE_MODELS=all` runs every model below and adds, per model:
`allocation="global"` at 0.8 (no tensor collapses; the exact budget or the
guard's floor, reported), save and load of the stripped model (same
outputs; `generate()` for causal LMs), and two `fit` steps of the wrapped
model with `UpdatePruningStep`. docs/models.md ("Keras-Hub sweep") has the
table and the time it takes.
"""

import json
import os
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

VOCAB = 50
SEQ = 8
BATCH = 2
HIDDEN = 16
FFN = 32
CLASSES = 3
IMAGE = (16, 16, 3)

FULL = os.environ.get("KERAS_PRUNE_MODELS", "") == "all"


# ------------------------------------------------- registry (no keras-hub)


class _Tables(keras.layers.Layer):
    """A layer keras-prune does not know, holding only learned tables."""

    def build(self, _):
        self.position_embedding = self.add_weight(
            shape=(1, 5, 4), name="position_embedding"
        )
        self.register_tokens = self.add_weight(
            shape=(1, 3, 4), name="register_tokens"
        )
        self.relative_position_bias_table = self.add_weight(
            shape=(9, 2), name="relative_position_bias_table"
        )
        self.pos_embed = self.add_weight(shape=(1, 2, 2, 4), name="pos_embed")
        self.segment_encoding = self.add_weight(
            shape=(2, 2, 4), name="segment_encoding"
        )
        self.rel_pos_h = self.add_weight(shape=(3, 2), name="rel_pos_h")

    def call(self, x):
        return x + keras.ops.sum(self.position_embedding) * 0.0


class _Mixer(keras.layers.Layer):
    """A layer keras-prune does not know, holding a kernel."""

    def build(self, shape):
        self.mix = self.add_weight(shape=(shape[-1], shape[-1]), name="mix")

    def call(self, x):
        return keras.ops.matmul(x, self.mix)


class TinyExperts(keras.layers.Layer):
    """A mixture-of-experts bank: `(experts, in, out)` kernels, biases."""

    def build(self, shape):
        self.up = self.add_weight(shape=(3, shape[-1], 8), name="up")
        self.up_bias = self.add_weight(shape=(3, 8), name="up_bias")

    def call(self, x):
        y = keras.ops.einsum("bh,ehm->ebm", x, self.up)
        return keras.ops.sum(y + self.up_bias[:, None, :], axis=0)


class TinyMoEBlock(keras.layers.Layer):
    """Gemma4's `Gemma4MoEBlock`: the bank held by the block itself, with a
    per-expert scale, under another class name."""

    def build(self, shape):
        self.up = self.add_weight(shape=(3, shape[-1], 8), name="up")
        self.per_expert_scale = self.add_weight(
            shape=(3,), name="per_expert_scale"
        )

    def call(self, x):
        y = keras.ops.einsum("bh,ehm->ebm", x, self.up)
        return keras.ops.sum(y * self.per_expert_scale[:, None, None], axis=0)


def _model(*layers):
    x = keras.Input((4,))
    y = x
    for layer in layers:
        y = layer(y)
    return keras.Model(x, keras.layers.Dense(4)(y))


def test_unknown_layer_learned_tables_left_dense_with_reason():
    model = _model(_Tables())
    pruned = kp.prune_low_magnitude(model)  # does not raise
    assert len(pruning_wrappers(pruned)) == 1  # the Dense head only
    plan = {r["weight"]: r for r in kp.pruning_plan(pruned)}
    assert not plan["position_embedding"]["pruned"]
    assert (
        "position or relative embedding" in plan["position_embedding"]["reason"]
    )
    assert "learned tokens" in plan["register_tokens"]["reason"]
    assert "bias" in plan["relative_position_bias_table"]["reason"]
    for name in ("pos_embed", "segment_encoding", "rel_pos_h"):
        assert not plan[name]["pruned"]
        assert "position or relative embedding" in plan[name]["reason"]
    # Declared prunable, the table is pruned like any weight.
    kp.register_prunable_weights("_Tables", ["position_embedding"])
    try:
        again = kp.prune_once(model, 0.5)
        rows = {
            r["weight"]: r
            for r in kp.sparsity_report(again, pattern=False)
            if r["pruned"]
        }
        assert rows["position_embedding"]["zeros"] == 10
    finally:
        registry._REGISTERED.pop("_Tables")


def test_unknown_layer_kernel_still_raises():
    with pytest.raises(
        kp.UnsupportedLayerError, match=r"'_mixer'.*mix \(4, 4\)"
    ):
        kp.prune_low_magnitude(_model(_Mixer(name="_mixer")))


@pytest.mark.parametrize("bank", [TinyExperts, TinyMoEBlock])
def test_expert_bank_kernels_pruned_biases_skipped(bank):
    # Gemma4MoEBlock (its own (experts, in, out) bank) blocked default
    # pruning: only classes named *Experts were known as banks.
    model = _model(bank())
    plan = {r["weight"]: r for r in kp.pruning_plan(model)}
    assert plan["up"]["pruned"] and "mixture-of-experts" in plan["up"]["reason"]
    if bank is TinyExperts:
        assert not plan["up_bias"]["pruned"]
        assert plan["up_bias"]["reason"] == "bias: never pruned"
    else:
        assert not plan["per_expert_scale"]["pruned"]
    kp.prune_low_magnitude(model)  # does not raise
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    (wrapper,) = [
        w for w in pruning_wrappers(pruned) if isinstance(w.layer, bank)
    ]
    (mask,) = wrapper.masks
    kept = to_np(mask)
    # Along `in` (axis 1 = -2): 2 of every 4 inputs of each expert's output.
    assert (
        patterns.contracted_axes(wrapper.layer, wrapper.pruned_weights[0]) == -2
    )
    assert kp.is_pruned_m_by_n(kept.astype("float32"), (2, 4), axis=1)
    assert int(kept.sum()) == 3 * 8 * 2


# ----------------------------------------------------------- Keras-Hub models

keras_hub = pytest.importorskip("keras_hub")
from benchmarks import hub_sweep_extra as hub_extra  # noqa: E402


def _kh():
    return keras_hub.models


def _decoder(**kw):
    return dict(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=HIDDEN,
        intermediate_dim=FFN,
        **kw,
    )


def _encoder(**kw):
    return dict(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=HIDDEN,
        intermediate_dim=FFN,
        **kw,
    )


# Builders and inputs shared with `benchmarks.hub_sweep_extra` (its
# classifiers have the same 3 classes), at this file's sizes.
_task = hub_extra.task


def _filled(build):
    """`build`, with kernels keras-hub initialises to zeros (Gemma4's expert
    bank) given random values, as a trained model has them."""

    def filled():
        model = build()
        hub_extra.fill_zero_kernels(model)
        return model

    return filled


def _tokens(n=BATCH, **extra):
    return hub_extra.tokens(n, SEQ, VOCAB, **extra)


def _seq2seq(n=BATCH):
    return hub_extra.seq2seq(n, SEQ, VOCAB)


def _images(n=BATCH, shape=IMAGE):
    return hub_extra.images(n, shape)


# name -> (builder, inputs, kind). Kinds: causal_lm, seq2seq, classifier,
# backbone.
MODELS = {
    # Mixture of experts: *Experts banks of (experts, in, out) kernels.
    "mixtral_causal_lm": (
        _task(
            "MixtralCausalLM",
            "MixtralBackbone",
            **_decoder(num_experts=4, top_k=2),
        ),
        _tokens,
        "causal_lm",
    ),
    "gpt_oss_causal_lm": (
        _task(
            "GptOssCausalLM",
            "GptOssBackbone",
            **_decoder(num_experts=4, top_k=2, head_dim=8),
        ),
        _tokens,
        "causal_lm",
    ),
    "qwen_moe_causal_lm": (
        _task(
            "QwenMoeCausalLM",
            "QwenMoeBackbone",
            **_decoder(
                moe_intermediate_dim=16,
                shared_expert_intermediate_dim=32,
                num_experts=4,
                top_k=2,
            ),
        ),
        _tokens,
        "causal_lm",
    ),
    "qwen3_moe_causal_lm": (
        _task(
            "Qwen3MoeCausalLM",
            "Qwen3MoeBackbone",
            **_decoder(
                moe_intermediate_dim=16, num_experts=4, top_k=2, head_dim=8
            ),
        ),
        _tokens,
        "causal_lm",
    ),
    # Learned tokens and position tables in layers keras-prune does not know.
    "dinov2_backbone": (
        _task(
            None,
            "DINOV2Backbone",
            patch_size=4,
            num_layers=1,
            hidden_dim=HIDDEN,
            num_heads=2,
            intermediate_dim=FFN,
            num_register_tokens=2,
            use_swiglu_ffn=True,
            image_shape=IMAGE,
        ),
        lambda n=BATCH: {"images": _images(n)},
        "backbone",
    ),
    "deit_classifier": (
        _task(
            "DeiTImageClassifier",
            "DeiTBackbone",
            image_shape=IMAGE,
            patch_size=4,
            num_layers=1,
            num_heads=2,
            hidden_dim=HIDDEN,
            intermediate_dim=FFN,
        ),
        _images,
        "classifier",
    ),
    "deberta_v3_classifier": (
        _task(
            "DebertaV3TextClassifier",
            "DebertaV3Backbone",
            **_encoder(max_sequence_length=SEQ),
        ),
        _tokens,
        "classifier",
    ),
    # Other decoders.
    "falcon_causal_lm": (
        _task(
            "FalconCausalLM",
            "FalconBackbone",
            vocabulary_size=VOCAB,
            num_layers=1,
            num_attention_heads=2,
            hidden_dim=HIDDEN,
            intermediate_dim=FFN,
        ),
        _tokens,
        "causal_lm",
    ),
    "opt_causal_lm": (
        _task(
            "OPTCausalLM", "OPTBackbone", **_encoder(max_sequence_length=SEQ)
        ),
        _tokens,
        "causal_lm",
    ),
    "bloom_causal_lm": (
        _task("BloomCausalLM", "BloomBackbone", **_encoder()),
        _tokens,
        "causal_lm",
    ),
    "gpt_neox_causal_lm": (
        _task(
            "GPTNeoXCausalLM",
            "GPTNeoXBackbone",
            **_encoder(max_sequence_length=SEQ),
        ),
        _tokens,
        "causal_lm",
    ),
    "llama3_causal_lm": (
        _task("Llama3CausalLM", "Llama3Backbone", **_decoder()),
        _tokens,
        "causal_lm",
    ),
    "qwen3_causal_lm": (
        _task("Qwen3CausalLM", "Qwen3Backbone", **_decoder(head_dim=8)),
        _tokens,
        "causal_lm",
    ),
    # Encoders.
    "roberta_classifier": (
        _task(
            "RobertaTextClassifier",
            "RobertaBackbone",
            **_encoder(max_sequence_length=SEQ),
        ),
        _tokens,
        "classifier",
    ),
    "distil_bert_classifier": (
        _task(
            "DistilBertTextClassifier",
            "DistilBertBackbone",
            **_encoder(max_sequence_length=SEQ),
        ),
        _tokens,
        "classifier",
    ),
    "albert_classifier": (
        _task(
            "AlbertTextClassifier",
            "AlbertBackbone",
            embedding_dim=HIDDEN,
            **_encoder(max_sequence_length=SEQ),
        ),
        lambda n=BATCH: _tokens(n, segment_ids=np.zeros((n, SEQ), "int32")),
        "classifier",
    ),
    "f_net_classifier": (
        _task(
            "FNetTextClassifier",
            "FNetBackbone",
            vocabulary_size=VOCAB,
            num_layers=1,
            hidden_dim=HIDDEN,
            intermediate_dim=FFN,
            max_sequence_length=SEQ,
        ),
        lambda n=BATCH: {
            "token_ids": _tokens(n)["token_ids"],
            "segment_ids": np.zeros((n, SEQ), "int32"),
        },
        "classifier",
    ),
    "electra_backbone": (
        _task(
            None,
            "ElectraBackbone",
            vocab_size=VOCAB,
            num_layers=1,
            num_heads=2,
            hidden_dim=HIDDEN,
            embedding_dim=HIDDEN,
            intermediate_dim=FFN,
            max_sequence_length=SEQ,
        ),
        lambda n=BATCH: _tokens(n, segment_ids=np.zeros((n, SEQ), "int32")),
        "backbone",
    ),
    "roformer_v2_classifier": (
        _task(
            "RoformerV2TextClassifier",
            "RoformerV2Backbone",
            head_size=8,
            **_encoder(),
        ),
        lambda n=BATCH: _tokens(n, segment_ids=np.zeros((n, SEQ), "int32")),
        "classifier",
    ),
    "esm_classifier": (
        _task("ESMProteinClassifier", "ESMBackbone", **_encoder()),
        lambda n=BATCH: {"token_ids": _tokens(n)["token_ids"]},
        "classifier",
    ),
    # Encoder-decoders.
    "t5_seq2seq": (
        _task("T5Seq2SeqLM", "T5Backbone", **_encoder()),
        _seq2seq,
        "seq2seq",
    ),
    "bart_seq2seq": (
        _task(
            "BartSeq2SeqLM",
            "BartBackbone",
            **_encoder(max_sequence_length=SEQ),
        ),
        _seq2seq,
        "seq2seq",
    ),
    # Gemma3n (AltUp, Laurel, per-layer inputs; its text model is held by
    # its embedding processor) and Gemma4's mixture of experts (Session 12
    # of docs/models.md; benchmarks/hub_sweep_extra.py has the others).
    "gemma3n_causal_lm": (
        lambda: _kh().Gemma3nCausalLM(
            backbone=_kh().Gemma3nBackbone(
                text_vocab_size=VOCAB,
                text_hidden_size=HIDDEN,
                num_hidden_layers=1,
                pad_token_id=0,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=8,
                intermediate_size=[FFN],
                hidden_activation="gelu_approximate",
                layer_types=["full_attention"],
                sliding_window=4,
                rope_theta=10000.0,
                max_position_embeddings=SEQ,
                vocab_size_per_layer_input=VOCAB,
                hidden_size_per_layer_input=8,
                altup_num_inputs=2,
                laurel_rank=4,
            ),
            preprocessor=None,
        ),
        _tokens,
        "causal_lm",
    ),
    "gemma4_moe_causal_lm": (
        _filled(
            _task(
                "Gemma4CausalLM",
                "Gemma4Backbone",
                image_size=16,
                head_dim=8,
                sliding_window_size=16,
                sliding_window_pattern=2,
                attention_logit_soft_cap=None,
                final_logit_soft_cap=None,
                enable_moe_block=True,
                num_experts=4,
                expert_intermediate_dim=16,
                num_experts_per_token=2,
                **_decoder(),
            )
        ),
        lambda n=BATCH: _tokens(
            n, position_ids=np.tile(np.arange(SEQ, dtype="int32"), (n, 1))
        ),
        "causal_lm",
    ),
    # Vision.
    "vgg_classifier": (
        _task(
            "VGGImageClassifier",
            "VGGBackbone",
            task_kw=dict(pooling_hidden_dim=16),
            stackwise_num_repeats=[1, 1],
            stackwise_num_filters=[8, 16],
            image_shape=(32, 32, 3),
        ),
        lambda n=BATCH: _images(n, (32, 32, 3)),
        "classifier",
    ),
    "swin_backbone": (
        _task(
            None,
            "SwinTransformerBackbone",
            image_shape=(32, 32, 3),
            embed_dim=16,
            depths=(1, 1),
            num_heads=(2, 2),
            window_size=4,
        ),
        lambda n=BATCH: _images(n, (32, 32, 3)),
        "backbone",
    ),
}


def test_sublayer_called_directly_gets_one_mask():
    # OPT's TokenAndPositionEmbedding holds the ReversibleEmbedding that
    # OPTCausalLM also calls for its output projection: both were wrapped,
    # two masks on one weight, and allocation='global' counted it twice
    # (kept 566 of 2,848 weights at 0.8 instead of kept_count = 570).
    model, x, _ = dense("opt_causal_lm")
    pruned = kp.prune_once(model, 0.8, allocation="global")
    pairs = [
        (w, v, m)
        for w in pruning_wrappers(pruned)
        for v, m in zip(w.pruned_weights, w.masks)
    ]
    assert len({id(v) for _, v, _ in pairs}) == len(pairs)
    assert "embeddings" not in [w.layer.name for w, _, _ in pairs]
    total = sum(int(np.prod(v.shape)) for _, v, _ in pairs)
    assert total == 2848
    kept = sum(int(to_np(m).sum()) for _, _, m in pairs)
    assert kept == kp.kept_count(total, 0.8)
    for a, b in zip(outputs(kp.strip_pruning(pruned), x), outputs(pruned, x)):
        assert_same_outputs(a, b)


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _TokenAndPosition(keras.layers.Layer):
    """BLIP-2's `BLIP2OPTEmbeddings`: a token embedding (also the LM head)
    and a position embedding in one container."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = keras.layers.ReversibleEmbedding(
            VOCAB, 8, name="token_embedding"
        )
        self.position_embedding = keras.layers.Embedding(
            SEQ, 8, name="position_embedding"
        )

    def build(self, shape):
        self.token_embedding.build(shape)
        self.position_embedding.build(shape)

    def call(self, ids):
        positions = keras.ops.arange(keras.ops.shape(ids)[-1])
        return self.token_embedding(ids) + self.position_embedding(positions)


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _TiedLM(keras.Model):
    """A Functional model described by its constructor, as Keras-Hub tasks
    are: it calls the container, then the token embedding in it directly."""

    def __init__(self, **kwargs):
        ids = keras.Input((SEQ,), dtype="int32")
        embeddings = _TokenAndPosition(name="embeddings")
        hidden = keras.layers.Dense(8, name="ffn")(embeddings(ids))
        logits = embeddings.token_embedding(hidden, reverse=True)
        super().__init__(ids, logits, **kwargs)
        self.embeddings = embeddings

    def get_config(self):
        return {"name": self.name}


def test_container_and_its_directly_called_sublayer_one_mask(tmp_path):
    # BLIP2CausalLM: BLIP2OPTEmbeddings (token + position embedding) and the
    # token embedding it holds (called directly as the LM head) were both
    # wrapped, with two masks on the token embedding: allocation='global'
    # counted it twice (the tiny BLIP-2 kept 548 of 2,752 weights at 0.8
    # instead of kept_count = 550), and the stripped model (both masks
    # applied) computed something else than the pruned one. Now the
    # container's wrapper leaves that weight to the sublayer's wrapper.
    keras.utils.set_random_seed(0)
    model = _TiedLM(name="tied_lm")
    x = np.random.RandomState(0).randint(0, VOCAB, (BATCH, SEQ))
    x = x.astype("int32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the global guard's floor
        pruned = kp.prune_once(model, 0.8, allocation="global")
    pairs = [
        (w.layer.name, v, m)
        for w in pruning_wrappers(pruned)
        for v, m in zip(w.pruned_weights, w.masks)
    ]
    assert sorted((n, v.path) for n, v, _ in pairs) == [
        ("embeddings", "embeddings/position_embedding/embeddings"),
        ("ffn", "ffn/kernel"),
        ("token_embedding", "embeddings/token_embedding/embeddings"),
    ]
    total = sum(int(np.prod(v.shape)) for _, v, _ in pairs)
    assert total == VOCAB * 8 + SEQ * 8 + 8 * 8
    kept = sum(int(to_np(m).sum()) for _, _, m in pairs)
    assert kept == kp.kept_count(total, 0.8)
    # The container calls the token embedding's wrapper.
    inner = pruned.embeddings.layer.token_embedding
    assert isinstance(inner, kp.PruneLowMagnitude)
    want = outputs(pruned, x)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert sorted(
        (w.layer.name, len(w.masks)) for w in pruning_wrappers(loaded)
    ) == [("embeddings", 1), ("ffn", 1), ("token_embedding", 1)]
    for a, b in zip(outputs(loaded, x), want):
        assert_same_outputs(a, b)
    stripped = kp.strip_pruning(pruned)
    assert pruning_wrappers(stripped) == []
    assert type(stripped.embeddings.token_embedding).__name__ == (
        "ReversibleEmbedding"
    )
    for a, b in zip(outputs(stripped, x), want):
        assert_same_outputs(a, b)
    nonzero = sum(int(np.count_nonzero(to_np(v))) for _, v, _ in pairs)
    assert nonzero == kept
    # Trained with the callback: the nested wrapper's step and masks update.
    wrapped = kp.prune_low_magnitude(_TiedLM(name="tied_lm"))
    wrapped.compile("sgd", "sparse_categorical_crossentropy")
    y = np.zeros((BATCH, SEQ), "int32")
    wrapped.fit(x, y, epochs=2, verbose=0, callbacks=[kp.UpdatePruningStep()])
    for w in pruning_wrappers(wrapped):
        assert int(to_np(w.pruning_step)) == 2
        for v, m in zip(w.pruned_weights, w.masks):
            n = int(np.prod(v.shape))
            assert int(to_np(m).sum()) == kp.kept_count(n, 0.5), v.path


class _BrokenConfigDense(keras.layers.Dense):
    """keras-hub 0.32's `LlamaTransformerDecoder`: `get_config()` reads an
    attribute `__init__` never set."""

    def get_config(self):
        return {**super().get_config(), "scale": self.rope_scaling_factor}


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _BrokenConfigModel(keras.Model):
    """Described by its constructor, as Keras-Hub models are: it saves
    although one of its layers cannot give its config."""

    def __init__(self, **kwargs):
        x = keras.Input((4,))
        y = _BrokenConfigDense(8, name="decoder")(x)
        super().__init__(x, keras.layers.Dense(2, name="head")(y), **kwargs)

    def get_config(self):
        return {"name": self.name}


def test_pruned_model_saves_without_its_layers_configs(tmp_path):
    # A pruned LlamaCausalLM (wrappers in it) did not save: the wrapper's
    # config serialised its layer's, and LlamaTransformerDecoder.get_config
    # raises AttributeError ('rope_scaling_factor'); the dense model saves.
    keras.utils.set_random_seed(0)
    model = _BrokenConfigModel(name="broken_config")
    with pytest.raises(AttributeError):
        model.get_layer("decoder").get_config()
    pruned = kp.prune_once(model, 0.5)
    x = np.random.RandomState(0).standard_normal((2, 4)).astype("float32")
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded).__name__ == "_BrokenConfigModel"
    assert sorted(w.layer.name for w in pruning_wrappers(loaded)) == [
        "decoder",
        "head",
    ]
    for w in pruning_wrappers(loaded):
        (mask,) = w.masks
        n = int(np.prod(mask.shape))
        assert int(to_np(mask).sum()) == kp.kept_count(n, 0.5)
    assert_same_outputs(to_np(loaded(x)), to_np(pruned(x)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_layer_in_float32_model_same_when_stripped(
    dtype, tmp_path
):
    # StableDiffusion3's float16 CLIP encoders (keras-hub's test config on
    # TensorFlow and torch): the wrapper took the default float32 policy,
    # its `__call__` cast the inputs to float32, and the float16 layer then
    # computed in float32 when pruned and in float16 once stripped: the
    # stripped model's images differed by up to 1.7e-3. The wrapper now
    # takes its layer's dtype policy.
    keras.utils.set_random_seed(0)
    x_in = keras.Input((16,))
    low = keras.layers.Dense(16, dtype=dtype, name="low")(x_in)
    model = keras.Model(x_in, keras.layers.Dense(4, name="head")(low))
    pruned = kp.prune_once(model, 0.5)
    wrapper = pruned.get_layer("prune_low_magnitude_low")
    assert wrapper.dtype_policy.name == dtype
    assert wrapper.output.dtype == dtype
    x = np.random.RandomState(0).standard_normal((3, 16)).astype("float32")
    want = to_np(pruned(x))
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("prune_low_magnitude_low").dtype_policy.name == (
        dtype
    )
    np.testing.assert_array_equal(to_np(loaded(x)), want)
    np.testing.assert_array_equal(to_np(kp.strip_pruning(pruned)(x)), want)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_tied_embedding_head_under_mixed_precision_same_when_stripped(
    policy, tmp_path
):
    # GPT-2's causal LM under a mixed policy (docs/models.md, Session 13):
    # the LM head is the tied `ReversibleEmbedding(reverse=True)`, whose
    # logits are computed in float32 from the float32 table (Embedding sets
    # `autocast = False`). The wrapper autocast, so the pruned model read
    # the table in bfloat16 (float16) and its logits differed from the
    # stripped and dense model's. The wrapper now takes its layer's
    # `autocast`.
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        ids = keras.Input((6,), dtype="int32")
        emb = keras.layers.ReversibleEmbedding(32, 16, name="tokens")
        h = keras.layers.Dense(16, name="mix")(emb(ids))
        model = keras.Model(ids, emb(h, reverse=True))
        pruned = kp.prune_once(model, 0.5)
        wrapper = pruned.get_layer("prune_low_magnitude_tokens")
        assert wrapper.autocast is False
        assert pruned.get_layer("prune_low_magnitude_mix").autocast is True
        x = np.random.RandomState(0).randint(0, 32, (2, 6)).astype("int32")
        want = to_np(pruned(x))
        assert want.dtype == np.float32
        path = str(tmp_path / "pruned.keras")
        pruned.save(path)
        loaded = keras.saving.load_model(path)
        np.testing.assert_array_equal(to_np(loaded(x)), want)
        stripped = kp.strip_pruning(pruned)
        np.testing.assert_array_equal(to_np(stripped(x)), want)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_m_by_n_one_channel_per_group_along_the_window():
    # keras.applications.ConvNeXtTiny's depthwise convolutions are
    # Conv2D(groups=channels): kernel (7, 7, 1, 96). N:M along the input
    # channels (one per group) could prune nothing, and sparsity_m_by_n=
    # (2, 4) raised on the whole model. Such kernels (and one-channel
    # stems) are grouped along the axes their product sums over.
    keras.utils.set_random_seed(0)
    x = keras.Input((9, 9, 8))
    y = keras.layers.Conv2D(8, 7, groups=8, padding="same", name="dw")(x)
    y = keras.layers.Conv2D(1, 1, name="to_one")(y)
    model = keras.Model(x, keras.layers.Conv2D(4, 3, name="stem")(y))
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    got = {}
    for owner, v, value in masked(pruned):
        axis = patterns.contracted_axes(owner, v)
        assert kp.is_pruned_m_by_n(value, (2, 4), axis=axis), owner.name
        per_out = np.count_nonzero(value.reshape(-1, value.shape[-1]), axis=0)
        got[owner.name] = (axis, sorted(set(per_out.tolist())))
    # 49 = 12 groups of 4 (2 kept each) + 1; 9 = 2 groups + 1; 8 = 2 groups.
    assert got == {
        "dw": ((0, 1, 2), [25]),
        "to_one": (-2, [4]),
        "stem": ((0, 1, 2), [5]),
    }


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _ScaledEmbedding(keras.layers.Layer):
    """Gemma3n's `Gemma3nTextScaledWordEmbedding`: an `Embedding` inside."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(VOCAB, 8, name="embedding")

    def build(self, shape):
        self.embedding.build(shape)

    def call(self, ids):
        return self.embedding(ids) * 1.5


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _SharedText(keras.layers.Layer):
    """Gemma3n's `Gemma3nTextModel`: called by the graph, held by two other
    layers that call its sublayer and its methods and read its table."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed_tokens = _ScaledEmbedding(name="embed_tokens")
        self.proj = keras.layers.Dense(8, name="proj")

    def build(self, shape):
        self.embed_tokens.build((None, SEQ))
        self.proj.build(shape)

    def per_layer_inputs(self, ids):  # a method its holder calls
        return self.embed_tokens(ids) * 0.5

    def reverse(self, hidden):  # the tied LM head: reads the table
        table = self.embed_tokens.embedding.embeddings
        return keras.ops.matmul(hidden, keras.ops.transpose(table))

    def call(self, hidden):
        return self.proj(hidden)


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _Processor(keras.layers.Layer):
    """Gemma3n's `Gemma3nMultimodalEmbeddingProcessor`."""

    def __init__(self, text, **kwargs):
        super().__init__(**kwargs)
        self.text = text

    def build(self, shape):
        pass  # built by the model

    def call(self, ids):
        return self.text.embed_tokens(ids) + self.text.per_layer_inputs(ids)


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _Head(keras.layers.Layer):
    def __init__(self, text, **kwargs):
        super().__init__(**kwargs)
        self.text = text

    def build(self, shape):
        pass  # built by the model

    def call(self, hidden):
        return self.text.reverse(hidden)


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _SharedLM(keras.Model):
    """A Keras-Hub-like task (described by its constructor)."""

    def __init__(self, **kwargs):
        ids = keras.Input((SEQ,), dtype="int32")
        text = _SharedText(name="text")
        hidden = text(_Processor(text, name="processor")(ids))
        logits = _Head(text, name="head")(hidden)
        super().__init__(ids, logits, **kwargs)
        self.text = text

    def get_config(self):
        return {"name": self.name}


def test_layer_held_by_other_layers_prunes_its_sublayers(tmp_path):
    # Keras-Hub's Gemma3nCausalLM: the backbone calls its Gemma3nTextModel,
    # which its embedding processor also holds and uses beyond a call
    # (`language_model.embed_tokens(ids)`, `get_per_layer_inputs(...)`), and
    # `generate()` reads `embed_tokens.embedding.embeddings` for the tied LM
    # head. The text model was wrapped whole and swapped in its holders:
    # prune_once raised AttributeError ('PruneLowMagnitude' object has no
    # attribute 'embed_tokens', then 'embedding'). Now its sublayers are
    # wrapped, a wrapper shows its layer's attributes, and prune_once
    # stores the pruned weights as zeros, so the table read directly is the
    # pruned one.
    keras.utils.set_random_seed(0)
    model = _SharedLM(name="shared_lm")
    x = np.random.RandomState(0).randint(0, VOCAB, (BATCH, SEQ))
    x = x.astype("int32")
    kp.prune_low_magnitude(_SharedLM(name="shared_lm"))  # does not raise
    pruned = kp.prune_once(model, 0.5)
    assert sorted(w.layer.name for w in pruning_wrappers(pruned)) == [
        "embed_tokens",
        "proj",
    ]
    assert isinstance(pruned.text, _SharedText)
    assert isinstance(pruned.text.embed_tokens, kp.PruneLowMagnitude)
    table = pruned.text.embed_tokens.embedding.embeddings  # through it
    (mask,) = pruned.text.embed_tokens.masks
    assert int(np.count_nonzero(to_np(table))) == kp.kept_count(VOCAB * 8, 0.5)
    np.testing.assert_array_equal(to_np(table) != 0, to_np(mask) != 0)
    with pytest.raises(AttributeError, match="nor has its layer 'proj'"):
        getattr(pruned.text.proj, "no_such_attribute")  # noqa: B009
    want = outputs(pruned, x)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert sorted(w.layer.name for w in pruning_wrappers(loaded)) == [
        "embed_tokens",
        "proj",
    ]
    for a, b in zip(outputs(loaded, x), want):
        assert_same_outputs(a, b)
    stripped = kp.strip_pruning(pruned)
    assert pruning_wrappers(stripped) == []
    assert isinstance(stripped.text.embed_tokens, _ScaledEmbedding)
    for a, b in zip(outputs(stripped, x), want):
        assert_same_outputs(a, b)
    # Trained with the callback, every path sees the pruned weights.
    wrapped = kp.prune_low_magnitude(_SharedLM(name="shared_lm"))
    wrapped.compile("sgd", "sparse_categorical_crossentropy")
    y = np.zeros((BATCH, SEQ), "int32")
    wrapped.fit(x, y, epochs=2, verbose=0, callbacks=[kp.UpdatePruningStep()])
    for w in pruning_wrappers(wrapped):
        assert int(to_np(w.pruning_step)) == 2
        for v, m in zip(w.pruned_weights, w.masks):
            n = int(np.prod(v.shape))
            assert int(to_np(m).sum()) == kp.kept_count(n, 0.5), v.path
            assert int(np.count_nonzero(to_np(v))) <= kp.kept_count(n, 0.5)
    assert_same_outputs(
        outputs(kp.strip_pruning(wrapped), x)[0], outputs(wrapped, x)[0]
    )


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _Encoder(keras.layers.Layer):
    """SAM3's `SAM3TextEncoder`: a layer given to the model's constructor."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(8, name="dense")

    def build(self, shape):
        self.dense.build(shape)

    def call(self, x, training=None):
        return self.dense(x)

    def compute_output_spec(self, x):  # takes no `training`, as SAM3's
        return keras.KerasTensor(x.shape[:-1] + (8,), x.dtype)


@keras.saving.register_keras_serializable(package="test_hub_sweep")
class _EncoderModel(keras.Model):
    """SAM3's `SAM3PromptableConceptBackbone`: its config holds a layer."""

    def __init__(self, encoder, **kwargs):
        x = keras.Input((4,))
        y = keras.layers.Dense(2, name="head")(encoder(x))
        super().__init__(x, y, **kwargs)
        self.encoder = encoder

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.layers.serialize(self.encoder),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.layers.deserialize(config["encoder"])
        return cls(**config)


def test_model_config_holding_a_pruned_layer_reloads(tmp_path):
    # SAM3PromptableConceptBackbone serializes its encoders in its config:
    # pruned, its config serialized the wrapper that stood in for the
    # `SAM3TextEncoder`, so loading built the backbone with a wrapper as
    # its encoder, wrapped it again, and failed. The dense record now holds
    # the layers' own configs.
    keras.utils.set_random_seed(0)
    model = _EncoderModel(_Encoder(name="encoder"), name="encoder_model")
    pruned = kp.prune_once(model, 0.5)
    assert isinstance(pruned.encoder, kp.PruneLowMagnitude)
    # The dense record holds the dense layer's config, not the wrapper's.
    dense_record = json.dumps(pruned.get_config()["base"])
    assert "PruneLowMagnitude" not in dense_record
    assert '"class_name": "_Encoder"' in dense_record
    # A wrapper called symbolically passes its layer's own
    # compute_output_spec only the arguments it takes.
    symbolic = kp.PruneLowMagnitude(_Encoder())(keras.Input((4,)))
    assert tuple(symbolic.shape) == (None, 8)
    x = np.random.RandomState(0).standard_normal((2, 4)).astype("float32")
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded).__name__ == "_EncoderModel"
    assert sorted(w.layer.name for w in pruning_wrappers(loaded)) == [
        "encoder",
        "head",
    ]
    assert isinstance(loaded.encoder.layer, _Encoder)
    for w in pruning_wrappers(loaded):
        (mask,) = w.masks
        n = int(np.prod(mask.shape))
        assert int(to_np(mask).sum()) == kp.kept_count(n, 0.5)
    assert_same_outputs(to_np(loaded(x)), to_np(pruned(x)))


# CI: the models whose layers the sweep found blocking (MoE banks, learned
# tokens and position tables) plus an encoder-decoder; the rest with
# KERAS_PRUNE_MODELS=all.
CI = (
    "mixtral_causal_lm",
    "dinov2_backbone",
    "deberta_v3_classifier",
    "t5_seq2seq",
)


def cases(names=None):
    out = []
    for name in names or MODELS:
        marks = []
        if not FULL and name not in CI:
            marks = [pytest.mark.skip(reason="KERAS_PRUNE_MODELS=all runs it")]
        out.append(pytest.param(name, marks=marks, id=name))
    return out


_DENSE = {}


def dense(name):
    """The model `name`, built once per module, and its inputs."""
    if name not in _DENSE:
        keras.utils.set_random_seed(0)
        builder, inputs, kind = MODELS[name]
        model = builder()
        _DENSE[name] = (model, inputs(), kind)
    return _DENSE[name]


def outputs(model, x):
    return [to_np(t) for t in keras.tree.flatten(model(x, training=False))]


def masked(pruned):
    """(owner layer, variable, masked value) of every pruned weight."""
    out = []
    for w in pruning_wrappers(pruned):
        for v, m in zip(w.pruned_weights, w.masks):
            owner = registry.owner_of(w.layer, v)
            out.append((owner, v, np.where(to_np(m), to_np(v), 0)))
    return out


def _effective_rank(shape):
    return sum(1 for d in shape if d > 1)


@pytest.mark.parametrize("name", cases())
def test_default_wrap(name):
    model, _, _ = dense(name)
    pruned = kp.prune_low_magnitude(model)  # no skip_unsupported
    assert pruning_wrappers(pruned)
    assert type(pruned).__name__ == type(model).__name__


@pytest.mark.parametrize("name", cases())
def test_prune_once_exact_and_plan(name):
    model, _, _ = dense(name)
    pruned = kp.prune_once(model, 0.5)
    rows = [r for r in kp.sparsity_report(pruned, pattern=False) if r["pruned"]]
    assert rows
    got = {(r["layer"], r["weight"]): r["params"] - r["zeros"] for r in rows}
    want = {
        (r["layer"], r["weight"]): kp.kept_count(r["params"], 0.5) for r in rows
    }
    assert got == want
    plan = kp.pruning_plan(pruned)
    # Every float weight of the model is in the plan, with a reason.
    floats = [v for v in model.weights if "float" in str(v.dtype)]
    assert len(plan) == len({id(v) for v in floats})
    assert all(r["reason"] for r in plan)
    assert sum(r["pruned"] for r in plan) == len(rows)
    # No weight of rank >= 2 is left dense for want of knowing its layer.
    unknown = [
        (r["layer"], r["weight"])
        for r in plan
        if not r["pruned"]
        and _effective_rank(r["shape"]) >= 2
        and "unknown layer" in r["reason"]
    ]
    assert not unknown


@pytest.mark.parametrize("name", cases())
def test_m_by_n_along_contracted_axes(name):
    model, _, _ = dense(name)
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    warned = {
        (r["layer"], r["weight"])
        for r in kp.pruning_plan(pruned)
        if "WARNING" in r["reason"]
    }
    bad = []
    for owner, v, value in masked(pruned):
        axis = patterns.contracted_axes(owner, v)
        ok = kp.is_pruned_m_by_n(value, (2, 4), axis=axis)
        if not (ok and np.count_nonzero(value) < value.size):
            if (owner.name, v.name) not in warned:
                bad.append((owner.name, v.name, tuple(v.shape), axis))
    assert not bad


@pytest.mark.parametrize("name", cases())
def test_strip_keeps_class_and_outputs(name):
    model, x, _ = dense(name)
    pruned = kp.prune_once(model, 0.5)
    want = outputs(pruned, x)
    stripped = kp.strip_pruning(pruned)
    assert type(stripped) is type(model)
    assert len(stripped.weights) == len(model.weights)
    got = outputs(stripped, x)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_same_outputs(a, b)


# ------------------------------------ full sweep (KERAS_PRUNE_MODELS=all)

full_only = pytest.mark.skipif(not FULL, reason="KERAS_PRUNE_MODELS=all")

# keras-hub 0.32's Gemma3nCausalLM holds a constant copy of its tied
# embedding table for its LM head (read eagerly at construction): the
# dense model reloaded from its own file computes other logits (JAX and
# TensorFlow). Its `generate()` reads the variable and is compared.
RELOAD_DIFFERS_DENSE = {"gemma3n_causal_lm"}


@full_only
@pytest.mark.parametrize("name", list(MODELS))
def test_global_never_collapses(name):
    model, _, _ = dense(name)
    pruned = kp.prune_once(model, 0.8, allocation="global")
    rows = [r for r in kp.sparsity_report(pruned, pattern=False) if r["pruned"]]
    assert not [r for r in rows if r["zeros"] == r["params"]]
    total = sum(r["params"] for r in rows)
    kept = sum(r["params"] - r["zeros"] for r in rows)
    if kept != kp.kept_count(total, 0.8):
        # Only where the guard holds tensors at their floor, and says so.
        assert kept > kp.kept_count(total, 0.8)
        assert any("guard" in r["reason"] for r in kp.pruning_plan(pruned))


@full_only
@pytest.mark.parametrize("name", list(MODELS))
def test_stripped_saves_and_reloads(name, tmp_path):
    model, x, kind = dense(name)
    stripped = kp.strip_pruning(kp.prune_once(model, 0.5))
    path = str(tmp_path / f"{name}.keras")
    stripped.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    if name not in RELOAD_DIFFERS_DENSE:
        for a, b in zip(outputs(loaded, x), outputs(stripped, x)):
            assert_same_outputs(a, b)
    if kind == "causal_lm":
        mask = np.zeros((1, SEQ), "int32")
        mask[:, :3] = 1
        prompt = {
            "token_ids": np.full((1, SEQ), 3, "int32") * mask,
            "padding_mask": mask,
        }
        ids = []
        for m in (stripped, loaded):
            m.compile(sampler="greedy")
            ids.append(
                to_np(m.generate(prompt, stop_token_ids=None)["token_ids"])
            )
        np.testing.assert_array_equal(ids[0], ids[1])
        np.testing.assert_array_equal(ids[0][:, :3], 3)


@full_only
@pytest.mark.parametrize("name", list(MODELS))
def test_wrapped_trains_with_update_pruning_step(name):
    model, x, kind = dense(name)
    pruned = kp.prune_low_magnitude(model)
    rng = np.random.default_rng(1)
    if kind == "backbone":
        y = keras.tree.map_structure(
            lambda t: np.zeros(t.shape, "float32"), pruned(x, training=False)
        )
        pruned.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    else:  # the task's own loss (sparse categorical cross-entropy)
        n = BATCH
        if kind == "classifier":
            y = rng.integers(0, CLASSES, (n,)).astype("int32")
        else:
            y = rng.integers(1, VOCAB, (n, SEQ)).astype("int32")
        pruned.compile(optimizer=keras.optimizers.Adam(1e-3))
    pruned.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    assert int(to_np(kp.pruning_step(pruned))) == 2
    for r in kp.sparsity_report(pruned, pattern=False):
        if r["pruned"]:
            assert r["params"] - r["zeros"] == kp.kept_count(r["params"], 0.5)


@pytest.mark.parametrize(
    "build, layer_class, dense_weights",
    [
        (
            lambda: keras_hub.models.Qwen3_5Backbone(
                vocabulary_size=50,
                num_layers=1,  # one linear-attention (gated delta-net) layer
                num_query_heads=2,
                num_key_value_heads=1,
                head_dim=8,
                hidden_dim=16,
                intermediate_dim=32,
                linear_num_key_heads=2,
                linear_num_value_heads=2,
                linear_key_head_dim=8,
                linear_value_head_dim=8,
            ),
            "Qwen3_5GatedDeltaNet",
            {"conv1d_kernel"},
        ),
        (
            lambda: keras_hub.models.RWKV7Backbone(
                hidden_size=16,
                head_size=8,
                num_layers=1,
                vocabulary_size=50,
                intermediate_dim=32,
                gate_lora=4,
                mv_lora=4,
                aaa_lora=4,
                decay_lora=4,
            ),
            "RWKV7TimeMix",
            {"w1", "w2", "a1", "a2", "g1", "g2", "r_k"},
        ),
    ],
    ids=["qwen3_5", "rwkv7"],
)
def test_recurrent_mixers_prune_their_projections(
    build, layer_class, dense_weights
):
    """The mixers' own small weights are left dense with a reason (they
    blocked default pruning); their Dense projections are pruned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RWKV7: no rwkv_ops kernels
        model = build()
    plan = kp.pruning_plan(model)
    reason = registry.DENSE_BY_DEFAULT[layer_class]
    mixer = [r for r in plan if r["reason"] == reason]
    assert {r["weight"] for r in mixer if len(r["shape"]) >= 2} == (
        dense_weights
    )
    assert not any(r["pruned"] for r in mixer)
    assert sum(r["pruned"] for r in plan) >= 4  # the projections
    kp.prune_low_magnitude(model)  # does not raise
