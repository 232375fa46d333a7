"""Structured patterns: blocks, N:M groups and whole channels.

Reference: /work/shared/reference/tfmot-semantics.md §2.2 (block vectors),
§2.3 (N:M vectors) and §8 items 17-20. Every mask is compared with an
independent NumPy reference written here, on every backend; the SHA-256
constants at the end pin the masks to be bit-identical across backends.

Deliberate differences from tfmot that are asserted here: block sparsity also
applies to conv kernels (blocks over the last two axes), N:M follows the
schedule (gradual path, recomputed at every update; tfmot freezes the mask at
step 1), and N:M applies to every prunable layer kind (tfmot only rank 2 and
4).
"""

import hashlib

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.core import patterns

from conftest import BACKEND
from conftest import to_np

# ---------------------------------------------------------------------------
# NumPy references, independent of the library.


def ref_kept_count(n, sparsity):
    """tfmot: max(round_half_even(float32(n) * (1 - float32(s))), 1)."""
    one = np.float32(1.0)
    return int(max(np.round(np.float32(n) * (one - np.float32(sparsity))), 1))


def _axes_last(a, axis):
    """`a` with `axis` (an int, or a tuple flattened in C order) moved last,
    and the function that moves such an array back."""
    a = np.asarray(a)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(sorted(x % a.ndim for x in axes))
    rest = tuple(i for i in range(a.ndim) if i not in axes)
    moved = np.transpose(a, rest + axes)
    inner = moved.shape[len(rest) :]
    flat = moved.reshape(moved.shape[: len(rest)] + (-1,))

    def back(x):
        x = x.reshape(x.shape[:-1] + inner)
        return np.transpose(x, np.argsort(rest + axes))

    return flat, back


