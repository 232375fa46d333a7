"""The Keras-Hub models `hub_sweep` does not build, and realistic widths.

docs/models.md, section 9 ("Session 12"). `benchmarks/hub_sweep.py` builds
every backbone from the configuration of its keras-hub test; this script
builds, from their constructors (nothing is downloaded), what that harness
could not reach (Gemma3n with AltUp and Laurel, Gemma4 with and without its
mixture of experts and vision encoder, SAM, SAM3, BASNet, PARSeq, D-FINE,
keras-hub's EfficientNet, Qwen3.5 multimodal, SmolLM3, Qwen3.5 and RWKV7
causal LMs) and the 18 text models whose test configurations have hidden
size 2, rebuilt with hidden 32, 2-4 heads, intermediate 64, 1 layer, so
that 2:4 and the global budget are exercised. The same checks as
`hub_sweep.check_model`, plus, for causal LMs and seq2seq models, greedy
`generate()` on the pruned and on the stripped model (equal tokens).

    KERAS_BACKEND=jax python -m benchmarks.hub_sweep_extra \
        --out /tmp/extra.jsonl [--only gemma3n_causal_lm,bert_classifier]

A throwaway harness, not part of the test suite; one JSON line per model.
"""

import argparse
import json
import signal
import time
import traceback
import warnings

import keras
import numpy as np

import keras_prune as kp
from benchmarks import hub_sweep

SEQ = 8
VOCAB = 64
H = 32  # hidden size of the "realistic width" text models
FFN = 64


def kh():
    import keras_hub

    return keras_hub


def tokens(n=2, seq=SEQ, vocab=VOCAB, **extra):
    """Token ids and padding mask of a text model's batch (and `extra`)."""
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, vocab, (n, seq)).astype("int32"),
        "padding_mask": np.ones((n, seq), "int32"),
    }
    x.update(extra)
    return x


def seq2seq(n=2, seq=SEQ, vocab=VOCAB):
    """The encoder and decoder inputs of a Seq2SeqLM's batch."""
    rng = np.random.default_rng(0)
    return {
        "encoder_token_ids": rng.integers(1, vocab, (n, seq)).astype("int32"),
        "encoder_padding_mask": np.ones((n, seq), "int32"),
        "decoder_token_ids": rng.integers(1, vocab, (n, seq)).astype("int32"),
        "decoder_padding_mask": np.ones((n, seq), "int32"),
    }


def task(task, backbone, task_kw=None, **kw):
    """A builder of keras-hub's `backbone(**kw)`, in `task` unless None
    (no preprocessor; classifiers with 3 classes unless `task_kw` says)."""

    def build():
        m = kh().models
        bb = getattr(m, backbone)(**kw)
        if task is None:
            return bb
        extra = dict(task_kw or {})
        if "Classifier" in task and "num_classes" not in extra:
            extra["num_classes"] = 3
        return getattr(m, task)(backbone=bb, preprocessor=None, **extra)

    return build


def fill_zero_kernels(model, seed=1):
    """Gives kernels keras-hub initialises to zeros (Gemma4's expert bank,
    D-FINE's box heads) random values, as a trained model has them:
    otherwise a count of their pruned non-zeros says nothing.

    Returns:
        The paths of the variables filled.
    """
    rng = np.random.default_rng(seed)
    filled = []
    for v in model.trainable_weights:
        if len(v.shape) >= 2 and not np.any(hub_sweep.np_(v)):
            v.assign(0.02 * rng.standard_normal(v.shape).astype(v.dtype))
            filled.append(v.path)
    return filled


def _enc(**kw):
    return dict(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=H,
        intermediate_dim=FFN,
        **kw,
    )


def _positions(n=2):
    return tokens(
        n, position_ids=np.tile(np.arange(SEQ, dtype="int32"), (n, 1))
    )


def _with_segments(n=2):
    return tokens(n, segment_ids=np.zeros((n, SEQ), "int32"))


# --------------------------------------------------------- item 1 builders


def gemma3n(vocab=VOCAB):
    hub = kh()
    return hub.models.Gemma3nBackbone(
        text_vocab_size=vocab,
        text_hidden_size=16,
        num_hidden_layers=1,
        pad_token_id=0,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=[32],
        hidden_activation="gelu_approximate",
        layer_types=["full_attention"],
        sliding_window=4,
        rope_theta=10000.0,
        max_position_embeddings=SEQ,
        vocab_size_per_layer_input=vocab,
        hidden_size_per_layer_input=8,
        altup_num_inputs=2,
        laurel_rank=4,
    )


