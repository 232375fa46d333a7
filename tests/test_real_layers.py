"""Which weights of real models are pruned, and N:M / global on them.

Tiny keras-hub backbones (1 layer, hidden 8) built from constructors, and
the layers of keras.applications that used to block pruning: every weight
is either pruned or skipped with a reason, N:M groups run along each
kernel's contracted axes (read from EinsumDense equations), the global
allocation never prunes a tensor whole by default, and `is_pruned_m_by_n`
has tfmot's meaning. (The end-to-end model matrix is tests/test_models.py.)
"""

import warnings

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.core import patterns
from keras_prune.integration import registry
from keras_prune.integration.strip import pruning_wrappers

from conftest import to_np

keras_hub = pytest.importorskip("keras_hub")


def _backbones():
    m = keras_hub.models
    return {
        "bert": lambda: m.BertBackbone(
            vocabulary_size=50,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=8,
        ),
        "gpt2": lambda: m.GPT2Backbone(
            vocabulary_size=50,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=8,
        ),
        "gemma": lambda: m.GemmaBackbone(
            vocabulary_size=50,
            num_layers=1,
            num_query_heads=2,
            num_key_value_heads=1,
            hidden_dim=8,
            intermediate_dim=16,
            head_dim=4,
        ),
        "llama": lambda: m.LlamaBackbone(
            vocabulary_size=50,
            num_layers=1,
            num_query_heads=2,
            num_key_value_heads=1,
            hidden_dim=8,
            intermediate_dim=16,
            tie_word_embeddings=False,
        ),
        "qwen": lambda: m.QwenBackbone(
            vocabulary_size=50,
            num_layers=1,
            num_query_heads=2,
            num_key_value_heads=1,
            hidden_dim=8,
            intermediate_dim=16,
        ),
        "vit": lambda: m.ViTBackbone(
            image_shape=(8, 8, 3),
            patch_size=4,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            mlp_dim=16,
        ),
    }


_CACHE = {}


def backbone(name):
    if name not in _CACHE:
        keras.utils.set_random_seed(0)
        _CACHE[name] = _backbones()[name]()
    return _CACHE[name]


ATTENTION = ["query", "key", "value", "attention_output"]
# (layer, weight) pruned by default, in model order.
PRUNED = {
    "bert": ["token_embedding", "segment_embedding"]
    + ATTENTION
    + [
        "feedforward_intermediate_dense",
        "feedforward_output_dense",
        "pooled_dense",
    ],
    "gpt2": ["token_embedding"]
    + ATTENTION
    + ["feedforward_intermediate_dense", "feedforward_output_dense"],
    "gemma": ["token_embedding"]
    + ATTENTION
    + ["ffw_gating", "ffw_gating_2", "ffw_linear"],
    "llama": ["token_embedding", "token_embedding"]
    + ATTENTION
    + [
        "feedforward_intermediate_dense",
        "feedforward_gate_dense",
        "feedforward_output_dense",
    ],
    "qwen": ["token_embedding"]
    + ATTENTION
    + [
        "feedforward_intermediate_dense",
        "feedforward_gate_dense",
        "feedforward_output_dense",
    ],
    "vit": ["patch_embedding", "position_embedding"]
    + ATTENTION
    + ["dense_1", "dense_2"],
}


def plan(model, **kw):
    return kp.pruning_plan(model, **kw)


@pytest.mark.parametrize("name", list(PRUNED))
def test_default_selection_never_blocks(name):
    """Norm scales, biases, class tokens and position embeddings are
    skipped with a reason; nothing raises without skip_unsupported."""
    rows = plan(backbone(name), skip_unsupported=False)
    pruned = [r["layer"] for r in rows if r["pruned"]]
    assert pruned == PRUNED[name]
    skipped = [r for r in rows if not r["pruned"]]
    assert skipped and all(r["reason"] for r in skipped)
    for r in skipped:
        if r["weight"] in ("gamma", "beta", "scale") and "norm" in r["layer"]:
            assert r["reason"] == "normalization weight, never pruned"
        elif r["weight"] == "bias":
            assert r["reason"] == "bias: never pruned"
    n_weights = len(backbone(name).weights)
    assert len(rows) == n_weights  # every weight listed once