def _grouped(a, n, axis, fill):
    """`a` with `axis` moved last, padded with `fill`, split in groups of n."""
    a, _ = _axes_last(a, axis)
    length = a.shape[-1]
    groups = -(-length // n)
    padded = np.full(a.shape[:-1] + (groups * n,), fill, dtype=a.dtype)
    padded[..., :length] = a
    return padded.reshape(a.shape[:-1] + (groups, n)), length


def ref_m_by_n(weights, m, n, axis, sparsity=None):
    """N:M mask: in each group keep the n - m largest |w| (ties: first)."""
    w = np.abs(np.asarray(weights, np.float32))
    g, length = _grouped(w, n, axis, np.float32(-1.0))
    order = np.argsort(-g, axis=-1, kind="stable")
    keep = np.zeros(g.shape, bool)
    np.put_along_axis(keep, order[..., : n - m], True, axis=-1)
    if sparsity is not None:
        loss = np.where(keep, 0.0, np.maximum(g, 0.0)).sum(-1, dtype=np.float32)
        fraction = min(np.float32(sparsity) * np.float32(n / m), 1.0)
        n_dense = 0 if fraction >= 1 else ref_kept_count(loss.size, fraction)
        dense = np.zeros(loss.size, bool)
        dense[np.argsort(-loss.ravel(), kind="stable")[:n_dense]] = True
        keep |= dense.reshape(loss.shape)[..., None]
    flat = keep.reshape(g.shape[:-2] + (-1,))[..., :length]
    return _axes_last(weights, axis)[1](flat)


def group_counts(mask, n, axis):
    """(kept per group, real entries per group) of a bool mask."""
    g, length = _grouped(np.asarray(mask, bool), n, axis, False)
    sizes = np.minimum(n, length - n * np.arange(g.shape[-2]))
    return g.sum(-1), np.broadcast_to(sizes, g.shape[:-1])


def assert_m_by_n(mask, m, n, axis):
    """Every group keeps exactly min(n - m, real entries) weights."""
    kept, sizes = group_counts(mask, n, axis)
    np.testing.assert_array_equal(kept, np.minimum(n - m, sizes))


def ref_block(weights, block, sparsity, pooling="AVG"):
    """Global selection of blocks over the last two axes (SAME padding)."""
    w = np.abs(np.asarray(weights, np.float32))
    br, bc = block
    rows, cols = w.shape[-2:]
    nr, nc = -(-rows // br), -(-cols // bc)
    scores = np.zeros(w.shape[:-2] + (nr, nc), np.float32)
    for i in range(nr):
        for j in range(nc):
            b = w[..., i * br : (i + 1) * br, j * bc : (j + 1) * bc]
            scores[..., i, j] = (
                b.max(axis=(-2, -1))
                if pooling == "MAX"
                else b.mean(axis=(-2, -1))
            )
    k = ref_kept_count(scores.size, sparsity)
    keep = np.zeros(scores.size, bool)
    keep[np.argsort(-scores.ravel(), kind="stable")[:k]] = True
    keep = keep.reshape(scores.shape)
    full = np.repeat(np.repeat(keep, br, axis=-2), bc, axis=-1)
    return full[..., :rows, :cols]


def ref_channels(weights, sparsity, axis):
    w = np.moveaxis(np.asarray(weights, np.float64), axis, -1)
    norms = np.sqrt((w.reshape(-1, w.shape[-1]) ** 2).sum(0))
    k = ref_kept_count(norms.size, sparsity)
    keep = np.zeros(norms.size, bool)
    keep[np.argsort(-norms, kind="stable")[:k]] = True
    shape = [1] * np.ndim(weights)
    shape[axis] = norms.size
    return np.broadcast_to(keep.reshape(shape), np.shape(weights))


def run(fn, weights, *args, **kwargs):
    """`fn(weights, *args, **kwargs)` as NumPy. On JAX the whole function is
    jit-compiled once: eager JAX compiles every op on its own (seconds per
    call on a busy 2-core CI machine)."""
    weights = np.asarray(weights, np.float32)
    if BACKEND == "jax":
        import jax

        out = jax.jit(lambda w: fn(w, *args, **kwargs))(weights)
    else:
        out = fn(weights, *args, **kwargs)
    return tuple(to_np(o) for o in out)


def masks_of(wrapper):
    return [to_np(m) for m in wrapper.masks]


def fit_steps(model, x, y, steps, lr=0.05):
    """`steps` training batches of 4 (compiles once per model)."""
    if not getattr(model, "_kp_compiled", False):
        model.compile(keras.optimizers.SGD(lr), "mse")
        model._kp_compiled = True
    n = 4 * steps
    model.fit(
        [a[:n] for a in x] if isinstance(x, list) else x[:n],
        y[:n],
        batch_size=4,
        epochs=1,
        shuffle=False,
        verbose=0,
    )


# ---------------------------------------------------------------------------
# Blocks (tfmot §2.2 vectors).

QUARTERS = np.array(
    [
        [0.1, 0.1, 0.2, 0.2],
        [0.1, 0.1, 0.2, 0.2],
        [0.3, 0.3, 0.4, 0.4],
        [0.3, 0.3, 0.4, 0.4],
    ],
    np.float32,
)
ARANGE = np.arange(1, 31, dtype=np.float32).reshape(5, 6)
# 5x6 arange, AVG 2x2, s=0.5: 4 of 9 blocks, threshold 20.5 (edge blocks of
# the last row average only their 2 valid entries: 25.5, 27.5, 29.5).
ARANGE_AVG_2x2 = np.array(
    [[0] * 6, [0] * 6, [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1], [1] * 6], bool
)
# The same with MAX 2x3: 3 of 6 blocks (30, 27, 24), threshold 24.
ARANGE_MAX_2x3 = np.array(
    [[0] * 6, [0] * 6, [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [1] * 6], bool
)
BOTTOM_HALF = np.array([[0] * 4] * 2 + [[1] * 4] * 2, bool)

BLOCK_VECTORS = [
    # (weights, block, pooling, expected mask, expected threshold)
    (QUARTERS, (2, 2), "AVG", BOTTOM_HALF, 0.3),
    (QUARTERS, (2, 2), "MAX", BOTTOM_HALF, 0.3),
    (-ARANGE, (2, 2), "AVG", ARANGE_AVG_2x2, 20.5),
    (ARANGE, (2, 3), "MAX", ARANGE_MAX_2x3, 24.0),
]


@pytest.mark.parametrize("w,block,pooling,expected,threshold", BLOCK_VECTORS)
def test_block_mask_tfmot_vectors(w, block, pooling, expected, threshold):
    mask, t, bad = run(patterns.block_mask, w, 0.5, block, pooling)
    np.testing.assert_array_equal(to_np(mask), expected)
    assert float(to_np(t)) == np.float32(threshold)
    assert int(to_np(bad)) == 0
    np.testing.assert_array_equal(expected, ref_block(w, block, 0.5, pooling))


def test_block_mask_random_matches_reference():
    rng = np.random.RandomState(3)
    for shape, block, s, pooling in [
        ((7, 9), (3, 2), 0.3, "MAX"),
        ((2, 3, 5, 6), (2, 4), 0.5, "AVG"),
    ]:
        w = rng.randn(*shape).astype("float32")
        mask, _, _ = run(patterns.block_mask, w, s, block, pooling)
        np.testing.assert_array_equal(
            to_np(mask), ref_block(w, block, s, pooling)
        )


def test_block_sparsity_in_fit_dense_and_conv2d():
    """The 5x6 §2.2 vectors through pruned Dense layers trained with fit,
    and a Conv2D kernel blocked over its last two axes (in, out)."""
    a = keras.Input((5,), name="a")
    c = keras.Input((1, 2, 5), name="c")
    sched = kp.ConstantSparsity(0.5, 0, frequency=1)

    def wrap(layer, block, pooling):
        return kp.prune_low_magnitude(
            layer, sched, block_size=block, block_pooling_type=pooling
        )

    w1 = wrap(L.Dense(6, name="avg22"), (2, 2), "AVG")
    w2 = wrap(L.Dense(6, name="max23"), (2, 3), "MAX")
    w5 = wrap(L.Conv2D(6, (1, 2), name="conv"), (2, 2), "AVG")
    outs = [w1(a), w2(a), L.Flatten()(w5(c))]
    model = keras.Model([a, c], L.Concatenate()(outs))
    w1.layer.kernel.assign(-ARANGE)
    w2.layer.kernel.assign(ARANGE)
    # Kernel (1, 2, 5, 6): position 1 is 10x position 0, so the global
    # selection of 9 of the 18 blocks keeps every block of position 1.
    conv_kernel = np.stack([ARANGE, 10 * ARANGE])[None]
    w5.layer.kernel.assign(conv_kernel)
    rng = np.random.RandomState(0)
    x = [rng.randn(8, 5), rng.randn(8, 1, 2, 5)]
    x = [v.astype("float32") for v in x]
    y = np.zeros((8, 6 + 6 + 6), "float32")
    fit_steps(model, x, y, 2, lr=0.0)
    assert kp.pruning_step(model) == 2
    np.testing.assert_array_equal(masks_of(w1)[0], ARANGE_AVG_2x2)
    assert float(to_np(w1.thresholds[0])) == 20.5
    np.testing.assert_array_equal(masks_of(w2)[0], ARANGE_MAX_2x3)
    assert float(to_np(w2.thresholds[0])) == 24.0
    conv_mask = masks_of(w5)[0]
    assert conv_mask.shape == (1, 2, 5, 6)
    assert not conv_mask[0, 0].any() and conv_mask[0, 1].all()
    np.testing.assert_array_equal(
        conv_mask, ref_block(conv_kernel, (2, 2), 0.5)
    )
    # Blocks never straddle kernel positions. With equal magnitudes at both
    # positions, 9 of the 18 blocks are kept: 4 at each position, and the
    # 9th (score 18.5, tied) at the lower position.
    mask = run(patterns.block_mask, np.stack([ARANGE, ARANGE]), 0.5, (2, 2))[0]
    np.testing.assert_array_equal(mask[1], ARANGE_AVG_2x2)
    assert mask[0].sum() == ARANGE_AVG_2x2.sum() + 4
    assert mask[0, 2:4, 2:4].all() and not mask[1, 2:4, 2:4].any()
    stripped = kp.strip_pruning(model)
    np.testing.assert_array_equal(
        to_np(stripped.get_layer("avg22").kernel) != 0, ARANGE_AVG_2x2
    )


# ---------------------------------------------------------------------------
# N:M: tfmot's vectors (§2.3) and the padding rule.

NM_VECTORS = [
    # (weights, (m, n), axis, expected)
    (
        [[0.25, -1.33, 0.43, -0.11], [0.47, 0.92, -0.13, -2.23]],
        (2, 4),
        -1,
        [[0, 1, 1, 0], [0, 1, 0, 1]],
    ),
    (
        [[1.71, -0.27, -0.3, -0.61, -0.19], [-0.4, 1.12, 0.46, -1.12, 0.17]],
        (3, 5),
        -1,
        [[1, 0, 0, 1, 0], [0, 1, 0, 1, 0]],
    ),
    (
        [[-0.49, -0.66, 0.42], [0.31, 0.63, -1.63]],
        (2, 4),
        -1,
        [[1, 1, 0], [0, 1, 1]],
    ),
    (
        [[-0.49, -0.66, 0.42], [0.31, 0.63, -1.63]],
        (1, 2),
        -1,
        [[0, 1, 1], [0, 1, 1]],
    ),
    ([[1.24], [1.11]], (2, 4), -1, [[1], [1]]),
    # Dense kernel (in=4, out=2), grouped along the input axis (default).
    (
        [[0.74, 0.68], [-0.89, -0.45], [-1.68, 1.24], [0.31, -0.6]],
        (2, 4),
        None,
        [[0, 1], [1, 0], [1, 1], [0, 0]],
    ),
    # Conv kernel (1, 1, Cin=4, Cout=2): groups along axis -2 (default).
    (
        [[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
        (2, 4),
        None,
        [[[[0, 0], [1, 0], [0, 1], [1, 1]]]],
    ),
]


@pytest.mark.parametrize("w,m_by_n,axis,expected", NM_VECTORS)
def test_m_by_n_tfmot_vectors(w, m_by_n, axis, expected):
    w = np.asarray(w, np.float32)
    mask, threshold, bad = run(patterns.m_by_n_mask, w, m_by_n, axis=axis)
    mask = to_np(mask)
    np.testing.assert_array_equal(mask, np.asarray(expected, bool))
    kept = np.abs(w)[mask]
    assert float(to_np(threshold)) == kept.min()
    assert int(to_np(bad)) == 0
    ref_axis = patterns.input_axis(w.shape) if axis is None else axis
    np.testing.assert_array_equal(mask, ref_m_by_n(w, *m_by_n, ref_axis))


@pytest.mark.parametrize("m_by_n", [(2, 4), (1, 4), (3, 8)])
def test_m_by_n_padding_exact_counts(m_by_n):
    """7 input channels: 2:4 keeps 2 + 2 of 7 (prunes 3/7, tfmot's
    Conv2D_not_multiple_4); 1:4 keeps 3 + 3; 3:8 keeps 5 of 7."""
    m, n = m_by_n
    w = np.random.RandomState(1).randn(3, 3, 7, 5).astype("float32")
    mask = run(patterns.m_by_n_mask, w, m_by_n)[0]
    per_column = {(2, 4): 4, (1, 4): 6, (3, 8): 5}[m_by_n]
    assert np.all(mask.sum(axis=-2) == per_column)
    assert mask.sum() == per_column * 3 * 3 * 5
    assert_m_by_n(mask, m, n, axis=-2)
    # tfmot's meaning: "C_OUT" names a Keras kernel (..., in, out).
    assert kp.is_pruned_m_by_n(w * mask, m_by_n, "C_OUT")
    np.testing.assert_array_equal(mask, ref_m_by_n(w, m, n, -2))
    if m_by_n == (2, 4):
        assert mask.mean() == pytest.approx(4 / 7)  # sparsity 3/7 = 0.428571


def test_is_pruned_m_by_n_checker():
    # tfmot's meaning of `last_channel` (issue 14 item 3): it names the last
    # axis of the tensor. "C_OUT" (default): a Keras kernel (in, out),
    # checked along its input axis; "C_IN": along the last axis.
    ok = np.array([[1, 0], [0, 2], [0, 0], [3, 4]], np.float32)  # (in, out)
    assert kp.is_pruned_m_by_n(ok, (2, 4))
    assert kp.is_pruned_m_by_n(ok, (2, 4), "C_OUT")
    bad_in = np.array([[1, 1], [1, 0], [1, 0], [0, 0]], np.float32)
    assert not kp.is_pruned_m_by_n(bad_in, (2, 4))  # column 0: 3 of 4
    assert kp.is_pruned_m_by_n(bad_in, (2, 4), "C_IN")  # rows of 2
    assert kp.is_pruned_m_by_n(np.array([[1, 1, 0, 0, 1]]), (2, 4), "C_IN")
    assert not kp.is_pruned_m_by_n(np.array([[1, 1, 1, 0, 1]]), (2, 4), "C_IN")
    # A trailing partial group may hold n - m nonzeros.
    assert not kp.is_pruned_m_by_n(
        np.array([[0, 0, 0, 0, 1, 1, 1]]), (2, 4), "C_IN"
    )
    with pytest.raises(ValueError, match="last_channel must be `C_IN` or"):
        kp.is_pruned_m_by_n(ok, (2, 4), "C_MID")


# ---------------------------------------------------------------------------
# N:M on every prunable layer kind, trained with fit.


def f(*shape):
    return ("float32", shape)


# name -> (layer factory, input (dtype, shape), [expected grouping axis per
# pruned weight]). Axes per the wrapper: -1 for conv-transpose kernels
# (..., out, in) and embeddings (vocab, dim), -2 for conv kernels of rank
# > 2 (..., in, out), 0 otherwise (Dense-like (in, ...) and recurrent
# kernels). Input-channel counts are not multiples of 4 where possible, to
# exercise the padded last group.
NM_CASES = {
    "Dense": (lambda: L.Dense(3), f(7), [0]),
    "EinsumDense": (
        lambda: L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c"),
        f(9),
        [0],
    ),
    "Conv1D": (lambda: L.Conv1D(3, 2), f(4, 6), [-2]),
    "Conv2D": (lambda: L.Conv2D(2, 2), f(3, 3, 5), [-2]),
    "Conv3D": (lambda: L.Conv3D(2, 2), f(2, 2, 2, 8), [-2]),
    "Conv1DTranspose": (lambda: L.Conv1DTranspose(3, 2), f(3, 6), [-1]),
    "Conv2DTranspose": (lambda: L.Conv2DTranspose(4, 2), f(2, 2, 7), [-1]),
    "Embedding": (lambda: L.Embedding(10, 6), ("int32", (3,)), [-1]),
    "SimpleRNN": (lambda: L.SimpleRNN(5), f(2, 6), [0, 0]),
    "LSTM": (lambda: L.LSTM(5), f(2, 6), [0, 0]),
    "GRU": (lambda: L.GRU(5), f(2, 7), [0, 0]),
    # Self-attention; EinsumDense kernels (6, 3, 2) x3 contract axis 0; the
    # output kernel (3, 2, 6) contracts (heads, head_dim): axes (0, 1).
    "MultiHeadAttention": ("mha", f(2, 6), [0, 0, 0, (0, 1)]),
}


def _kind_model(cases):
    rng = np.random.RandomState(0)
    inputs, outputs, xs = [], [], []
    for name, (factory, (dtype, shape), _) in cases.items():
        inp = keras.Input(shape, dtype=dtype, name=f"in_{name}")
        if factory == "mha":
            out = L.MultiHeadAttention(3, 2, name=name)(inp, inp)
        else:
            layer = factory()
            layer.name = name
            out = layer(inp)
        inputs.append(inp)
        outputs.append(L.Flatten()(out))
        if dtype == "int32":
            xs.append(rng.randint(0, 10, size=(8,) + shape).astype(dtype))
        else:
            xs.append(rng.randn(8, *shape).astype(dtype))
    model = keras.Model(inputs, L.Concatenate()(outputs))
    y = rng.randn(8, model.outputs[0].shape[-1]).astype("float32")
    return model, xs, y


@pytest.mark.parametrize("m_by_n", [(2, 4)])
def test_m_by_n_every_layer_kind_in_fit(m_by_n):
    m, n = m_by_n
    model, x, y = _kind_model(NM_CASES)
    pruned = kp.prune_low_magnitude(
        model,
        kp.ConstantSparsity(0.5, 0, frequency=1),
        sparsity_m_by_n=m_by_n,
    )
    wrappers = {
        name: pruned.get_layer(f"prune_low_magnitude_{name}")
        for name in NM_CASES
    }
    initial = {
        name: [to_np(v) for v in w.pruned_weights]
        for name, w in wrappers.items()
    }
    fit_steps(pruned, x, y, 2)
    assert kp.pruning_step(pruned) == 2
    stripped_vals = {}
    for name, wrapper in wrappers.items():
        axes = NM_CASES[name][2]
        got = masks_of(wrapper)
        assert len(got) == len(axes), name
        for mask, w0, axis in zip(got, initial[name], axes):
            assert_m_by_n(mask, m, n, axis)
            # The kept weights are the n - m largest of the initial |w|.
            np.testing.assert_array_equal(
                mask, ref_m_by_n(w0, m, n, axis), err_msg=name
            )
        stripped_vals[name] = got
    # Exact counts with padding: Dense 7 inputs -> 4 of 7 kept per unit.
    assert masks_of(wrappers["Dense"])[0].sum(axis=0).tolist() == [4, 4, 4]
    # Conv2D 5 input channels -> groups [4, 1] -> 3 of 5 kept.
    assert np.all(masks_of(wrappers["Conv2D"])[0].sum(axis=-2) == 3)
    # Conv2DTranspose (2, 2, out=4, in=7): 4 of 7 kept along the last axis.
    assert np.all(masks_of(wrappers["Conv2DTranspose"])[0].sum(axis=-1) == 4)
    # Embedding (10, 6): 4 of 6 kept per row.
    assert np.all(masks_of(wrappers["Embedding"])[0].sum(axis=-1) == 4)
    # MHA output kernel (heads=3, key_dim=2, 6): groups along the 6
    # flattened (head, head_dim) values: 2 + 2 of 6 kept per output unit.
    assert np.all(
        masks_of(wrappers["MultiHeadAttention"])[3].sum(axis=(0, 1)) == 4
    )
    # Stripping bakes the masks into the same variables (stripped
    # predictions are checked per kind in test_layers.py).
    kp.strip_pruning(pruned)
    for name, wrapper in wrappers.items():
        for v, mask, axis in zip(
            wrapper.pruned_weights, stripped_vals[name], NM_CASES[name][2]
        ):
            value = to_np(v)
            np.testing.assert_array_equal(value != 0, mask, err_msg=name)
            if value.ndim in (2, 4) and (
                axis == -2 or (axis == 0 and value.ndim == 2)
            ):  # tfmot's "C_OUT" takes rank 2 and 4 only
                assert kp.is_pruned_m_by_n(value, m_by_n, "C_OUT"), name
            if axis == -1:
                assert kp.is_pruned_m_by_n(value, m_by_n, "C_IN"), name
            assert kp.is_pruned_m_by_n(value, m_by_n, axis=axis), name


# Conv kernels (rank > 2) of layers that are not BaseConv subclasses (or
# are wrapped in TimeDistributed) group along the input-channel axis -2 too;
# grouping along axis 0 (spatial) would leave a SeparableConv2D pointwise
# kernel (1, 1, in, out) unpruned (groups of length 1).
CONV_KERNEL_CASES = {
    "SeparableConv2D": (lambda: L.SeparableConv2D(3, 2), f(3, 3, 6), [-2, -2]),
    "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(3), f(3, 3, 6), [-2]),
    "ConvLSTM1D": (lambda: L.ConvLSTM1D(2, 2), f(2, 4, 6), [-2, -2]),
    "TimeDistributed_Conv2D": (
        lambda: L.TimeDistributed(L.Conv2D(2, 2)),
        f(2, 3, 3, 5),
        [-2],
    ),
}


@pytest.mark.parametrize("kind", list(CONV_KERNEL_CASES))
def test_m_by_n_conv_kernels_not_base_conv(kind, monkeypatch):
    factory, (dtype, shape), axes = CONV_KERNEL_CASES[kind]
    wrapper = kp.prune_low_magnitude(factory(), sparsity_m_by_n=(2, 4))
    wrapper(keras.Input(shape, dtype=dtype))
    seen = []

    def record(weights, m_by_n, sparsity=None, axis=None):
        seen.append(axis % len(weights.shape))
        return (
            keras.ops.ones(weights.shape, "bool"),
            keras.ops.convert_to_tensor(0.0),
            keras.ops.convert_to_tensor(0, "int32"),
        )

    def record_host(weights, m_by_n, axis=None):  # the eager NumPy twin
        seen.append(axis % len(weights.shape))
        return np.ones(weights.shape, bool), np.zeros((), np.float32), 0

    monkeypatch.setattr(patterns, "m_by_n_mask", record)
    monkeypatch.setattr(patterns, "host_m_by_n_mask", record_host)
    wrapper.update_masks_now(0.5)
    ranks = [len(v.shape) for v in wrapper.pruned_weights]
    assert seen == [a % r for a, r in zip(axes, ranks)]


# ---------------------------------------------------------------------------
# Gradual N:M, recomputation, saving.


# G = 6 groups (Dense kernel 8 -> 3, 2:4). fraction f = s / 0.5; the dense
# groups are kept_count(6, f) = max(round_half_even(6 * (1 - f)), 1), and
# none once f >= 1.
GRADUAL_N_NM = [
    (0.0, 0),  # f=0: 6 dense
    (0.125, 2),  # f=0.25: 6*0.75 = 4.5 -> 4 dense (half to even)
    (0.25, 3),  # f=0.5: 3 dense
    (0.375, 4),  # f=0.75: 1.5 -> 2 dense
    (0.45, 5),  # f=0.9: 0.6 -> 1 dense
    (0.49, 5),  # f=0.98: 0.12 -> 0 -> at least 1 dense
    (0.5, 6),  # f=1: every group N:M
    (0.8, 6),  # f capped at 1
]


def test_m_by_n_gradual_group_counts():
    w = np.random.RandomState(5).randn(8, 3).astype("float32")

    def nm(w, s):
        return patterns.m_by_n_mask(w, (2, 4), s, axis=0)

    if BACKEND == "jax":
        import jax

        nm = jax.jit(nm)  # one compile for every sparsity
    g, _ = _grouped(np.abs(w), 4, 0, np.float32(0))
    loss = np.sort(g, axis=-1)[..., :2].sum(-1)
    for sparsity, n_nm in GRADUAL_N_NM:
        mask = to_np(nm(w, np.float32(sparsity))[0])
        kept, _ = group_counts(mask, 4, 0)
        assert (kept == 2).sum() == n_nm, sparsity
        assert (kept == 4).sum() == 6 - n_nm, sparsity
        np.testing.assert_array_equal(mask, ref_m_by_n(w, 2, 4, 0, sparsity))
        if 0 < n_nm < 6:  # the N:M groups are those losing the least
            assert loss[kept == 2].max() < loss[kept == 4].min()


def test_m_by_n_gradual_in_fit_recomputed_from_current_weights():
    """PolynomialDecay to 2:4 with frequency 2: updates at steps 0, 2, 4
    (s = 0, 0.25, 0.5), each from the current |w * mask|; nothing changes
    between updates. tfmot would freeze a full 2:4 mask at step 1."""
    rng = np.random.RandomState(2)
    model = keras.Sequential([keras.Input((8,)), L.Dense(3, name="d")])
    pruned = kp.prune_low_magnitude(
        model,
        kp.PolynomialDecay(0.0, 0.5, 0, 4, power=1, frequency=2),
        sparsity_m_by_n=(2, 4),
    )
    wrapper = pruned.layers[0]
    kernel = wrapper.layer.kernel
    x = rng.randn(4, 8).astype("float32")
    y = rng.randn(4, 3).astype("float32")
    k1 = rng.randn(8, 3).astype("float32")
    kernel.assign(k1)
    fit_steps(pruned, x, y, 1, lr=0.0)  # step 0: s = 0
    assert masks_of(wrapper)[0].all()
    fit_steps(pruned, x, y, 1, lr=0.0)  # step 1: no update
    assert masks_of(wrapper)[0].all()
    # New magnitudes: groups (column 2, rows 4-7) and (column 0, rows 0-3)
    # become the cheapest, plus one more of the remaining 4.
    k2 = rng.randn(8, 3).astype("float32") * 3
    k2[4:, 2] *= 0.01
    k2[:4, 0] *= 0.01
    kernel.assign(k2)
    fit_steps(pruned, x, y, 1, lr=0.0)  # step 2: s = 0.25 -> 3 N:M groups
    m2 = masks_of(wrapper)[0]
    np.testing.assert_array_equal(m2, ref_m_by_n(k2, 2, 4, 0, 0.25))
    kept, _ = group_counts(m2, 4, 0)
    assert kept[2, 1] == 2 and kept[0, 0] == 2 and (kept == 2).sum() == 3
    k3 = rng.randn(8, 3).astype("float32")
    kernel.assign(k3)
    fit_steps(pruned, x, y, 1, lr=0.0)  # step 3: no update despite new w
    np.testing.assert_array_equal(masks_of(wrapper)[0], m2)
    fit_steps(pruned, x, y, 1, lr=0.0)  # step 4: s = 0.5 -> all 2:4
    m4 = masks_of(wrapper)[0]
    np.testing.assert_array_equal(m4, ref_m_by_n(k3 * m2, 2, 4, 0, 0.5))
    assert np.all(m4[~m2] == False)  # noqa: E712 (pruned never regrow)
    assert kp.pruning_step(pruned) == 5


def test_m_by_n_respects_begin_step():
    """Unlike tfmot (mask fixed at step 1 whatever the schedule), nothing is
    pruned before begin_step."""
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="d")])
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 2, frequency=1), sparsity_m_by_n=(2, 4)
    )
    x = np.random.RandomState(0).randn(12, 8).astype("float32")
    fit_steps(pruned, x, np.zeros((12, 4), "float32"), 2)
    assert masks_of(pruned.layers[0])[0].all()
    fit_steps(pruned, x, np.zeros((12, 4), "float32"), 1)
    mask = masks_of(pruned.layers[0])[0]
    assert mask.sum() == 16
    assert_m_by_n(mask, 2, 4, 0)