def gemma3n_lm():
    return kh().models.Gemma3nCausalLM(backbone=gemma3n(), preprocessor=None)


def gemma3n_multimodal():
    from keras_hub.src.models.gemma3n.gemma3n_audio_encoder import (
        Gemma3nAudioEncoder,
    )
    from keras_hub.src.models.mobilenetv5.mobilenetv5_builder import (
        convert_arch_def_to_stackwise,
    )

    hub = kh()
    vision = hub.models.MobileNetV5Backbone(
        **convert_arch_def_to_stackwise([["er_r1_k3_s1_e1_c8"]]),
        num_features=8,
        image_shape=(32, 32, 3),
        use_msfa=False,
    )
    audio = Gemma3nAudioEncoder(
        hidden_size=8,
        input_feat_size=16,
        sscp_conv_channel_size=[4, 8],
        sscp_conv_kernel_size=[(1, 1), (1, 1)],
        sscp_conv_stride_size=[(2, 2), (2, 2)],
        sscp_conv_group_norm_eps=1e-5,
        num_hidden_layers=1,
        rms_norm_eps=1e-6,
        gradient_clipping=1.0,
        residual_weight=0.5,
        num_attention_heads=2,
        attention_chunk_size=2,
        num_attention_context_right=1,
        num_attention_context_left=1,
        attention_logit_cap=50.0,
        conv_kernel_size=3,
        reduction_factor=1,
    )
    cfg = gemma3n().get_config()
    for k in ("name", "trainable", "dtype"):
        cfg.pop(k, None)
    cfg.update(
        vision_encoder_config=vision.get_config(),
        vision_hidden_size=8,
        audio_encoder_config=audio.get_config(),
        audio_hidden_size=8,
    )
    return hub.models.Gemma3nBackbone(**cfg)


def gemma3n_multimodal_inputs(n=1):
    rng = np.random.default_rng(0)
    x = tokens(n)
    x["padding_mask"] = np.ones((n, SEQ), bool)
    x["images"] = rng.random((n, 1, 32, 32, 3)).astype("float32")
    x["input_features"] = rng.random((n, 1, SEQ, 16)).astype("float32")
    x["input_features_mask"] = np.zeros((n, 1, SEQ), bool)
    return x


def gemma4(moe=False, **extra):
    kw = dict(
        vocabulary_size=VOCAB,
        image_size=16,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
        use_sliding_window_attention=True,
        sliding_window_size=16,
        sliding_window_pattern=2,
        attention_logit_soft_cap=None,
        final_logit_soft_cap=None,
    )
    if moe:
        kw.update(
            enable_moe_block=True,
            num_experts=4,
            expert_intermediate_dim=16,
            num_experts_per_token=2,
        )
    kw.update(extra)
    return kh().models.Gemma4Backbone(**kw)


def gemma4_lm(**kw):
    def build():
        return kh().models.Gemma4CausalLM(
            backbone=gemma4(**kw), preprocessor=None
        )

    return build


def gemma4_vision():
    from keras_hub.src.models.gemma4.gemma4_vision_encoder import (
        Gemma4VisionEncoder,
    )

    enc = Gemma4VisionEncoder(
        image_size=16,
        patch_size=4,
        pool_size=2,
        num_layers=1,
        num_heads=2,
        head_dim=8,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        output_dim=16,
    )
    return gemma4(vision_encoder=enc)


def gemma4_vision_inputs(n=2, seq=32):
    rng = np.random.default_rng(0)
    images = 1
    vision = np.zeros((n, seq), bool)
    vision[:, 4:8] = True  # (16/4)^2 / 2^2 = 4 tokens per image
    return {
        "token_ids": rng.integers(1, VOCAB, (n, seq)).astype("int32"),
        "pixel_values": rng.random((n, images, 16, 48)).astype("float32"),
        "pixel_position_ids": np.ones((n, images, 16, 2), "int32"),
        "padding_mask": np.ones((n, seq), "int32"),
        "vision_mask": vision,
        "vision_indices": np.tile(np.arange(4, 8, dtype="int32"), (n, 1)),
        "position_ids": np.tile(np.arange(seq, dtype="int32"), (n, 1)),
    }