def test_reasons_of_embeddings_and_tokens():
    gpt2 = {(r["layer"], r["weight"]): r for r in plan(backbone("gpt2"))}
    assert not gpt2["position_embedding", "embeddings"]["pruned"]
    assert (
        "register_prunable_weights('PositionEmbedding'"
        in (gpt2["position_embedding", "embeddings"]["reason"])
    )
    assert gpt2["token_embedding", "embeddings"]["reason"].startswith(
        "token embedding, tied to the output projection"
    )
    llama = {(r["layer"], r["weight"]): r for r in plan(backbone("llama"))}
    head = llama["token_embedding", "reverse_embeddings"]
    assert head["pruned"] and head["shape"] == (8, 50)
    assert head["reason"].startswith("output projection (LM head")
    vit = {(r["layer"], r["weight"]): r for r in plan(backbone("vit"))}
    token = vit["vit_patching_and_embedding", "class_token"]
    assert not token["pruned"] and token["reason"].startswith("rank < 2")


@pytest.mark.parametrize("name", ["bert", "gpt2", "gemma", "qwen"])
def test_whole_backbone_prunes_with_defaults(name):
    pruned = kp.prune_once(backbone(name), 0.5)
    got = []
    for w in pruning_wrappers(pruned):
        for v, m in zip(w.pruned_weights, w.masks):
            mask = np.asarray(to_np(m))
            assert int(mask.sum()) == int(kp.kept_count(mask.size, 0.5))
            got.append(registry.owner_of(w.layer, v).name)
    assert sorted(got) == sorted(PRUNED[name])
    rows = plan(pruned)
    assert [r["layer"] for r in rows if r["pruned"]] == PRUNED[name]


def test_position_embedding_opt_in(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    kp.register_prunable_weights("PositionEmbedding", ["embeddings"])
    rows = plan(backbone("gpt2"))
    row = next(r for r in rows if r["layer"] == "position_embedding")
    assert row["pruned"]
    assert row["reason"] == "registered with register_prunable_weights"
    with pytest.raises(TypeError, match="list of variable names"):
        kp.register_prunable_weights("PositionEmbedding", "embeddings")


def test_layer_scale_and_rank_one_custom_layers_do_not_block():
    from keras.src.applications.convnext import LayerScale

    class Bias(L.Layer):  # an unknown layer with only a vector
        def build(self, shape):
            self.b = self.add_weight(shape=(1, 1, shape[-1]), name="token")

        def call(self, x):
            return x + self.b

    x = keras.Input((4, 4, 3))
    y = L.Conv2D(8, 1, name="conv")(x)
    y = LayerScale(1e-6, 8, name="scale")(y)
    y = Bias(name="tok")(y)
    model = keras.Model(x, y)
    pruned = kp.prune_low_magnitude(model)
    assert [w.layer.name for w in pruning_wrappers(pruned)] == ["conv"]
    reasons = {
        r["layer"]: r["reason"]
        for r in plan(pruned)
        if not r["pruned"] and r["weight"] != "bias"
    }
    assert set(reasons) == {"scale", "tok"}
    assert reasons["scale"].startswith("rank < 2")  # LayerScale's gamma
    assert reasons["tok"].startswith("rank < 2")


def test_unknown_rank2_weight_raises_naming_layer_and_fix():
    class Mix(L.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 3), name="w")
            self.s = self.add_weight(shape=(3,), name="s")

        def call(self, x):
            return keras.ops.matmul(x, self.w) * self.s

    x = keras.Input((4,))
    model = keras.Model(x, Mix(name="mix")(L.Dense(4)(x)))
    with pytest.raises(kp.UnsupportedLayerError) as info:
        kp.prune_low_magnitude(model)
    message = str(info.value)
    assert "'mix' (Mix)" in message and "w (4, 3)" in message
    assert "register_prunable_weights('Mix'" in message
    assert "skip_unsupported=True" in message
    rows = plan(model)  # skip_unsupported=True by default: listed
    assert next(r["reason"] for r in rows if r["layer"] == "mix").startswith(
        "unknown layer, left dense"
    )