def test_m_by_n_save_load_and_strip(tmp_path):
    rng = np.random.RandomState(0)
    model = keras.Sequential(
        [keras.Input((7,)), L.Dense(6, name="d1"), L.Dense(2, name="d2")]
    )
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0, frequency=1), sparsity_m_by_n=(2, 4)
    )
    x = rng.randn(8, 7).astype("float32")
    y = rng.randn(8, 2).astype("float32")
    fit_steps(pruned, x, y, 2)
    before = [
        m
        for w in kp.integration.strip.pruning_wrappers(pruned)
        for m in masks_of(w)
    ]
    path = str(tmp_path / "nm.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    wrappers = kp.integration.strip.pruning_wrappers(loaded)
    assert [tuple(w.get_config()["sparsity_m_by_n"]) for w in wrappers] == [
        (2, 4),
        (2, 4),
    ]
    assert all(w.sparsity_m_by_n == (2, 4) for w in wrappers)
    after = [m for w in wrappers for m in masks_of(w)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert kp.pruning_step(loaded) == 2
    # Saved kernels are exactly N:M.
    assert kp.is_pruned_m_by_n(to_np(wrappers[0].layer.kernel), (2, 4))
    loaded.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    assert kp.pruning_step(loaded) == 4
    for w, m in zip(wrappers, before):
        np.testing.assert_array_equal(masks_of(w)[0], m)
        assert_m_by_n(masks_of(w)[0], 2, 4, 0)
    stripped = kp.strip_pruning(loaded)
    k1 = to_np(stripped.get_layer("d1").kernel)
    k2 = to_np(stripped.get_layer("d2").kernel)
    assert kp.is_pruned_m_by_n(k1, (2, 4)) and kp.is_pruned_m_by_n(k2, (2, 4))
    assert np.count_nonzero(k1) == 6 * 4 and np.count_nonzero(k2) == 2 * 4
    np.testing.assert_array_equal(k1 != 0, after[0])


# ---------------------------------------------------------------------------
# Channels.


def test_channel_pattern_in_fit():
    """Whole output channels: Dense and Conv2D along the last axis,
    Conv2DTranspose (kh, kw, out, in) along axis -2."""
    cases = {
        "dense": (lambda: L.Dense(5), f(6), -1),
        "conv": (lambda: L.Conv2D(5, 2), f(3, 3, 4), -1),
        "convt": (lambda: L.Conv2DTranspose(5, 2), f(2, 2, 3), -2),
    }
    model, x, y = _kind_model(
        {k: (a, b, [c]) for k, (a, b, c) in cases.items()}
    )
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.4, 0, frequency=1), pattern="channel"
    )
    wrappers = {k: pruned.get_layer(f"prune_low_magnitude_{k}") for k in cases}
    initial = {k: to_np(w.pruned_weights[0]) for k, w in wrappers.items()}
    assert all(w.pattern == "channel" for w in wrappers.values())
    fit_steps(pruned, x, y, 2)
    for name, wrapper in wrappers.items():
        axis = cases[name][2]
        mask = masks_of(wrapper)[0]
        per_channel = np.moveaxis(mask, axis, -1).reshape(-1, 5)
        # Each channel all kept or all pruned; kept_count(5, 0.4) = 3.
        assert np.all(per_channel.all(0) | ~per_channel.any(0)), name
        assert per_channel.all(0).sum() == 3, name
        np.testing.assert_array_equal(
            mask, ref_channels(initial[name], 0.4, axis), err_msg=name
        )
    stripped = kp.strip_pruning(pruned)
    kt = to_np(stripped.get_layer("convt").kernel)
    assert (np.abs(kt).sum(axis=(0, 1, 3)) > 0).sum() == 3
    assert np.count_nonzero(kt) == 2 * 2 * 3 * 3