def sam():
    hub = kh()
    from keras_hub.src.models.sam.sam_mask_decoder import SAMMaskDecoder
    from keras_hub.src.models.sam.sam_prompt_encoder import SAMPromptEncoder

    size = 64
    enc = hub.models.ViTDetBackbone(
        hidden_size=16,
        num_layers=2,
        intermediate_dim=32,
        num_heads=2,
        global_attention_layer_indices=[1],
        patch_size=16,
        num_output_channels=16,
        window_size=2,
        image_shape=(size, size, 3),
    )
    prompt = SAMPromptEncoder(
        hidden_size=16,
        image_embedding_size=(4, 4),
        input_image_size=(size, size),
        mask_in_channels=16,
    )
    dec = SAMMaskDecoder(
        num_layers=1,
        hidden_size=16,
        intermediate_dim=32,
        num_heads=2,
        embedding_dim=16,
        num_multimask_outputs=3,
        iou_head_depth=2,
        iou_head_hidden_dim=8,
    )
    bb = hub.models.SAMBackbone(
        image_encoder=enc, prompt_encoder=prompt, mask_decoder=dec
    )
    return hub.models.SAMImageSegmenter(backbone=bb, preprocessor=None)


def sam_inputs(n=2):
    return {
        "images": np.random.default_rng(0)
        .random((n, 64, 64, 3))
        .astype("float32"),
        "points": np.ones((n, 1, 2), "float32"),
        "labels": np.ones((n, 1), "float32"),
        "boxes": np.ones((n, 1, 2, 2), "float32"),
        "masks": np.zeros((n, 1, 16, 16, 1), "float32"),
    }


def sam3():
    from keras_hub.src.models.sam3 import sam3_detr_decoder as dd
    from keras_hub.src.models.sam3 import sam3_detr_encoder as de
    from keras_hub.src.models.sam3 import sam3_geometry_encoder as ge
    from keras_hub.src.models.sam3 import sam3_mask_decoder as md
    from keras_hub.src.models.sam3 import sam3_text_encoder as te
    from keras_hub.src.models.sam3 import sam3_vision_encoder as ve
    from keras_hub.src.models.sam3.sam3_pc_backbone import (
        SAM3PromptableConceptBackbone,
    )

    size = 28
    return SAM3PromptableConceptBackbone(
        vision_encoder=ve.SAM3VisionEncoder(
            image_shape=(size, size, 3),
            patch_size=14,
            num_layers=1,
            hidden_dim=16,
            intermediate_dim=32,
            num_heads=2,
            fpn_hidden_dim=16,
            fpn_scale_factors=[4.0, 2.0, 1.0, 0.5],
            pretrain_image_shape=(42, 42, 3),
            window_size=2,
            global_attn_indexes=[0],
        ),
        text_encoder=te.SAM3TextEncoder(
            vocabulary_size=32,
            embedding_dim=16,
            hidden_dim=16,
            num_layers=1,
            num_heads=2,
            intermediate_dim=32,
        ),
        geometry_encoder=ge.SAM3GeometryEncoder(
            num_layers=1,
            hidden_dim=16,
            intermediate_dim=32,
            num_heads=2,
            roi_size=7,
        ),
        detr_encoder=de.SAM3DetrEncoder(
            num_layers=1, hidden_dim=16, intermediate_dim=32, num_heads=2
        ),
        detr_decoder=dd.SAM3DetrDecoder(
            image_shape=(size, size, 3),
            patch_size=14,
            num_layers=1,
            hidden_dim=16,
            intermediate_dim=32,
            num_heads=2,
            num_queries=8,
        ),
        mask_decoder=md.SAM3MaskDecoder(
            num_upsampling_stages=3, hidden_dim=16, num_heads=2
        ),
    )


def sam3_inputs(n=2):
    return {
        "pixel_values": np.ones((n, 28, 28, 3), "float32"),
        "token_ids": np.ones((n, 32), "int32"),
        "padding_mask": np.ones((n, 32), bool),
        "boxes": np.ones((n, 1, 5), "float32"),
        "box_labels": np.ones((n, 1), "int32"),
    }


