"""NumPy twins of compiled mask math give the same masks, bit for bit.

Issue 17.11: eager updates (`prune_once`) and, on JAX, in-step updates of
single weights by magnitude run NumPy instead of compiling per weight
shape. Each twin is compared with the `keras.ops` math it replaces.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_prune
from keras_prune import _backend
from keras_prune.core import allocation
from keras_prune.core import patterns
from keras_prune.integration import updater

NM_CASES = [
    ((8, 12), None),
    ((3, 3, 6, 5), None),
    ((7, 5), 0),
    ((3, 3, 5, 4), (0, 1, 2)),
    ((2, 9, 3), (1, 2)),
    ((10,), None),
    ((6, 7), -1),
]


@pytest.mark.parametrize("m_by_n", [(2, 4), (1, 4), (3, 8)])
def test_host_m_by_n_mask_equals_compiled(m_by_n):
    rng = np.random.default_rng(0)
    for shape, axis in NM_CASES:
        for kind in ("normal", "ties", "zeros"):
            w = rng.standard_normal(shape).astype(np.float32)
            if kind == "ties":
                w = np.round(w * 2) / 2
            if kind == "zeros":
                w.flat[::3] = 0.0
            mask, threshold, bad = patterns.host_m_by_n_mask(w, m_by_n, axis)
            want = patterns.m_by_n_mask(
                ops.convert_to_tensor(w), m_by_n, None, axis=axis
            )
            assert mask.dtype == bool and mask.shape == shape
            np.testing.assert_array_equal(mask, ops.convert_to_numpy(want[0]))
            assert (
                threshold.tobytes()
                == np.asarray(
                    ops.convert_to_numpy(want[1]), np.float32
                ).tobytes()
            )
            assert bad == int(ops.convert_to_numpy(want[2])) == 0


def test_host_m_by_n_mask_counts_nonfinite():
    w = np.arange(32, dtype=np.float32).reshape(4, 8)
    w[1, 2] = np.nan
    w[3, 0] = -np.inf
    assert patterns.host_m_by_n_mask(w, (2, 4))[2] == 2


def test_host_global_counts_equal_compiled():
    rng = np.random.default_rng(1)
    for trial in range(12):
        n = int(rng.integers(1, 5))
        sizes = [int(rng.integers(1, 2000)) for _ in range(n)]
        if trial % 3:
            values = [np.abs(rng.standard_normal(s)) for s in sizes]
        else:  # many ties
            values = [rng.integers(0, 3, s) for s in sizes]
        bits = [v.astype(np.float32).view(np.int32) for v in values]
        hist = np.stack([np.bincount(b >> 15, minlength=1 << 16) for b in bits])

        def low(bucket, bits=bits):
            return np.stack(
                [
                    np.bincount(
                        b[(b >> 15) == int(bucket)] & 0x7FFF, minlength=1 << 15
                    )
                    for b in bits
                ]
            )

        k_min = [int(rng.integers(0, s // 3 + 1)) for s in sizes]
        k_max = [int(rng.integers(a, s + 1)) for a, s in zip(k_min, sizes)]
        k_total = int(rng.integers(0, sum(sizes) + 2))
        counts, threshold = allocation.host_global_counts(
            hist, low, sizes, k_total, k_min, k_max
        )
        want, want_threshold = allocation.global_counts_from_histograms(
            ops.convert_to_tensor(hist.astype(np.int32)),
            lambda b, low=low: ops.convert_to_tensor(
                low(int(ops.convert_to_numpy(b))).astype(np.int32)
            ),
            sizes,
            k_total,
            ops.convert_to_tensor(k_min, "int32"),
            ops.convert_to_tensor(k_max, "int32"),
        )
        np.testing.assert_array_equal(counts, ops.convert_to_numpy(want))
        assert threshold == int(ops.convert_to_numpy(want_threshold))


def _conv_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(6, 1, name="c2")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="d")(x))
    kernel, bias = model.get_layer("c2").get_weights()
    kernel[..., :2] = 0.25  # ties inside N:M groups
    model.get_layer("c2").set_weights([kernel, bias])
    return model


def _values(model):
    return [ops.convert_to_numpy(v) for v in model.weights]


def test_prune_once_m_by_n_host_path_equals_compiled(monkeypatch):
    host = _values(
        keras_prune.prune_once(_conv_model(), 0.5, sparsity_m_by_n=(2, 4))
    )
    monkeypatch.setattr(
        updater.MaskUpdate, "_host_full_m_by_n", lambda self, s: False
    )
    compiled = _values(
        keras_prune.prune_once(_conv_model(), 0.5, sparsity_m_by_n=(2, 4))
    )
    assert len(host) == len(compiled)
    for a, b in zip(host, compiled):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    masks = [a for a in host if a.dtype == bool]
    # c1 groups 3 input channels in one padded group of 4: 2 of 3 kept.
    assert [int(m.sum()) for m in masks] == [144, 24, 240]


def _fit_no_callback():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(33),
            keras.layers.Dense(7),
            keras.layers.Dense(3),
        ]
    )
    kernel, bias = model.layers[0].get_weights()
    kernel[:10] = 0.5  # ties at the threshold
    model.layers[0].set_weights([kernel, bias])
    pruned = keras_prune.prune_low_magnitude(
        model,
        pruning_schedule=keras_prune.PolynomialDecay(
            0.1, 0.8, 0, 6, frequency=2
        ),
    )
    pruned.compile("sgd", "mse")
    rng = np.random.RandomState(0)
    x = rng.randn(64, 16).astype("float32")
    y = rng.randn(64, 3).astype("float32")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return _values(pruned)


def test_in_step_host_update_equals_compiled(monkeypatch):
    # On JAX the in-step update runs on the host (pure_callback); forcing
    # the in-graph select must give the same masks and trained weights.
    host = _fit_no_callback()
    monkeypatch.setattr(_backend, "host_callback_in_step", lambda: False)
    compiled = _fit_no_callback()
    for a, b in zip(host, compiled):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    masks = [a for a in host if a.dtype == bool]
    assert [int(m.sum()) for m in masks] == [
        keras_prune.kept_count(n, 0.8) for n in (16 * 33, 33 * 7, 7 * 3)
    ]