# ---------------------------------------------------------------------------
# Identical masks on every backend.


def _digest(mask):
    mask = np.asarray(to_np(mask), bool)
    data = str(mask.shape).encode() + np.packbits(mask.ravel()).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _fixed(*shape, seed=0):
    return np.random.RandomState(seed).randn(*shape).astype("float32")


# Computed once on JAX; tensorflow and torch must give the same masks.
EXPECTED_DIGESTS = {
    "block_avg": "6f3bb4b706c1caa6",
    "block_max": "209ac193cb93842f",
    "m_by_n": "f6cd4d10dc703004",
    "m_by_n_gradual": "ca5318ead5aebc02",
    "m_by_n_1_4": "d90227198a6b7e62",
    "channel": "24ee7410f737bfe0",
}


def _all_digests():
    w4 = _fixed(3, 3, 13, 10, seed=1)
    out = {
        "block_avg": run(patterns.block_mask, _fixed(2, 17, 11), 0.6, (2, 3))[
            0
        ],
        "block_max": run(
            patterns.block_mask, _fixed(17, 11, seed=2), 0.35, (3, 2), "MAX"
        )[0],
        "m_by_n": run(patterns.m_by_n_mask, w4, (2, 4))[0],
        "m_by_n_gradual": run(patterns.m_by_n_mask, w4, (2, 4), 0.3)[0],
        "m_by_n_1_4": run(patterns.m_by_n_mask, w4, (1, 4), axis=-1)[0],
        "channel": run(patterns.channel_mask, w4, 0.7)[0],
    }
    return {k: _digest(v) for k, v in out.items()}