def basnet():
    hub = kh()
    enc = hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64, 64, 64],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    )
    bb = hub.models.BASNetBackbone(image_encoder=enc, num_classes=1)
    return hub.models.BASNetImageSegmenter(backbone=bb, preprocessor=None)


def parseq():
    hub = kh()
    enc = hub.models.ViTBackbone(
        image_shape=(16, 32, 3),
        patch_size=(4, 8),
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        use_class_token=False,
        name="image_encoder",
    )
    bb = hub.models.PARSeqBackbone(
        image_encoder=enc,
        vocabulary_size=97,
        max_label_length=SEQ,
        decoder_hidden_dim=32,
        num_decoder_layers=1,
        num_decoder_heads=2,
        decoder_mlp_dim=64,
        dropout_rate=0.0,
        attention_dropout=0.0,
    )
    return bb  # PARSeqCausalLM needs its preprocessor (tokenizer)


def parseq_inputs(n=2):
    rng = np.random.default_rng(0)
    return {
        "images": rng.standard_normal((n, 16, 32, 3)).astype("float32"),
        "token_ids": rng.integers(0, 97, (n, SEQ + 1)).astype("int32"),
        "padding_mask": np.ones((n, SEQ + 1), "int32"),
    }


def d_fine():
    hub = kh()
    hg = hub.models.HGNetV2Backbone(
        stem_channels=[3, 8, 8],
        stackwise_stage_filters=[[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        depths=[1, 1],
        hidden_sizes=[16, 32],
        embedding_size=8,
        use_learnable_affine_block=True,
        hidden_act="relu",
        image_shape=(None, None, 3),
        out_features=["stage1", "stage2"],
    )
    bb = hub.models.DFineBackbone(
        backbone=hg,
        decoder_in_channels=[16, 16],
        encoder_hidden_dim=16,
        num_denoising=0,
        num_labels=4,
        hidden_dim=16,
        learn_initial_query=False,
        num_queries=10,
        anchor_image_size=(32, 32),
        feat_strides=[4, 8],
        num_feature_levels=2,
        encoder_in_channels=[16, 32],
        encode_proj_layers=[1],
        num_attention_heads=2,
        encoder_ffn_dim=32,
        num_encoder_layers=1,
        hidden_expansion=0.5,
        depth_multiplier=0.5,
        eval_idx=-1,
        num_decoder_layers=2,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        decoder_n_points=[2, 2],
        lqe_hidden_dim=16,
        num_lqe_layers=2,
        out_features=["stage1", "stage2"],
        image_shape=(32, 32, 3),
        seed=0,
    )
    return hub.models.DFineObjectDetector(
        backbone=bb, num_classes=4, preprocessor=None
    )


def efficientnet():
    hub = kh()
    bb = hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 3, 3],
        stackwise_num_repeats=[1, 1, 1, 1],
        stackwise_input_filters=[16, 16, 24, 32],
        stackwise_output_filters=[16, 24, 32, 48],
        stackwise_expansion_ratios=[1, 4, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0.25, 0.25],
        stackwise_strides=[1, 2, 2, 1],
        stackwise_block_types=["fused", "fused", "unfused", "unfused"],
        stackwise_force_input_filters=[0] * 4,
        stackwise_nores_option=[False] * 4,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        input_shape=(32, 32, 3),
    )
    return hub.models.EfficientNetImageClassifier(
        backbone=bb, num_classes=3, preprocessor=None
    )


def images(n=2, shape=(32, 32, 3)):
    """A batch of standard normal images."""
    return (
        np.random.default_rng(0).standard_normal((n,) + shape).astype("float32")
    )


def qwen3_5(vision=False, layers=("linear_attention", "full_attention")):
    hub = kh()
    kw = dict(
        vocabulary_size=VOCAB,
        num_layers=len(layers),
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_dim=32,
        intermediate_dim=64,
        layer_types=list(layers),
        partial_rotary_factor=0.25,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        linear_conv_kernel_dim=4,
    )
    if vision:
        from keras_hub.src.models.qwen3_5.qwen3_5_vision_encoder import (
            Qwen3_5VisionEncoder,
        )

        kw["vision_encoder"] = Qwen3_5VisionEncoder(
            depth=1,
            hidden_size=16,
            num_heads=2,
            intermediate_size=32,
            in_channels=3,
            patch_size=4,
            temporal_patch_size=2,
            spatial_merge_size=2,
            out_hidden_size=32,
            num_position_embeddings=64,
        )
        kw["mrope_section"] = [1, 1, 1]
    return hub.models.Qwen3_5Backbone(**kw)


