"""Sweep: default pruning of the Keras-Hub tasks earlier sweeps did not name.

Session 19 (issue 17, "Done when"): 25 task classes (text classifiers,
causal LMs from Bloom to Qwen3-MoE, T5Gemma, image classifiers,
segmenters, RetinaNet), then 5 more (BLIP2, EdRec and T5Gemma2 seq2seq
LMs, MobileNetV5, SAM3's promptable-concept segmenter), each built tiny
from its constructors (no download), through
`benchmarks.hub_sweep.check_model`: default wrap, exact `prune_once`
counts, the plan, save and reload, strip, 2:4 and global.
Results: docs/models.md, section 13. Run from the repository root:

  KERAS_BACKEND=jax .venv/bin/python -m benchmarks.models8_sweep \
      --out /tmp/m8_jax.jsonl [--only a,b]
"""

import time

import keras_hub  # noqa: F401 - before hub_sweep's grain stub
import numpy as np

from benchmarks import hub_sweep_extra as extra
from benchmarks import models7_sweep as m7
from benchmarks.hub_sweep_extra import FFN
from benchmarks.hub_sweep_extra import SEQ
from benchmarks.hub_sweep_extra import VOCAB
from benchmarks.hub_sweep_extra import H
from benchmarks.hub_sweep_extra import _enc
from benchmarks.hub_sweep_extra import task
from benchmarks.models7_sweep import _llama_like


def img(shape):
    return lambda: extra.images(2, shape)


def resnet(**kw):
    base = dict(
        input_conv_filters=[64],  # basic_block: = first stage
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16],  # first must be 64
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
    )
    base.update(kw)
    return keras_hub.models.ResNetBackbone(**base)


def mit(hidden=(8, 16), shape=(32, 32, 3)):
    return keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1],
        image_shape=shape,
        hidden_dims=list(hidden),
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[8, 4],
        max_drop_path_rate=0.1,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
    )


def t(task_name, bb_builder, **task_kw):
    def build():
        bb = bb_builder()
        return getattr(keras_hub.models, task_name)(
            backbone=bb, preprocessor=None, **task_kw
        )

    return build


def pali():
    bb = keras_hub.models.PaliGemmaBackbone(
        vocabulary_size=VOCAB,
        image_size=16,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=H,
        intermediate_dim=FFN,
        head_dim=16,
        vit_patch_size=4,
        vit_num_layers=1,
        vit_num_heads=2,
        vit_hidden_dim=16,
        vit_intermediate_dim=32,
    )
    return keras_hub.models.PaliGemmaCausalLM(backbone=bb, preprocessor=None)


def pali_inputs(n=2):
    x = m7.inputs_for_names(["token_ids", "padding_mask"], n)
    x["images"] = extra.images(n, (16, 16, 3))
    x["response_mask"] = np.ones((n, SEQ), "int32")
    return x


def mobilenet():
    return keras_hub.models.MobileNetBackbone(  # keras-hub's test config
        stackwise_expansion=[
            [40, 56],
            [64, 144, 144],
            [72, 72],
            [144, 288, 288],
        ],
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_num_filters=[[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
        stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5], [1]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1], [1]],
        stackwise_se_ratio=[
            [None, None],
            [0.25, 0.25, 0.25],
            [0.25, 0.25],
            [0.25, 0.25, 0.25],
        ],
        stackwise_activation=[
            ["relu", "relu"],
            ["hard_swish"] * 3,
            ["hard_swish"] * 2,
            ["hard_swish"] * 3,
        ],
        stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2], [1]],
        output_num_filters=64,
        input_activation="hard_swish",
        output_activation="hard_swish",
        input_num_filters=16,
        image_shape=(32, 32, 3),
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=288,
    )


