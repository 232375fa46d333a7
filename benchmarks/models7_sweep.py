"""Keras-Hub tasks and configurations the earlier sweeps did not build.

docs/models.md, section 11 (models7). `hub_sweep.py` wraps each backbone in
its main task and `hub_sweep_extra.py` adds the models that harness did not
reach; this script builds, from their constructors (nothing is
downloaded; `preprocessor=None`), the other task classes (every MaskedLM
and TextEmbedder, `Qwen3_5MoeCausalLM`, `SmolLMCausalLM`, `Qwen2CausalLM`,
`Llama3CausalLM`) and non-default configurations (untied or tied
embeddings, one key-value head, sliding windows, dropout, `bfloat16` and
`float16` variables). Each runs `hub_sweep_extra.run` (default wrap, exact
`prune_once`, a plan row per weight, pruned and stripped save/load, strip
keeps class and outputs, 2:4, global 0.8, and `generate()` of the 2:4
causal LM equal to its stripped model's), plus 2 `fit` steps with
`UpdatePruningStep` (exact counts in the stored weights after the steps).

Usage:

    KERAS_BACKEND=jax python -m benchmarks.models7_sweep --out /tmp/m7.jsonl
    KERAS_BACKEND=jax python -m benchmarks.models7_sweep --out /tmp/m7.jsonl \
        --only bert_masked_lm,qwen_untied
"""

import argparse
import json
import time
import traceback
import warnings

import keras
import keras_hub  # noqa: F401 - before hub_sweep's stub of grain (fit)
import numpy as np

import keras_prune as kp
from benchmarks import hub_sweep
from benchmarks import hub_sweep_extra as extra
from benchmarks.hub_sweep_extra import FFN
from benchmarks.hub_sweep_extra import SEQ
from benchmarks.hub_sweep_extra import VOCAB
from benchmarks.hub_sweep_extra import H
from benchmarks.hub_sweep_extra import _enc
from benchmarks.hub_sweep_extra import task
from keras_prune.integration.strip import pruning_wrappers


def inputs_for(model, n=2):
    """A batch for `model` from the names of its inputs."""
    return inputs_for_names(model.input, n)


def inputs_for_names(names, n=2):
    """A batch of `n` for inputs with these names."""
    rng = np.random.default_rng(0)
    out = {}
    for name in names:
        if name in ("token_ids", "encoder_token_ids", "decoder_token_ids"):
            out[name] = rng.integers(1, VOCAB, (n, SEQ)).astype("int32")
        elif "padding_mask" in name:
            out[name] = np.ones((n, SEQ), "int32")
        elif name == "segment_ids":
            out[name] = np.zeros((n, SEQ), "int32")
        elif name == "mask_positions":
            out[name] = np.tile(np.array([1, 3], "int32"), (n, 1))
        else:
            raise ValueError(f"no input maker for {name!r}")
    return out


def _mlm(task_name, backbone, **kw):
    return (task(task_name, backbone, **kw), None, "masked_lm")


def _lm(task_name, backbone, **kw):
    return (task(task_name, backbone, **kw), None, "causal_lm")


def _llama_like(**kw):
    base = dict(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=H,
        intermediate_dim=FFN,
    )
    base.update(kw)
    return base