def qwen3_5_vision_inputs(n=1, seq=10):
    rng = np.random.default_rng(0)
    return {
        "token_ids": np.ones((n, seq), "int32"),
        "padding_mask": np.ones((n, seq), "int32"),
        "pixel_values": rng.standard_normal((n, 16, 2, 4, 4, 3)).astype(
            "float32"
        ),
        "image_grid_thw": np.array([[[1, 4, 4]]] * n, "int32"),
        "vision_indices": np.array([[2, 3, 4, 5]] * n, "int32"),
    }


def rwkv7_lm():
    hub = kh()
    bb = hub.models.RWKV7Backbone(
        hidden_size=32,
        head_size=8,
        num_layers=1,
        vocabulary_size=VOCAB,
        intermediate_dim=64,
        gate_lora=8,
        mv_lora=8,
        aaa_lora=8,
        decay_lora=8,
    )
    return hub.models.RWKV7CausalLM(backbone=bb, preprocessor=None)


# name -> (builder, inputs, kind); kind "causal_lm"/"seq2seq" adds generate.
ITEM1 = {
    "gemma3n_causal_lm": (gemma3n_lm, tokens, "causal_lm"),
    "gemma3n_multimodal": (
        gemma3n_multimodal,
        gemma3n_multimodal_inputs,
        "backbone",
    ),
    "gemma4_causal_lm": (gemma4_lm(), _positions, "causal_lm"),
    "gemma4_moe_causal_lm": (gemma4_lm(moe=True), _positions, "causal_lm"),
    "gemma4_per_layer_causal_lm": (
        gemma4_lm(
            hidden_size_per_layer_input=8, vocab_size_per_layer_input=VOCAB
        ),
        _positions,
        "causal_lm",
    ),
    "gemma4_vision": (gemma4_vision, gemma4_vision_inputs, "backbone"),
    "sam_segmenter": (sam, sam_inputs, "backbone"),
    "sam3_backbone": (sam3, sam3_inputs, "backbone"),
    "basnet_segmenter": (
        basnet,
        lambda n=2: images(n, (64, 64, 3)),
        "backbone",
    ),
    "parseq_causal_lm": (parseq, parseq_inputs, "backbone"),
    "d_fine_detector": (d_fine, images, "backbone"),
    "efficientnet_classifier": (efficientnet, images, "backbone"),
    "qwen3_5_causal_lm": (
        lambda: kh().models.Qwen3_5CausalLM(
            backbone=qwen3_5(), preprocessor=None
        ),
        tokens,
        "causal_lm",
    ),
    "qwen3_5_multimodal": (
        lambda: qwen3_5(vision=True),
        qwen3_5_vision_inputs,
        "backbone",
    ),
    "smollm3_causal_lm": (
        task(
            "SmolLM3CausalLM",
            "SmolLM3Backbone",
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
            layer_norm_epsilon=1e-5,
            max_position_embeddings=64,
            rope_theta=10000.0,
            partial_rotary_factor=1.0,
        ),
        tokens,
        "causal_lm",
    ),
    "rwkv7_causal_lm": (rwkv7_lm, tokens, "causal_lm"),
}

# ------------------------------------------ item 2: realistic text widths