def test_masks_identical_across_backends():
    assert _all_digests() == EXPECTED_DIGESTS


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sparsity_m_by_n=(4, 2)), r"sparsity_m_by_n=\(m, n\) needs 0 < m"),
        (dict(sparsity_m_by_n=(2, 2)), r"sparsity_m_by_n"),
        (dict(sparsity_m_by_n=(0, 4)), r"sparsity_m_by_n"),
        (dict(sparsity_m_by_n=(2,)), r"`sparsity_m_by_n` must be a pair"),
        (dict(block_size=(0, 2)), r"`block_size` must be positive"),
        (dict(block_size=(2, 2.5)), r"`block_size` must be a pair"),
        (dict(block_pooling_type="MIN"), r"Unsupported pooling type 'MIN'"),
        (dict(pattern="rows"), r"Unknown pattern 'rows'"),
        (
            dict(block_size=(2, 2), sparsity_m_by_n=(2, 4)),
            r"block_size and sparsity_m_by_n cannot be combined",
        ),
        (
            dict(sparsity_m_by_n=(2, 4), pattern="channel"),
            r"sparsity_m_by_n and pattern cannot be combined",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kp.prune_low_magnitude(L.Dense(3), **kwargs)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    with pytest.raises(ValueError, match=match):
        kp.prune_low_magnitude(model, **kwargs)


def test_pattern_functions_reject_bad_input():
    with pytest.raises(ValueError, match=r"0 < m < n"):
        patterns.m_by_n_mask(np.ones((4, 4), "float32"), (4, 2))
    with pytest.raises(ValueError, match=r"rank >= 2"):
        patterns.block_mask(np.ones((4,), "float32"), 0.5, (2, 2))