MODELS = {
    # Every MaskedLM task (the earlier sweeps built the classifiers).
    "bert_masked_lm": _mlm(
        "BertMaskedLM", "BertBackbone", **_enc(max_sequence_length=SEQ)
    ),
    "albert_masked_lm": _mlm(
        "AlbertMaskedLM",
        "AlbertBackbone",
        embedding_dim=16,
        **_enc(max_sequence_length=SEQ),
    ),
    "distil_bert_masked_lm": _mlm(
        "DistilBertMaskedLM",
        "DistilBertBackbone",
        **_enc(max_sequence_length=SEQ),
    ),
    "roberta_masked_lm": _mlm(
        "RobertaMaskedLM", "RobertaBackbone", **_enc(max_sequence_length=SEQ)
    ),
    "xlm_roberta_masked_lm": _mlm(
        "XLMRobertaMaskedLM",
        "XLMRobertaBackbone",
        **_enc(max_sequence_length=SEQ),
    ),
    "deberta_v3_masked_lm": _mlm(
        "DebertaV3MaskedLM",
        "DebertaV3Backbone",
        **_enc(max_sequence_length=SEQ),
    ),
    "f_net_masked_lm": _mlm(
        "FNetMaskedLM",
        "FNetBackbone",
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=H,
        intermediate_dim=FFN,
        max_sequence_length=SEQ,
    ),
    "roformer_v2_masked_lm": _mlm(
        "RoformerV2MaskedLM", "RoformerV2Backbone", head_size=16, **_enc()
    ),
    "esm_masked_plm": _mlm("ESMMaskedPLM", "ESMBackbone", **_enc()),
    "esm2_masked_plm": _mlm("ESM2MaskedPLM", "ESMBackbone", **_enc()),
    # TextEmbedders.
    "bert_text_embedder": (
        task(
            "BertTextEmbedder", "BertBackbone", **_enc(max_sequence_length=SEQ)
        ),
        None,
        "embedder",
    ),
    "xlm_roberta_text_embedder": (
        task(
            "XLMRobertaTextEmbedder",
            "XLMRobertaBackbone",
            **_enc(max_sequence_length=SEQ),
        ),
        None,
        "embedder",
    ),
    "qwen3_text_embedder": (
        task("Qwen3TextEmbedder", "Qwen3Backbone", head_dim=8, **_llama_like()),
        None,
        "embedder",
    ),
    "gemma3_text_embedder": (
        task(
            "Gemma3TextEmbedder",
            "Gemma3Backbone",
            image_size=16,
            head_dim=8,
            is_embedding_model=True,
            pooling_intermediate_dim=FFN,
            embedding_dim=16,
            **_llama_like(),
        ),
        None,
        "embedder",
    ),
    # Causal LM task classes not built before.
    "qwen2_causal_lm": _lm("Qwen2CausalLM", "QwenBackbone", **_llama_like()),
    "llama3_causal_lm": _lm(
        "Llama3CausalLM", "Llama3Backbone", **_llama_like()
    ),
    "smollm_causal_lm": _lm(
        "SmolLMCausalLM",
        "SmolLMBackbone",
        vocabulary_size=VOCAB,
        hidden_dim=H,
        intermediate_dim=FFN,
        num_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=False,
        attention_dropout=0.0,
        rope_layer_enabled_list=[True, False],
        layer_types=["attention", "attention"],
        mlp_bias=False,
        layer_norm_epsilon=1e-6,
        max_position_embeddings=SEQ,
        rope_theta=10000.0,
        partial_rotary_factor=1.0,
    ),
    "qwen3_5_moe_causal_lm": _lm(
        "Qwen3_5MoeCausalLM",
        "Qwen3_5MoeBackbone",
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_dim=H,
        moe_intermediate_dim=16,
        shared_expert_intermediate_size=16,
        num_experts=4,
        top_k=2,
        layer_types=["linear_attention", "full_attention"],
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
    ),
    # Configurations: embeddings tied / untied, key-value heads, windows,
    # dropout.
    "qwen_untied": _lm(
        "QwenCausalLM",
        "QwenBackbone",
        tie_word_embeddings=False,
        **_llama_like(),
    ),
    "qwen_sliding_window": _lm(
        "QwenCausalLM",
        "QwenBackbone",
        use_sliding_window_attention=True,
        sliding_window_size=4,
        **_llama_like(),
    ),
    "qwen3_untied_mqa": _lm(
        "Qwen3CausalLM",
        "Qwen3Backbone",
        head_dim=8,
        tie_word_embeddings=False,
        **_llama_like(num_key_value_heads=1),
    ),
    "llama_tied_mqa_dropout": _lm(
        "LlamaCausalLM",
        "LlamaBackbone",
        tie_word_embeddings=True,
        dropout=0.1,
        **_llama_like(num_key_value_heads=1),
    ),
    "mistral_window_headdim": _lm(
        "MistralCausalLM",
        "MistralBackbone",
        sliding_window=4,
        head_dim=16,
        **_llama_like(),
    ),
    "gemma_softcap_window": _lm(
        "GemmaCausalLM",
        "GemmaBackbone",
        head_dim=8,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=50.0,
        final_logit_soft_cap=30.0,
        use_sliding_window_attention=True,
        sliding_window_size=4,
        **_llama_like(num_layers=2),
    ),
    "qwen_moe_shared_expert": _lm(
        "QwenMoeCausalLM",
        "QwenMoeBackbone",
        vocabulary_size=VOCAB,
        num_layers=1,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=H,
        intermediate_dim=FFN,
        moe_intermediate_dim=16,
        shared_expert_intermediate_dim=16,
        num_experts=4,
        top_k=2,
    ),
    "mixtral_top1": _lm(
        "MixtralCausalLM",
        "MixtralBackbone",
        num_experts=4,
        top_k=1,
        sliding_window=4,
        **_llama_like(),
    ),
    # Variables in bfloat16 / float16 (not a mixed policy: the weights
    # themselves are low precision).
    "gpt2_bfloat16": _lm(
        "GPT2CausalLM",
        "GPT2Backbone",
        dtype="bfloat16",
        **_enc(max_sequence_length=SEQ),
    ),
    "llama_float16": _lm(
        "LlamaCausalLM", "LlamaBackbone", dtype="float16", **_llama_like()
    ),
    "bert_classifier_bfloat16": (
        task(
            "BertTextClassifier",
            "BertBackbone",
            dtype="bfloat16",
            **_enc(max_sequence_length=SEQ),
        ),
        None,
        "classifier",
    ),
}