# ---------------------------------------------------------------------------
# N:M along contracted axes.


def ref_nm(w, m, n, axes):
    """Keep the n - m largest |w| in each group of n consecutive values of
    the flattened `axes` (C order), padded groups, ties: lower position."""
    w = np.abs(np.asarray(w, np.float32))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    axes = tuple(sorted(a % w.ndim for a in axes))
    rest = tuple(i for i in range(w.ndim) if i not in axes)
    moved = np.transpose(w, rest + axes)
    inner = moved.shape[len(rest) :]
    flat = moved.reshape(moved.shape[: len(rest)] + (-1,))
    length = flat.shape[-1]
    g = -(-length // n)
    padded = np.full(flat.shape[:-1] + (g * n,), -1.0, np.float32)
    padded[..., :length] = flat
    grouped = padded.reshape(flat.shape[:-1] + (g, n))
    order = np.argsort(-grouped, axis=-1, kind="stable")
    keep = np.zeros(grouped.shape, bool)
    np.put_along_axis(keep, order[..., : n - m], True, axis=-1)
    keep = keep.reshape(flat.shape[:-1] + (g * n,))[..., :length]
    keep = keep.reshape(keep.shape[:-1] + inner)
    return np.transpose(keep, np.argsort(rest + axes))


def nm_masks(pruned):
    out = {}
    for w in pruning_wrappers(pruned):
        for v, m in zip(w.pruned_weights, w.masks):
            out[registry.owner_of(w.layer, v).name, v.name] = (
                registry.owner_of(w.layer, v),
                v,
                np.asarray(to_np(m)),
            )
    return out


def test_mha_output_kernel_grouped_along_heads_and_head_dim():
    """The issue's example: attention_output (2, 32, 64) used to stay at
    0.0; now 2:4 along the 64 flattened (head, head_dim) inputs."""
    keras.utils.set_random_seed(1)
    x = keras.Input((16, 64))
    model = keras.Model(x, L.MultiHeadAttention(2, 32, name="mha")(x, x))
    before = {v.path: to_np(v) for v in model.weights}
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    got = nm_masks(pruned)
    assert set(got) == {(n, "kernel") for n in ATTENTION}
    for (name, _), (owner, v, mask) in got.items():
        axes = patterns.contracted_axes(owner, v)
        assert axes == ((0, 1) if name == "attention_output" else 0)
        np.testing.assert_array_equal(
            mask, ref_nm(before[v.path], 2, 4, axes), err_msg=name
        )
        assert mask.mean() == 0.5
        kept = to_np(v) * mask
        assert kp.is_pruned_m_by_n(kept, (2, 4), axis=axes)
    out = got["attention_output", "kernel"][2]
    # Exactly 2 kept of every 4 consecutive (head, head_dim) inputs.
    groups = out.reshape(64 // 4, 4, 64).sum(axis=1)
    assert np.all(groups == 2)
    # The report reads the pattern along the same axes.
    patterns_of = {
        r["layer"]: r["pattern"]
        for r in kp.sparsity_report(pruned)
        if r["weight"] == "kernel"
    }
    assert patterns_of == {n: "2:4" for n in ATTENTION}
    # Grouping across the 2 heads (axis 0, padded groups of 2) is what the
    # old code did: it kept everything.
    assert not np.array_equal(out, ref_nm(np.abs(out) + 1.0, 2, 4, 0))


@pytest.mark.parametrize("name", ["gemma", "qwen"])
def test_hub_attention_kernels_nm_along_equation_axes(name):
    """Gemma's (heads, hidden, head_dim) query and single-head key/value
    kernels group along `hidden` (axis 1); Qwen's (hidden, heads, dim)
    along axis 0; nothing stays dense."""
    model = backbone(name)
    before = {v.path: to_np(v) for v in model.weights}
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    got = nm_masks(pruned)
    expected_axes = {
        "gemma": {"query": 1, "key": 1, "value": 1, "attention_output": (0, 1)},
        "qwen": {"query": 0, "key": 0, "value": 0, "attention_output": (0, 1)},
    }[name]
    for layer_name, axes in expected_axes.items():
        owner, v, mask = got[layer_name, "kernel"]
        assert patterns.contracted_axes(owner, v) == axes
        np.testing.assert_array_equal(
            mask, ref_nm(before[v.path], 2, 4, axes), err_msg=layer_name
        )
        assert mask.mean() == 0.5, layer_name
    for (layer_name, _), (owner, v, mask) in got.items():
        assert mask.mean() == 0.5, layer_name  # 8-wide hidden: exact 2:4
        axes = patterns.contracted_axes(owner, v)
        assert kp.is_pruned_m_by_n(to_np(v) * mask, (2, 4), axis=axes)


def test_llama_untied_lm_head_pruned_along_hidden():
    emb = backbone("llama").get_layer("token_embedding")
    before = {v.name: to_np(v) for v in emb.weights}
    wrapper = kp.prune_low_magnitude(emb, sparsity_m_by_n=(2, 4))
    wrapper.build()
    wrapper.update_masks_now(0.5)
    masks = {
        v.name: np.asarray(to_np(m))
        for v, m in zip(wrapper.pruned_weights, wrapper.masks)
    }
    assert set(masks) == {"embeddings", "reverse_embeddings"}
    np.testing.assert_array_equal(
        masks["embeddings"], ref_nm(before["embeddings"], 2, 4, -1)
    )
    np.testing.assert_array_equal(
        masks["reverse_embeddings"],
        ref_nm(before["reverse_embeddings"], 2, 4, 0),
    )
    assert masks["reverse_embeddings"].mean() == 0.5
    # (hidden, vocab) groups along hidden: tfmot's "C_OUT" layout check.
    assert kp.is_pruned_m_by_n(
        before["reverse_embeddings"] * masks["reverse_embeddings"], (2, 4)
    )


@pytest.mark.parametrize(
    "equation,kernel_shape,axes",
    [
        ("abc,cde->abde", (8, 2, 4), 0),
        ("abcd,cde->abe", (2, 4, 8), (0, 1)),
        ("btd,ndh->btnh", (2, 8, 4), 1),
        ("bsd,kdh->bskh", (1, 8, 4), 1),
        ("btnh,nhd->btd", (2, 4, 8), (0, 1)),
        ("...b,bc->...c", (6, 3), 0),
        ("ab,bc->ac", (6, 3), 0),
    ],
)
def test_contracted_axes_from_equation(equation, kernel_shape, axes):
    layer = L.EinsumDense(equation, output_shape=(None,) * 1)
    layer.equation = equation  # only the equation is read
    weight = keras.Variable(np.zeros(kernel_shape, "float32"), name="kernel")
    assert patterns.contracted_axes(layer, weight) == axes


def test_nm_that_cannot_apply_is_refused():
    # The one pruned kernel (2, 5) has 2 values per contracted line: 2:4
    # would leave it dense, so the layer is refused by name (spec.check_fits).
    model = keras.Sequential([keras.Input((2,)), L.Dense(5, name="narrow")])
    with pytest.raises(ValueError, match="Layer 'narrow'.*sparsity_m_by_n"):
        kp.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))


