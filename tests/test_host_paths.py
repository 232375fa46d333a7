"""The NumPy (host) paths give the masks of the compiled math, bit for bit.

`magnitude_mask` runs `masks.host_mask` for every eager CPU call, and the
eager group update runs in NumPy (`PruningGroup._update_on_host`) where the
variables can be read without a copy. These tests pin both to the
references: a stable sort for single tensors, and the whole-tensor
`PruningGroup.recompute` of compiled steps for groups, with blocks and
chunks small enough to cross tensor rows, and with the backend-operation
streaming path (`_update_with_ops`, the accelerator path) alongside.
"""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import _backend
from keras_prune.core import masks
from keras_prune.integration.strip import pruning_wrappers

from conftest import to_np


def _reference_mask(weights, sparsity):
    magnitude = np.abs(np.asarray(weights, np.float32)).ravel()
    one = np.float32(1.0)
    k = int(
        max(
            np.round(np.float32(magnitude.size) * (one - np.float32(sparsity))),
            one,
        )
    )
    order = np.argsort(-magnitude, kind="stable")
    mask = np.zeros(magnitude.size, bool)
    mask[order[:k]] = True
    return mask.reshape(np.shape(weights))


def _weights(kind, n, rng):
    w = rng.standard_normal(n).astype(np.float32)
    if kind == "few_values":
        w = rng.integers(-3, 4, n).astype(np.float32)
    elif kind == "mostly_zero":
        w[rng.random(n) < 0.8] = 0.0
    elif kind == "pruned_half":
        # Re-pruning: half of the weights already exactly zero (some -0.0),
        # so the k-th largest at 50% sits on the zero / non-zero edge.
        zero = rng.permutation(n) < n // 2
        w[zero] = np.where(rng.random(int(zero.sum())) < 0.5, -0.0, 0.0)
    elif kind == "sorted":
        w = np.sort(np.abs(w)) * np.where(rng.random(n) < 0.5, -1, 1)
    elif kind == "sample_decoy":
        # Every sampled position holds a huge value: the sample's bracket
        # misses and the radix select runs instead.
        w[:: max(1, n // masks._SAMPLE)] *= 1000.0
    return w.astype(np.float32)


@pytest.mark.parametrize(
    "kind",
    [
        "normal",
        "few_values",
        "mostly_zero",
        "pruned_half",
        "sorted",
        "sample_decoy",
    ],
)
@pytest.mark.parametrize("n", [1, 7, 5000, 70001])
def test_host_mask_matches_reference(kind, n, monkeypatch):
    monkeypatch.setattr(masks, "HOST_BLOCK", 1000)  # many blocks
    rng = np.random.default_rng(n)
    w = _weights(kind, n, rng)
    for sparsity in (0.0, 0.3, 0.5, 0.9, 0.999, 1.0):
        expected = _reference_mask(w, sparsity)
        mask, threshold, n_bad = masks.host_mask(w, sparsity)
        assert n_bad == 0
        np.testing.assert_array_equal(mask, expected)
        kept = np.abs(w)[mask]
        assert float(threshold) == float(kept.min())
        # The eager public call (tensor in, tensor out) is the same mask.
        tensor_mask = keras_prune.magnitude_mask(
            keras.ops.convert_to_tensor(w), sparsity
        )
        np.testing.assert_array_equal(to_np(tensor_mask), expected)


def test_accelerator_path_matches_reference():
    # Eager calls on an accelerator run the compiled math, compiled once per
    # shape and dtype; here it runs on the CPU.
    rng = np.random.default_rng(9)
    for shape in [(40, 25), (40, 25), (3, 7, 11)]:
        w = _weights("few_values", int(np.prod(shape)), rng).reshape(shape)
        tensor = keras.ops.convert_to_tensor(w)
        compiled = _backend.compile_eager(
            masks._compiled_mask, shape, str(tensor.dtype)
        )
        for sparsity in (0.2, 0.5, 0.95):
            mask, n_bad = compiled(
                tensor, keras.ops.convert_to_tensor(sparsity, "float32")
            )
            assert int(to_np(n_bad)) == 0
            np.testing.assert_array_equal(
                to_np(mask), _reference_mask(w, sparsity)
            )
    assert _backend.compile_eager(
        masks._compiled_mask, (40, 25), "float32"
    ) is _backend.compile_eager(masks._compiled_mask, (40, 25), "float32")


def test_host_select_bracket_and_radix_agree():
    rng = np.random.default_rng(3)
    kinds = ("normal", "few_values", "mostly_zero", "pruned_half")
    for kind in kinds + ("sample_decoy",):
        raw = _weights(kind, 1 << 17, rng).view(np.int32)
        edge = (1 << 16) - 1, 1 << 16, (1 << 16) + 1  # pruned_half's edge
        for k in (1, 2, 100, 1 << 14, *edge, (1 << 17) - 1, 1 << 17):
            assert masks.host_select(raw, k) == masks._host_radix_select(
                raw, k
            ), (kind, k)


def test_host_mask_counts_nonfinite():
    w = np.ones(100000, np.float32)
    w[[5, 70000]] = np.nan
    w[99999] = -np.inf
    assert masks.host_mask(w, 0.5) == (None, None, 3)


def test_eager_tensors_are_read_without_a_copy():
    w = keras.Variable(np.arange(12, dtype=np.float32).reshape(3, 4))
    view = _backend.host_array(w)
    assert view is not None and view.shape == (3, 4)
    np.testing.assert_array_equal(view, to_np(w))
    assert _backend.host_array(np.zeros(3)) is not None


def _model(seed):
    inp = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(23, 8)(inp)
    x = keras.layers.Conv1D(6, 3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(9)(x)
    model = keras.Model(inp, keras.layers.Dense(4)(x))
    rng = np.random.default_rng(seed)
    for w in model.weights:
        v = rng.integers(-5, 6, size=w.shape).astype(np.float32) * 0.5
        v[rng.random(w.shape) < 0.3] = 0.0  # many ties at zero
        w.assign(v)
    return model


def _state(wrappers):
    return [
        (to_np(m), to_np(t)) for w in wrappers for _, m, t in w.pruning_vars
    ]


@pytest.mark.parametrize(
    "allocation, kwargs",
    [("global", {}), ("global", {"min_sparsity": 0.5}), ("erk", {})],
)
def test_group_host_and_ops_paths_equal_recompute(allocation, kwargs):
    host, ops_path, graph = [
        pruning_wrappers(
            keras_prune.prune_low_magnitude(
                _model(4), allocation=allocation, **kwargs
            )
        )
        for _ in range(3)
    ]
    for s in (0.7, 0.9):
        assert int(to_np(host[0]._group.update_streaming(s, chunk=7))) == 0
        assert int(to_np(ops_path[0]._group._update_with_ops(s, chunk=7))) == 0
        group = graph[0]._group
        entries = group._entries()
        old = [
            (keras.ops.convert_to_tensor(e[2]), e[0]._read(e[3]))
            for e in entries
        ]
        new, n_bad = group.recompute(keras.ops.convert_to_tensor(s), old)
        assert int(to_np(n_bad)) == 0
        for e, (m, t) in zip(entries, new):
            e[2].assign(m)
            e[3].assign(t)
        for a, b, c in zip(_state(host), _state(ops_path), _state(graph)):
            np.testing.assert_array_equal(a[0], c[0])
            np.testing.assert_array_equal(b[0], c[0])
            assert a[1].tobytes() == c[1].tobytes() == b[1].tobytes()


def test_from_host_unaligned_buffer_is_usable():
    # TensorFlow aborted the process on an unaligned DLPack buffer (a mask
    # handed back by the streaming global update); every backend must give
    # a tensor that computes.
    raw = np.zeros(1001, np.uint8)
    unaligned = raw[1:].view(bool)  # starts one byte past an allocation
    unaligned[::3] = True
    got = _backend.from_host(unaligned)
    total = keras.ops.sum(keras.ops.cast(got, "int32"))
    assert int(keras.ops.convert_to_numpy(total)) == 334