def _fit_check(m, x, res):
    """2 `fit` steps with the callback; exact counts in stored weights."""
    p = kp.prune_low_magnitude(m, kp.ConstantSparsity(0.5, 0))
    out = p(x, training=False)
    flat = keras.tree.flatten(out)
    y = [np.zeros(tuple(t.shape), "float32") for t in flat]
    p.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=["mse"] * len(y) if len(y) > 1 else "mse",
        metrics=[],
        weighted_metrics=[],
    )
    xs = {k: np.concatenate([v, v]) for k, v in x.items()}
    ys = [np.concatenate([t, t]) for t in y]
    p.fit(
        xs,
        ys if len(ys) > 1 else ys[0],
        batch_size=2,
        epochs=1,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    bad = []
    for w in pruning_wrappers(p):
        for v, mask in zip(w.pruned_weights, w.masks):
            val = hub_sweep.np_(keras.ops.cast(v, "float32"))
            mk = hub_sweep.np_(mask).astype(bool)
            want = int(kp.kept_count(mk.size, 0.5))
            if int(mk.sum()) != want or np.any(val[~mk] != 0):
                bad.append((v.path, int(mk.sum()), want))
    res["fit_step"] = int(kp.pruning_step(p))
    res["fit_bad"] = bad
    s = kp.strip_pruning(p)
    res["fit_strip_maxdiff"] = max(
        float(np.max(np.abs(a.astype("float32") - b.astype("float32"))))
        for a, b in zip(hub_sweep.outs(p, x), hub_sweep.outs(s, x))
    )


def run(name):
    builder, _, kind = MODELS[name]
    res = dict(case=name, kind=kind, backend=keras.backend.backend())
    keras.utils.set_random_seed(0)
    t0 = time.time()
    try:
        m = builder()
        x = inputs_for(m)
        res["cls"] = type(m).__name__
        res["n_weights"] = len(m.weights)
        res["dtypes"] = sorted({str(v.dtype) for v in m.weights})
        res["zero_init_filled"] = extra.fill_zero_kernels(m)
    except Exception as e:
        res["build"] = hub_sweep.err(e)
        res["tb"] = traceback.format_exc()[-3000:]
        return res
    hub_sweep.check_model(m, x, res)
    if kind == "causal_lm":
        try:
            p = kp.prune_once(m, 0.5, sparsity_m_by_n=(2, 4))
            a = extra._generate(p, kind)
            b = extra._generate(kp.strip_pruning(p), kind)
            res["generate_equal"] = bool(np.array_equal(a, b))
        except Exception as e:
            res["generate"] = hub_sweep.err(e)
            res["tb_generate"] = traceback.format_exc()[-3000:]
    try:
        _fit_check(m, x, res)
    except Exception as e:
        res["fit"] = hub_sweep.err(e)
        res["tb_fit"] = traceback.format_exc()[-3000:]
    res["total_s"] = round(time.time() - t0, 1)
    return res


def _main():
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="comma-separated names")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(MODELS)
    with open(args.out, "a") as f:
        for name in names:
            res = run(name)
            f.write(json.dumps(res, default=str) + "\n")
            f.flush()
            print(name, res.get("total_s"), flush=True)


if __name__ == "__main__":
    _main()
