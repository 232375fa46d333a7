"""Users' own models mixing Keras layers, pruned with the defaults (models7).

docs/models.md, section 11. Each model is tiny and built from Keras layers
the per-layer tests do not combine (GroupQueryAttention, MultiHeadAttention
over two axes, EinsumDense with other equations, ConvLSTM3D, Pipeline,
SpectralNormalization, Attention and AdditiveAttention, PReLU,
ReversibleEmbedding tied and untied, Embedding(mask_zero) into GRU and
LSTM, transposed and 1D separable/depthwise convolutions, Bidirectional
with another backward layer, grouped convolution), plus a quantized and a
LoRA model (refused with their messages), and `keras.applications`
constructors with non-default arguments (`include_top=False` with
pooling, width multipliers, other input shapes, `classifier_activation=
None`, no preprocessing). Each runs `hub_sweep.check_model` and prints one
JSON line per model.

Usage:

    KERAS_BACKEND=jax python -m benchmarks.models7_layers [names...]
"""

import argparse
import json

import keras
import numpy as np
from keras import layers as L

from benchmarks.hub_sweep import check_model

R = np.random.RandomState(0)


def f(*s):
    return R.randn(2, *s).astype("float32")


def m_gqa():
    x = keras.Input((8, 16))
    y = L.GroupQueryAttention(8, 4, 2)(x, x)
    return keras.Model(x, y), f(8, 16)


def m_mha_axes():
    x = keras.Input((4, 4, 16))
    y = L.MultiHeadAttention(2, 8, attention_axes=(1, 2))(x, x)
    return keras.Model(x, y), f(4, 4, 16)


def m_einsum(eq, out, inshape, bias=None):
    def b():
        x = keras.Input(inshape)
        y = L.EinsumDense(eq, output_shape=out, bias_axes=bias)(x)
        return keras.Model(x, y), f(*inshape)

    return b


def m_convlstm3d():
    x = keras.Input((2, 3, 3, 3, 4))
    y = L.ConvLSTM3D(4, 2)(x)
    return keras.Model(x, y), f(2, 3, 3, 3, 4)


def m_pipeline():
    x = keras.Input((8, 8, 3))
    p = L.Pipeline([L.Rescaling(0.5), L.CenterCrop(6, 6)])
    y = L.Conv2D(4, 3)(p(x))
    y = L.Flatten()(y)
    y = L.Dense(4)(y)
    return keras.Model(x, y), f(8, 8, 3)


def m_spectral():
    x = keras.Input((8,))
    y = L.SpectralNormalization(L.Dense(8))(x)
    return keras.Model(x, y), f(8)


def m_attn():
    q = keras.Input((4, 8))
    v = keras.Input((3, 8))
    a = L.Attention(use_scale=True, score_mode="concat")([q, v])
    b = L.AdditiveAttention()([q, v])
    y = L.Dense(4)(L.Concatenate()([a, b]))
    return keras.Model([q, v], y), [f(4, 8), f(3, 8)]


def m_prelu():
    x = keras.Input((4, 4, 8))
    y = L.PReLU()(L.Conv2D(8, 1)(x))
    return keras.Model(x, y), f(4, 4, 8)


def m_lora_dense():
    x = keras.Input((8,))
    y = L.Dense(8, lora_rank=2)(x)
    return keras.Model(x, y), f(8)


def m_rev_emb():
    x = keras.Input((5,), dtype="int32")
    e = L.ReversibleEmbedding(16, 8, tie_weights=False)
    h = e(x)
    h = L.Dense(8)(h)
    y = e(h, reverse=True)
    return keras.Model(x, y), R.randint(0, 16, (2, 5)).astype("int32")


def m_rev_emb_tied():
    x = keras.Input((5,), dtype="int32")
    e = L.ReversibleEmbedding(16, 8)
    h = e(x)
    h = L.Dense(8)(h)
    y = e(h, reverse=True)
    return keras.Model(x, y), R.randint(0, 16, (2, 5)).astype("int32")


def m_emb_mask():
    x = keras.Input((5,), dtype="int32")
    h = L.Embedding(16, 8, mask_zero=True)(x)
    y = L.GRU(4, return_sequences=True)(h)
    y = L.LSTM(4)(y)
    return keras.Model(x, y), np.array(
        [[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]], "int32"
    )


def m_conv_t():
    x = keras.Input((4, 4, 4, 4))
    y = L.Conv3DTranspose(4, 2, strides=2)(x)
    x2 = keras.Input((6, 4))
    y2 = L.Conv1DTranspose(4, 3, strides=2)(x2)
    y3 = L.SeparableConv1D(8, 3, depth_multiplier=2)(y2)
    y4 = L.DepthwiseConv1D(3, depth_multiplier=2)(y3)
    return keras.Model([x, x2], [y, y4]), [f(4, 4, 4, 4), f(6, 4)]