ITEM2 = {
    "albert_classifier": (
        task(
            "AlbertTextClassifier",
            "AlbertBackbone",
            embedding_dim=H,
            **_enc(max_sequence_length=SEQ),
        ),
        _with_segments,
        "classifier",
    ),
    "bert_classifier": (
        task(
            "BertTextClassifier",
            "BertBackbone",
            **_enc(max_sequence_length=SEQ),
        ),
        _with_segments,
        "classifier",
    ),
    "distil_bert_classifier": (
        task(
            "DistilBertTextClassifier",
            "DistilBertBackbone",
            **_enc(max_sequence_length=SEQ),
        ),
        tokens,
        "classifier",
    ),
    "electra_backbone": (
        task(
            None,
            "ElectraBackbone",
            vocab_size=VOCAB,
            num_layers=1,
            num_heads=2,
            hidden_dim=H,
            embedding_dim=H,
            intermediate_dim=FFN,
            max_sequence_length=SEQ,
        ),
        _with_segments,
        "backbone",
    ),
    "f_net_classifier": (
        task(
            "FNetTextClassifier",
            "FNetBackbone",
            vocabulary_size=VOCAB,
            num_layers=1,
            hidden_dim=H,
            intermediate_dim=FFN,
            max_sequence_length=SEQ,
        ),
        lambda n=2: {
            "token_ids": tokens(n)["token_ids"],
            "segment_ids": np.zeros((n, SEQ), "int32"),
        },
        "classifier",
    ),
    "roberta_classifier": (
        task(
            "RobertaTextClassifier",
            "RobertaBackbone",
            **_enc(max_sequence_length=SEQ),
        ),
        tokens,
        "classifier",
    ),
    "xlm_roberta_classifier": (
        task(
            "XLMRobertaTextClassifier",
            "XLMRobertaBackbone",
            **_enc(max_sequence_length=SEQ),
        ),
        tokens,
        "classifier",
    ),
    "gpt2_causal_lm": (
        task("GPT2CausalLM", "GPT2Backbone", **_enc(max_sequence_length=SEQ)),
        tokens,
        "causal_lm",
    ),
    "opt_causal_lm": (
        task("OPTCausalLM", "OPTBackbone", **_enc(max_sequence_length=SEQ)),
        tokens,
        "causal_lm",
    ),
    "bart_seq2seq": (
        task("BartSeq2SeqLM", "BartBackbone", **_enc(max_sequence_length=SEQ)),
        seq2seq,
        "seq2seq",
    ),
    "whisper_backbone": (
        task(
            None,
            "WhisperBackbone",
            vocabulary_size=VOCAB,
            num_layers=1,
            num_heads=2,
            hidden_dim=H,
            intermediate_dim=FFN,
            max_encoder_sequence_length=16,
            max_decoder_sequence_length=SEQ,
        ),
        lambda n=2: {
            "encoder_features": np.random.default_rng(0)
            .standard_normal((n, 16, 80))
            .astype("float32"),
            "decoder_token_ids": tokens(n)["token_ids"],
            "decoder_padding_mask": np.ones((n, SEQ), "int32"),
        },
        "backbone",
    ),
    "esm_classifier": (
        task("ESMProteinClassifier", "ESMBackbone", **_enc()),
        lambda n=2: {"token_ids": tokens(n)["token_ids"]},
        "classifier",
    ),
    "roformer_v2_classifier": (
        task(
            "RoformerV2TextClassifier",
            "RoformerV2Backbone",
            head_size=16,
            **_enc(),
        ),
        _with_segments,
        "classifier",
    ),
    "gpt_neox_causal_lm": (
        task(
            "GPTNeoXCausalLM",
            "GPTNeoXBackbone",
            **_enc(max_sequence_length=SEQ),
        ),
        tokens,
        "causal_lm",
    ),
    "moonshine_audio_to_text": (
        task(
            "MoonshineAudioToText",
            "MoonshineBackbone",
            vocabulary_size=VOCAB,
            filter_dim=H,
            encoder_num_layers=1,
            decoder_num_layers=1,
            hidden_dim=H,
            intermediate_dim=FFN,
            encoder_num_heads=2,
            decoder_num_heads=2,
            feedforward_expansion_factor=2,
            decoder_use_swiglu_activation=True,
            encoder_use_swiglu_activation=False,
        ),
        lambda n=2: {
            "encoder_input_values": np.random.default_rng(0)
            .standard_normal((n, 2000, 1))
            .astype("float32"),
            "encoder_padding_mask": np.ones((n, 2000), bool),
            "decoder_token_ids": tokens(n)["token_ids"],
            "decoder_padding_mask": np.ones((n, SEQ), bool),
        },
        "backbone",
    ),
    "deberta_v3_classifier": (
        task(
            "DebertaV3TextClassifier",
            "DebertaV3Backbone",
            **_enc(max_sequence_length=SEQ),
        ),
        tokens,
        "classifier",
    ),
    "t5_seq2seq": (
        task("T5Seq2SeqLM", "T5Backbone", **_enc()),
        seq2seq,
        "seq2seq",
    ),
    "xlnet_backbone": (
        task(
            None,
            "XLNetBackbone",
            vocabulary_size=VOCAB,
            num_layers=1,
            num_heads=2,
            hidden_dim=H,
            intermediate_dim=FFN,
        ),
        lambda n=2: tokens(n, segment_ids=np.zeros((n, SEQ), "int32")),
        "backbone",
    ),
}