def hgnet():
    return keras_hub.models.HGNetV2Backbone(
        depths=[1, 1],
        embedding_size=16,
        hidden_sizes=[32, 64],
        stem_channels=[3, 8, 16],
        hidden_act="relu",
        use_learnable_affine_block=True,
        stackwise_stage_filters=[[16, 8, 32, 1, 1, 3], [32, 16, 64, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        image_shape=(32, 32, 3),
    )


def blip2():
    hub = keras_hub.models
    vision = hub.BLIP2VisionEncoder(
        image_size=16,
        patch_size=4,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        use_patch_bias=True,
        use_class_token=True,
        use_mha_bias=True,
        use_mlp_bias=True,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        initializer_range=0.02,
    )
    qformer = hub.BLIP2QFormer(
        num_query_tokens=4,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        vision_dim=16,
        cross_attention_frequency=1,
        dropout=0.0,
        layer_norm_epsilon=1e-6,
    )
    lm = hub.BLIP2FlanT5(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=H,
        intermediate_dim=FFN,
        num_query_tokens=4,
        qformer_hidden_dim=16,
        dropout=0.0,
    )
    return hub.BLIP2Backbone(
        vision_encoder=vision, qformer=qformer, language_model=lm
    )


def blip2_inputs(n=2):
    return dict(extra.seq2seq(n), images=extra.images(n, (16, 16, 3)))


def mobilenetv5():
    from keras_hub.src.models.mobilenetv5.mobilenetv5_builder import (
        convert_arch_def_to_stackwise,
    )

    arch = [  # the block kinds of the Gemma3n preset, tiny
        ["er_r1_k3_s2_e4_c16"],
        ["uir_r1_a3_k5_s2_e4_c32", "uir_r1_a0_k0_s1_e2_c32"],
        ["uir_r1_a3_k0_s1_e2_c32", "mqa_r1_k3_h2_v2_s1_d8_c32"],
    ]
    return keras_hub.models.MobileNetV5Backbone(
        **convert_arch_def_to_stackwise(arch),
        stem_size=8,
        num_features=32,
        msfa_output_resolution=4,
        image_shape=(32, 32, 3),
    )


T5GEMMA = dict(  # T5Gemma and T5Gemma2 (text only)
    vocabulary_size=VOCAB,
    encoder_hidden_dim=H,
    encoder_intermediate_dim=FFN,
    encoder_num_layers=2,
    encoder_num_attention_heads=4,
    encoder_num_key_value_heads=2,
    encoder_head_dim=8,
    encoder_layer_types=["sliding_attention", "full_attention"],
    decoder_hidden_dim=H,
    decoder_intermediate_dim=FFN,
    decoder_num_layers=2,
    decoder_num_attention_heads=4,
    decoder_num_key_value_heads=2,
    decoder_head_dim=8,
    decoder_layer_types=["sliding_attention", "full_attention"],
    sliding_window=4,
    cross_attention_hidden_size=H,
    attn_logit_softcapping=50.0,
)

TEXT = None  # inputs from the model's input names (models7_sweep.inputs_for)

MODELS = {
    # Text classifiers: the configs of hub_sweep_extra.ITEM2.
    "albert_text_classifier": (extra.MODELS["albert_classifier"][0], TEXT),
    "bert_text_classifier": (extra.MODELS["bert_classifier"][0], TEXT),
    "distil_bert_text_classifier": (
        extra.MODELS["distil_bert_classifier"][0],
        TEXT,
    ),
    "roberta_text_classifier": (extra.MODELS["roberta_classifier"][0], TEXT),
    "xlm_roberta_text_classifier": (
        extra.MODELS["xlm_roberta_classifier"][0],
        TEXT,
    ),
    # Causal LMs / seq2seq.
    "bloom_causal_lm": (
        task("BloomCausalLM", "BloomBackbone", **_enc()),
        TEXT,
    ),
    "falcon_causal_lm": (
        task(
            "FalconCausalLM",
            "FalconBackbone",
            vocabulary_size=VOCAB,
            num_layers=1,
            num_attention_heads=2,
            hidden_dim=H,
            intermediate_dim=FFN,
        ),
        TEXT,
    ),
    "gemma3_causal_lm": (
        task(
            "Gemma3CausalLM",
            "Gemma3Backbone",
            image_size=16,
            head_dim=8,
            use_post_ffw_norm=True,
            use_post_attention_norm=True,
            use_sliding_window_attention=True,
            sliding_window_size=4,
            **_llama_like(num_layers=2),
        ),
        TEXT,
    ),
    "gpt_oss_causal_lm": (
        task(
            "GptOssCausalLM",
            "GptOssBackbone",
            num_experts=4,
            top_k=2,
            head_dim=8,
            sliding_window=4,
            **_llama_like(),
        ),
        TEXT,
    ),
    "pali_gemma_causal_lm": (pali, pali_inputs),
    "qwen2_causal_lm": (m7.MODELS["qwen2_causal_lm"][0], TEXT),
    "qwen3_moe_causal_lm": (
        task(
            "Qwen3MoeCausalLM",
            "Qwen3MoeBackbone",
            moe_intermediate_dim=16,
            num_experts=4,
            top_k=2,
            head_dim=8,
            **_llama_like(),
        ),
        TEXT,
    ),
    "smollm_causal_lm": (m7.MODELS["smollm_causal_lm"][0], TEXT),
    "t5gemma_seq2seq_lm": (
        task("T5GemmaSeq2SeqLM", "T5GemmaBackbone", **T5GEMMA),
        TEXT,
    ),
    "t5gemma2_seq2seq_lm": (
        task("T5Gemma2Seq2SeqLM", "T5Gemma2Backbone", **T5GEMMA),
        TEXT,
    ),
    "edrec_seq2seq_lm": (
        task(
            "EdRecSeq2SeqLM",
            "EdRecBackbone",
            vocab_size=VOCAB,
            num_layers_enc=1,
            num_layers_dec=1,
            hidden_dim=H,
            intermediate_dim=FFN,
            num_heads=2,
        ),
        TEXT,
    ),
    "blip2_seq2seq_lm": (t("BLIP2Seq2SeqLM", blip2), blip2_inputs),
    # Image classifiers.
    "cspnet_image_classifier": (
        t(
            "CSPNetImageClassifier",
            lambda: keras_hub.models.CSPNetBackbone(
                stem_filters=16,
                stem_kernel_size=3,
                stem_strides=1,
                stackwise_strides=2,
                stackwise_depth=[1, 1],
                stackwise_num_filters=[16, 32],
                image_shape=(None, None, 3),
                down_growth=True,
                bottle_ratio=(0.5,) + (1.0,),
                block_ratio=(1.0,) + (0.5,),
                expand_ratio=(2.0,) + (1.0,),
                block_type="dark_block",
                stage_type="csp",
            ),
            num_classes=3,
        ),
        img((32, 32, 3)),
    ),
    "densenet_image_classifier": (
        t(
            "DenseNetImageClassifier",
            lambda: keras_hub.models.DenseNetBackbone(
                stackwise_num_repeats=[1, 1],
                growth_rate=8,
                image_shape=(32, 32, 3),
            ),
            num_classes=3,
        ),
        img((32, 32, 3)),
    ),
    "hgnetv2_image_classifier": (
        t("HGNetV2ImageClassifier", hgnet, num_classes=3),
        img((32, 32, 3)),
    ),
    "mit_image_classifier": (
        t("MiTImageClassifier", mit, num_classes=3),
        img((32, 32, 3)),
    ),
    "mobilenet_image_classifier": (
        t("MobileNetImageClassifier", mobilenet, num_classes=3),
        img((32, 32, 3)),
    ),
    "mobilenetv5_image_classifier": (
        t("MobileNetV5ImageClassifier", mobilenetv5, num_classes=3),
        img((32, 32, 3)),
    ),
    "resnet_image_classifier": (
        t("ResNetImageClassifier", resnet, num_classes=3),
        img((32, 32, 3)),
    ),
    "resnet_v2_bottleneck_image_classifier": (
        t(
            "ResNetImageClassifier",
            lambda: resnet(
                block_type="bottleneck_block",
                use_pre_activation=True,
                input_conv_filters=[16],
            ),
            num_classes=3,
        ),
        img((32, 32, 3)),
    ),
    "vgg_image_classifier": (
        t(
            "VGGImageClassifier",
            lambda: keras_hub.models.VGGBackbone(
                stackwise_num_repeats=[2, 2],
                stackwise_num_filters=[8, 16],
                image_shape=(16, 16, 3),
            ),
            num_classes=3,
            pooling="flatten",
            pooling_hidden_dim=32,
        ),
        img((16, 16, 3)),
    ),
    "xception_image_classifier": (
        t(
            "XceptionImageClassifier",
            lambda: keras_hub.models.XceptionBackbone(
                stackwise_conv_filters=[[8, 16], [32, 32], [64, 64]],
                stackwise_pooling=[False, True, False],
                image_shape=(64, 64, 3),
            ),
            num_classes=3,
        ),
        img((64, 64, 3)),
    ),
    # Segmenters / detector.
    "deeplab_v3_image_segmenter": (
        t(
            "DeepLabV3ImageSegmenter",
            lambda: keras_hub.models.DeepLabV3Backbone(
                image_encoder=resnet(),
                low_level_feature_key="P2",
                spatial_pyramid_pooling_key="P4",
                dilation_rates=[6, 12, 18],
                upsampling_size=4,
                projection_filters=8,
            ),
            num_classes=3,
        ),
        img((64, 64, 3)),
    ),
    "segformer_image_segmenter": (
        t(
            "SegFormerImageSegmenter",
            lambda: keras_hub.models.SegFormerBackbone(
                image_encoder=mit(), projection_filters=16
            ),
            num_classes=3,
        ),
        img((32, 32, 3)),
    ),
    "sam3_pc_image_segmenter": (
        t("SAM3PromptableConceptImageSegmenter", extra.sam3),
        extra.sam3_inputs,
    ),
    "retinanet_object_detector": (
        t(
            "RetinaNetObjectDetector",
            lambda: keras_hub.models.RetinaNetBackbone(
                image_encoder=resnet(
                    block_type="bottleneck_block", input_conv_filters=[16]
                ),
                min_level=3,
                max_level=4,
                use_p5=False,
            ),
            num_classes=3,
        ),
        img((64, 64, 3)),
    ),
}


def run(name):
    builder, inputs = MODELS[name]
    t0 = time.time()
    make = m7.inputs_for if inputs is None else (lambda m: inputs())
    res, _ = extra.checked(name, builder, make)
    res["total_s"] = round(time.time() - t0, 1)
    return res


if __name__ == "__main__":
    extra.sweep_main(__doc__, MODELS, run, 240)