# ---------------------------------------------------------------------------
# is_pruned_m_by_n: tfmot's meaning of last_channel.


def test_is_pruned_m_by_n_tfmot_vectors():
    col = np.array([[1, 2, 3, 4]]).T  # Dense (in=4, out=1): 4 non-zeros
    assert not kp.is_pruned_m_by_n(col, (2, 4), "C_OUT")
    assert kp.is_pruned_m_by_n(col, (2, 4), "C_IN")  # rows of 1
    row = np.array([[1, 2, 3, 4]])
    assert not kp.is_pruned_m_by_n(row, (2, 4), "C_IN")
    assert kp.is_pruned_m_by_n(row, (2, 4), "C_OUT")
    assert kp.is_pruned_m_by_n(row, (2, 4))  # default "C_OUT": 1 input
    # tfmot's truth table (C_IN: along the last axis).
    assert not kp.is_pruned_m_by_n(
        np.array([[1, 2, 0, 0, 5, 6, 7]]), (2, 4), "C_IN"
    )
    assert kp.is_pruned_m_by_n(
        np.array([[1, 2, 0, 0, 5, 6, 0]]), (2, 4), "C_IN"
    )
    # Conv2D (h, w, in, out), C_OUT: groups along in for every (h, w, out).
    conv = np.zeros((1, 1, 4, 2), np.float32)
    conv[0, 0, :2, 0] = 1
    conv[0, 0, 1:, 1] = 1  # 3 of 4 inputs of output 1
    assert not kp.is_pruned_m_by_n(conv, (2, 4), "C_OUT")
    conv[0, 0, 3, 1] = 0
    assert kp.is_pruned_m_by_n(conv, (2, 4), "C_OUT")
    # tfmot matches the end of the string.
    assert kp.is_pruned_m_by_n(conv, (2, 4), "TF_C_OUT")