MODELS = {**ITEM1, **ITEM2}


def _generate(m, kind):
    """Greedy tokens of `m` on a fixed prompt (causal LM or seq2seq)."""
    mask = np.zeros((1, SEQ), "int32")
    mask[:, :3] = 1
    tokens = np.full((1, SEQ), 3, "int32") * mask
    if kind == "seq2seq":
        prompt = {
            "encoder_token_ids": np.full((1, SEQ), 3, "int32"),
            "encoder_padding_mask": np.ones((1, SEQ), "int32"),
            "decoder_token_ids": tokens,
            "decoder_padding_mask": mask,
        }
    else:
        prompt = {"token_ids": tokens, "padding_mask": mask}
    if type(m).__name__.startswith("RWKV7"):  # its preprocessor's layout
        prompt = {
            "token_ids": tokens,
            "input_padding_mask": mask,
            "padding_mask": mask,
            "predict_token_ids": tokens,
        }
    m.compile(sampler="greedy")
    out = m.generate(prompt, stop_token_ids=None)
    key = "decoder_token_ids" if kind == "seq2seq" else "token_ids"
    return hub_sweep.np_(out[key])


def checked(name, builder, inputs, **fields):
    """Builds one case and runs `hub_sweep.check_model` on it.

    Args:
        name: The case's name.
        builder: Returns the model.
        inputs: Returns a batch for the model it is given.
        **fields: More fields of the result (after `case`).

    Returns:
        `(res, model)`: the result dict, and the model (None if the build
        failed; `res` then says why).
    """
    res = dict(case=name, **fields, backend=keras.backend.backend())
    keras.utils.set_random_seed(0)
    t0 = time.time()
    try:
        m = builder()
        x = inputs(m)
        res["cls"] = type(m).__name__
        res["n_weights"] = len(m.weights)
        res["zero_init_filled"] = fill_zero_kernels(m)
        res["dense_nan"] = any(
            bool(np.isnan(o).any()) for o in hub_sweep.outs(m, x)
        )
    except Exception as e:
        res["build"] = hub_sweep.err(e)
        res["tb"] = traceback.format_exc()[-3000:]
        return res, None
    res["build_s"] = round(time.time() - t0, 1)
    hub_sweep.check_model(m, x, res)
    return res, m


def run(name):
    builder, inputs, kind = MODELS[name]
    t0 = time.time()
    res, m = checked(name, builder, lambda m: inputs(), kind=kind)
    if m is None:
        return res
    if kind in ("causal_lm", "seq2seq"):
        try:
            p = kp.prune_once(m, 0.5, sparsity_m_by_n=(2, 4))
            a = _generate(p, kind)
            b = _generate(kp.strip_pruning(p), kind)
            res["generate_equal"] = bool(np.array_equal(a, b))
            res["generate_prompt_kept"] = bool(np.all(a[:, :3] == 3))
        except Exception as e:
            res["generate"] = hub_sweep.err(e)
            res["tb_generate"] = traceback.format_exc()[-3000:]
    res["total_s"] = round(time.time() - t0, 1)
    return res


def sweep_main(doc, names, run, seconds):
    """The command line of a sweep: `--out` (JSON lines, appended) and
    `--only`; each case runs with `run(name)` under a `seconds` alarm, one
    line printed and one JSON line written per case."""
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON lines file (appended)")
    ap.add_argument("--only", default=None, help="comma-separated names")
    args = ap.parse_args()

    def alarm(*a):
        raise TimeoutError(f"case took > {seconds} s")

    signal.signal(signal.SIGALRM, alarm)
    for name in args.only.split(",") if args.only else list(names):
        signal.alarm(seconds)
        try:
            r = run(name)
        except BaseException as e:  # noqa: BLE001 - one line per model
            r = dict(case=name, crash=hub_sweep.err(e))
        signal.alarm(0)
        keras.utils.clear_session()
        print(name, r.get("total_s"), r.get("build", ""), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(r, default=str) + "\n")


if __name__ == "__main__":
    sweep_main(__doc__, MODELS, run, 300)