def m_bidir_gru_td():
    x = keras.Input((4, 6, 6, 3))
    h = L.TimeDistributed(L.Conv2D(4, 3))(x)
    h = L.TimeDistributed(L.Flatten())(h)
    h = L.Bidirectional(
        L.GRU(4, return_sequences=True),
        backward_layer=L.LSTM(4, return_sequences=True, go_backwards=True),
    )(h)
    return keras.Model(x, h), f(4, 6, 6, 3)


def m_quant():
    x = keras.Input((8,))
    y = L.Dense(8)(L.Dense(8)(x))
    m = keras.Model(x, y)
    m.quantize("int8")
    return m, f(8)


def m_groupconv():
    x = keras.Input((6, 6, 8))
    y = L.Conv2D(8, 3, groups=4)(x)
    return keras.Model(x, y), f(6, 6, 8)


def m_dilated():
    x = keras.Input((6, 6, 8))
    y = L.Conv2D(
        8, 3, dilation_rate=2, padding="same", data_format="channels_first"
    )(x)
    return keras.Model(x, y), f(6, 6, 8)


def app(name, shape=(32, 32, 3), **kw):
    """A `keras.applications` constructor with non-default arguments."""

    def build():
        ctor = getattr(keras.applications, name)
        m = ctor(weights=None, input_shape=shape, **kw)
        return m, R.rand(2, *shape).astype("float32") * 255

    return build


APPS = dict(
    app_mobilenet_a025_avg=app(
        "MobileNet", alpha=0.25, include_top=False, pooling="avg"
    ),
    app_mobilenetv2_a035_max_48=app(
        "MobileNetV2",
        shape=(48, 48, 3),
        alpha=0.35,
        include_top=False,
        pooling="max",
    ),
    app_mobilenetv3small_minimalistic=app(
        "MobileNetV3Small",
        alpha=0.75,
        minimalistic=True,
        classes=5,
        classifier_activation=None,
        include_preprocessing=False,
    ),
    app_mobilenetv3large_a075_avg=app(
        "MobileNetV3Large", alpha=0.75, include_top=False, pooling="avg"
    ),
    app_efficientnetb0_40x48_max=app(
        "EfficientNetB0", shape=(40, 48, 3), include_top=False, pooling="max"
    ),
    app_efficientnetv2b0_noprep=app(
        "EfficientNetV2B0",
        classes=3,
        classifier_activation=None,
        include_preprocessing=False,
    ),
    app_resnet50v2_avg=app("ResNet50V2", include_top=False, pooling="avg"),
    app_convnext_tiny_avg=app("ConvNeXtTiny", include_top=False, pooling="avg"),
)


CASES = dict(
    gqa=m_gqa,
    mha_axes=m_mha_axes,
    ein_abc_cde=m_einsum("abc,cde->abde", (None, 4, 4), (3, 8)),
    ein_ellipsis=m_einsum("...b,bc->...c", 8, (3, 8), "c"),
    ein_bcd=m_einsum("ab,bcd->acd", (4, 4), (8,), "d"),
    ein_transposed=m_einsum("abc,dc->abd", (3, 8), (3, 8)),
    ein_multi=m_einsum("abcd,cde->abe", (3, 8), (3, 4, 8)),
    convlstm3d=m_convlstm3d,
    pipeline=m_pipeline,
    spectral=m_spectral,
    attn=m_attn,
    prelu=m_prelu,
    lora_dense=m_lora_dense,
    rev_emb=m_rev_emb,
    rev_emb_tied=m_rev_emb_tied,
    emb_mask=m_emb_mask,
    conv_t=m_conv_t,
    bidir=m_bidir_gru_td,
    quant=m_quant,
    groupconv=m_groupconv,
    **APPS,
)


def _main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "cases", nargs="*", choices=[[]] + list(CASES), help="default: all"
    )
    only = parser.parse_args().cases or list(CASES)
    for name in only:
        res = dict(case=name)
        try:
            keras.utils.set_random_seed(0)
            m, x = CASES[name]()
            check_model(m, x, res)
        except Exception as e:
            res["build"] = f"{type(e).__name__}: {e}"[:500]
        summ = {
            k: res.get(k)
            for k in (
                "default_wrap",
                "wrappers",
                "n_pruned",
                "exact_bad",
                "skipped_rank2",
                "strip_cls_ok",
                "strip_out_maxdiff",
                "reload_maxdiff",
                "pruned_reload_maxdiff",
                "pruned_reload",
                "nm_ok",
                "nm_bad",
                "nm_warned",
                "global",
                "prune_once",
                "nm",
                "build",
            )
        }
        print(name, json.dumps(summ, default=str), flush=True)


if __name__ == "__main__":
    _main()