def test_is_pruned_m_by_n_errors_are_tfmot_s():
    with pytest.raises(
        ValueError,
        match="number of zeros can't be more than number elements. "
        "received: 5 zeros in 4 elements.",
    ):
        kp.is_pruned_m_by_n(np.ones((4, 4)), (5, 4))
    with pytest.raises(
        ValueError, match="^last_channel must be `C_IN` or `C_OUT`$"
    ):
        kp.is_pruned_m_by_n(np.ones((4, 4)), (2, 4), "C_MID")
    with pytest.raises(
        ValueError,
        match=r"^weight tensor with shape: \(2, 4, 8\) is not supported\.$",
    ):
        kp.is_pruned_m_by_n(np.ones((2, 4, 8)), (2, 4), "C_OUT")
    # keras-prune's axis= checks any rank along the given axes.
    w = np.ones((2, 4, 8), np.float32)
    w[:, 2:, :] = 0  # 2 of every 4 head_dim values
    assert kp.is_pruned_m_by_n(w, (2, 4), axis=1)
    assert kp.is_pruned_m_by_n(w, (2, 4), axis=(0, 1))
    assert not kp.is_pruned_m_by_n(w, (2, 4), axis=2)


# ---------------------------------------------------------------------------
# Global allocation guard.


def test_global_guard_keeps_depthwise_and_conv_alive():
    """Fresh MobileNet-like stack at 0.8 global: the small-magnitude
    depthwise kernel would be pruned whole; the guard keeps one weight per
    output channel, the total stays exact, and the layer is named."""
    keras.utils.set_random_seed(3)
    x = keras.Input((6, 6, 8))
    y = L.DepthwiseConv2D(3, name="dw")(x)
    y = L.Conv2D(16, 1, name="pw")(y)
    model = keras.Model(x, L.Dense(4, name="head")(y))
    dw = model.get_layer("dw")
    dw.kernel.assign(to_np(dw.kernel) * 1e-3)
    sizes = {"dw": 3 * 3 * 8, "pw": 8 * 16, "head": 16 * 4}
    floors = {"dw": 8, "pw": 16, "head": 4}
    total = sum(sizes.values())
    k = int(kp.kept_count(total, 0.8))

    def counts(pruned):
        return {
            w.layer.name: int(np.asarray(to_np(w.masks[0])).sum())
            for w in pruning_wrappers(pruned)
        }

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = kp.prune_once(model, 0.8, allocation="global")
    got = counts(pruned)
    assert got["dw"] == floors["dw"]
    assert sum(got.values()) == k
    assert all(got[n] >= floors[n] for n in sizes)
    messages = [str(w.message) for w in caught]
    assert any("layer 'dw'" in m and "floor" in m for m in messages)
    guard = {(r["layer"], r["weight"]): r["reason"] for r in plan(pruned)}
    assert "held at the global guard's floor (8 kept" in guard["dw", "kernel"]
    free = counts(
        kp.prune_once(model, 0.8, allocation="global", max_sparsity=1.0)
    )
    assert free["dw"] == 0 and sum(free.values()) == k
