"""Global and ERK allocation, per-layer limits and budgets, `prune_once`."""

import hashlib
from fractions import Fraction

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core import allocation
from keras_prune.core import masks
from keras_prune.integration.strip import pruning_wrappers

SHAPES = {"a": (12, 20), "b": (20, 16), "c": (16, 3)}


def make_model(seed=0, values=None):
    """Dense 12-20-16-3 with seeded weights (or the given kernels)."""
    model = keras.Sequential(
        [keras.Input((12,))]
        + [keras.layers.Dense(s[1], name=n) for n, s in SHAPES.items()]
    )
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        kernel = (
            values[layer.name]
            if values is not None
            else rng.randn(*SHAPES[layer.name]).astype("float32")
            * (1.0 + 2.0 * (layer.name == "b"))
        )
        layer.kernel.assign(kernel)
    return model


def kernels(model):
    return {
        w.layer.name: keras.ops.convert_to_numpy(w.layer.kernel)
        for w in pruning_wrappers(model)
    }


def mask_of(model):
    return {
        w.layer.name: np.asarray(keras.ops.convert_to_numpy(w.masks[0]))
        for w in pruning_wrappers(model)
    }


# The default guard of `allocation="global"`: every Dense kernel keeps at
# least one weight per output unit (issue 17 item 10).
FLOORS = {n: s[1] for n, s in SHAPES.items()}


def reference_global(values, k, floors=None):
    """Top-k of all |w|; ties by tensor order, then flat position. With
    `floors`, each tensor first keeps its `floors[name]` largest |w|, and
    the rest of the k are the largest of the other weights."""
    names = list(values)
    flat = np.concatenate([np.abs(values[n]).ravel() for n in names])
    keep = np.zeros(flat.size, bool)
    start = 0
    for n in names:
        size = values[n].size
        own = np.lexsort((np.arange(size), -flat[start : start + size]))
        keep[start + own[: (floors or {}).get(n, 0)]] = True
        start += size
    rest = np.flatnonzero(~keep)
    order = rest[np.lexsort((rest, -flat[rest]))]  # stable by position
    keep[order[: max(k - int(keep.sum()), 0)]] = True
    out, start = {}, 0
    for n in names:
        size = values[n].size
        out[n] = keep[start : start + size].reshape(values[n].shape)
        start += size
    return out


def reference_erk_counts(shapes, sparsity):
    """ERK in exact rational arithmetic; remainder ties: earlier first."""
    sizes = [int(np.prod(s)) for s in shapes]
    weight = [sum(s) for s in shapes]  # ERK factor times size
    k = int(masks.kept_count(sum(sizes), sparsity))
    dense = [False] * len(shapes)
    while True:
        free = sum(w for w, d in zip(weight, dense) if not d)
        scale = Fraction(k - sum(n for n, d in zip(sizes, dense) if d), free)
        grow = [
            not d and scale * w >= n for w, n, d in zip(weight, sizes, dense)
        ]
        if not any(grow):
            break
        dense = [d or g for d, g in zip(dense, grow)]
    budget = [
        Fraction(n) if d else scale * w for n, w, d in zip(sizes, weight, dense)
    ]
    base = [int(b) for b in budget]
    short = k - sum(base)
    order = sorted(
        range(len(shapes)), key=lambda i: (-(budget[i] - base[i]), i)
    )
    for i in order[:short]:
        base[i] += 1
    return np.array(base)


def test_global_counts_ties_and_order():
    # Magnitudes tie across tensors: ties go to earlier tensors first.
    bits = [
        masks.magnitude_bits(np.array(v, np.float32))
        for v in ([3.0, 1.0, 1.0], [1.0, 1.0], [2.0])
    ]
    counts, threshold = allocation.global_counts(bits, 4)
    assert keras.ops.convert_to_numpy(counts).tolist() == [3, 0, 1]
    counts, _ = allocation.global_counts(bits, 5)
    assert keras.ops.convert_to_numpy(counts).tolist() == [3, 1, 1]


def test_global_counts_caps_keep_total_exact():
    rng = np.random.RandomState(3)
    values = [
        rng.randn(n).astype(np.float32) * s
        for n, s in ((100, 10.0), (50, 0.01), (1, 0.001))
    ]
    bits = [masks.magnitude_bits(v) for v in values]
    # Without limits the tiny tensors lose everything.
    counts, _ = allocation.global_counts(bits, 40)
    assert keras.ops.convert_to_numpy(counts).tolist() == [40, 0, 0]
    # Floors (at most 80% / 0% sparse) move budget; the total stays 40.
    k_min = keras.ops.convert_to_tensor([0, 10, 1], "int32")
    counts, _ = allocation.global_counts(bits, 40, k_min=k_min)
    assert keras.ops.convert_to_numpy(counts).tolist() == [29, 10, 1]
    # A cap on the first tensor.
    k_max = keras.ops.convert_to_tensor([25, 50, 1], "int32")
    counts, _ = allocation.global_counts(bits, 40, k_max=k_max)
    assert keras.ops.convert_to_numpy(counts).tolist() == [25, 15, 0]


def test_erk_counts_match_reference_and_total():
    shapes = [(12, 20), (20, 16), (16, 3), (1, 1), (3, 3, 8, 16)]
    for s in (0.5, 0.8, 0.9, 0.95, 0.98):
        got = keras.ops.convert_to_numpy(allocation.erk_counts(shapes, s))
        want = reference_erk_counts(shapes, s)
        assert got.tolist() == want.tolist(), s
        total = sum(int(np.prod(x)) for x in shapes)
        assert got.sum() == int(masks.kept_count(total, s))
        # Larger tensors get sparser.
        assert got[4] / 1152 <= got[0] / 240 <= got[2] / 48


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.98])
def test_prune_once_global_is_exact_top_k(sparsity):
    model = make_model()
    values = kernels(keras_prune.prune_low_magnitude(make_model()))
    pruned = keras_prune.prune_once(model, sparsity, allocation="global")
    total = sum(v.size for v in values.values())
    k = int(masks.kept_count(total, sparsity))
    got = mask_of(pruned)
    want = reference_global(values, k, FLOORS)
    for name in SHAPES:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # Exact, unless the floors (20 + 16 + 3) exceed the budget (0.98: 12).
    assert sum(int(m.sum()) for m in got.values()) == max(k, 39)
    # max_sparsity=1.0 lifts the guard: plain global top-k.
    free = keras_prune.prune_once(
        make_model(), sparsity, allocation="global", max_sparsity=1.0
    )
    got = mask_of(free)
    want = reference_global(values, k)
    for name in SHAPES:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_global_ties_across_layers_broken_by_order():
    values = {
        "a": np.ones((12, 20), np.float32),
        "b": np.ones((20, 16), np.float32),
        "c": np.ones((16, 3), np.float32),
    }
    pruned = keras_prune.prune_once(
        make_model(values=values), 0.5, allocation="global"
    )
    got = mask_of(pruned)
    k = int(masks.kept_count(240 + 320 + 48, 0.5))  # 304
    # Guard floors 20, 16, 3 first; the 265 left go to ties in order.
    assert [int(got[n].sum()) for n in "abc"] == [240, 61, 3]
    assert sum(int(m.sum()) for m in got.values()) == k
    # Within a tensor: lowest flat positions first.
    assert got["b"].ravel()[:61].all() and not got["b"].ravel()[61:].any()
    assert got["c"].ravel()[:3].all() and not got["c"].ravel()[3:].any()
    free = keras_prune.prune_once(
        make_model(values=values),
        0.5,
        allocation="global",
        max_sparsity=1.0,
    )
    got = mask_of(free)
    assert [int(got[n].sum()) for n in "abc"] == [240, 64, 0]


def test_global_max_sparsity_caps_and_total():
    model = make_model()
    pruned = keras_prune.prune_once(
        model,
        0.9,
        allocation="global",
        max_sparsity={"c": 0.5, ".*": 0.95},
    )
    got = mask_of(pruned)
    sizes = {n: int(np.prod(s)) for n, s in SHAPES.items()}
    total = sum(sizes.values())
    assert sum(int(m.sum()) for m in got.values()) == int(
        masks.kept_count(total, 0.9)
    )
    assert int(got["c"].sum()) >= 24  # c at most 50% sparse
    for n in "ab":
        assert int(got[n].sum()) >= int(masks.kept_count(sizes[n], 0.95))
    # Uncapped layers still share one threshold.
    values = kernels(pruned)
    free = [
        n
        for n in "ab"
        if int(got[n].sum()) > int(masks.kept_count(sizes[n], 0.95))
    ]
    if len(free) == 2:
        kept = min(np.abs(values[n][got[n]]).min() for n in free)
        dropped = max(np.abs(values[n][~got[n]]).max() for n in free)
        assert kept >= dropped


def test_layer_of_one_weight():
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, name="one"),
            keras.layers.Dense(40, name="wide"),
        ]
    )
    model.layers[0].kernel.assign([[0.001]])
    model.layers[1].kernel.assign(np.arange(1, 41, dtype="float32")[None])
    # The guard keeps one weight per output unit: "one" keeps its weight and
    # "wide" (1 input) all 40, more than the budget of 20 (then the total
    # is the sum of the floors), with a warning naming the layers.
    with pytest.warns(UserWarning, match="layer 'one'"):
        pruned = keras_prune.prune_once(model, 0.5, allocation="global")
    got = mask_of(pruned)
    assert int(got["one"].sum()) == 1 and int(got["wide"].sum()) == 40
    pruned = keras_prune.prune_once(
        model, 0.5, allocation="global", max_sparsity=1.0
    )
    got = mask_of(pruned)
    assert int(got["one"].sum()) == 0 and int(got["wide"].sum()) == 20
    erk = keras_prune.prune_once(model, 0.5, allocation="erk")
    got = mask_of(erk)
    assert int(got["one"].sum()) == 1  # ERK keeps the 1-weight layer dense
    assert int(got["one"].sum()) + int(got["wide"].sum()) == 20


def test_erk_masks_match_reference_counts():
    pruned = keras_prune.prune_once(make_model(), 0.9, allocation="erk")
    got = mask_of(pruned)
    want = reference_erk_counts(list(SHAPES.values()), 0.9)
    assert [int(got[n].sum()) for n in SHAPES] == want.tolist()
    values = kernels(pruned)
    for n in SHAPES:  # each tensor keeps its own largest magnitudes
        assert (
            np.abs(values[n][got[n]]).min() >= np.abs(values[n][~got[n]]).max()
        )


# Masks of `make_model()` weights, identical on every backend. Global: kept
# [20, 38, 3] (a and c held at the guard's floors; without the guard,
# max_sparsity=1.0, [0, 61, 0], sha256 48ea8d97...).
MASK_SHA256 = {
    "global": "fb0e8ae544bff97d1bbbec0c936a8d1a8c23b3a97daf21b996ea780c5cdd41c4",  # noqa: E501
    "erk": "29dc7ac844904000f64a07daf6087a9a90704e932b426038a7e7b994cddb8897",
}


@pytest.mark.parametrize("alloc", ["global", "erk"])
def test_masks_identical_on_every_backend(alloc):
    pruned = keras_prune.prune_once(make_model(), 0.9, allocation=alloc)
    got = mask_of(pruned)
    digest = hashlib.sha256(
        b"".join(np.packbits(got[n]).tobytes() for n in SHAPES)
    ).hexdigest()
    assert digest == MASK_SHA256[alloc]


def xy(n=64, seed=1):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 12).astype("float32"), rng.randint(0, 3, n)


@pytest.mark.parametrize("alloc", ["global", "erk"])
def test_fit_follows_schedule_total_exact_and_resumes(alloc, tmp_path):
    x, y = xy()
    schedule = keras_prune.PolynomialDecay(0.5, 0.9, 0, 6, frequency=2)
    pruned = keras_prune.prune_low_magnitude(
        make_model(), schedule, allocation=alloc
    )
    pruned.compile("adam", "sparse_categorical_crossentropy")
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    kept = []
    for i in range(4):  # one batch per fit: JAX syncs variables after fit
        batch = slice(16 * i, 16 * i + 16)
        pruned.fit(x[batch], y[batch], batch_size=16, verbose=0)
        kept.append(sum(int(m.sum()) for m in mask_of(pruned).values()))
    # Steps 0 and 2 updated (sparsity at steps 0, 2: 0.5, 0.78148).
    _, s2 = schedule(2)
    assert kept == [
        int(masks.kept_count(total, 0.5)),
        int(masks.kept_count(total, 0.5)),
        int(masks.kept_count(total, s2)),
        int(masks.kept_count(total, s2)),
    ]
    path = str(tmp_path / "m.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(mask_of(pruned).values(), mask_of(loaded).values()):
        np.testing.assert_array_equal(a, b)
    loaded.compile("adam", "sparse_categorical_crossentropy")
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert keras_prune.pruning_step(loaded) == 8
    got = mask_of(loaded)
    assert sum(int(m.sum()) for m in got.values()) == int(
        masks.kept_count(total, 0.9)
    )
    stripped = keras_prune.strip_pruning(loaded)
    nonzero = sum(
        int(np.count_nonzero(keras.ops.convert_to_numpy(l.kernel)))
        for l in stripped.layers
    )
    assert nonzero == int(masks.kept_count(total, 0.9))


def test_global_in_custom_training_loop():
    x, y = xy()
    pruned = keras_prune.prune_low_magnitude(
        make_model(),
        keras_prune.ConstantSparsity(0.9, 0, frequency=1),
        allocation="global",
    )
    # A forward pass with training=True updates the group once.
    pruned(x[:16], training=True)
    pruned(x[16:32], training=True)
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    assert keras_prune.pruning_step(pruned) == 2
    assert sum(int(m.sum()) for m in mask_of(pruned).values()) == int(
        masks.kept_count(total, 0.9)
    )
    # evaluate/predict never move masks or the step.
    before = mask_of(pruned)
    pruned.predict(x, verbose=0)
    assert keras_prune.pruning_step(pruned) == 2
    for n, m in mask_of(pruned).items():
        np.testing.assert_array_equal(m, before[n])


def test_per_layer_budget_mapping():
    pruned = keras_prune.prune_low_magnitude(
        make_model(), {"a": 0.25, "b": keras_prune.ConstantSparsity(0.75, 0)}
    )
    names = [w.layer.name for w in pruning_wrappers(pruned)]
    assert names == ["a", "b"]  # c matches no key: not pruned
    x, y = xy(16)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0)
    got = mask_of(pruned)
    assert int(got["a"].sum()) == 180 and int(got["b"].sum()) == 80


def test_prune_once_masks_stay_fixed_during_fine_tuning():
    x, y = xy()
    pruned = keras_prune.prune_once(make_model(), 0.8)
    before = mask_of(pruned)
    assert [int(m.sum()) for m in before.values()] == [48, 64, 10]
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for n, m in mask_of(pruned).items():
        np.testing.assert_array_equal(m, before[n], err_msg=n)


def test_prune_once_predicts_like_stripped_and_original_unchanged():
    model = make_model()
    original = {
        l.name: keras.ops.convert_to_numpy(l.kernel) for l in model.layers
    }
    x, _ = xy(8)
    pruned = keras_prune.prune_once(model, 0.9, allocation="global")
    stripped = keras_prune.strip_pruning(pruned)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x)),
        keras.ops.convert_to_numpy(stripped(x)),
        rtol=1e-6,
        atol=1e-6,
    )
    for l in model.layers:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(l.kernel), original[l.name]
        )


def test_bad_arguments_name_the_fix():
    model = make_model()
    with pytest.raises(ValueError, match="allocation"):
        keras_prune.prune_low_magnitude(model, allocation="uniform")
    with pytest.raises(ValueError, match="one schedule"):
        keras_prune.prune_low_magnitude(model, {"a": 0.5}, allocation="global")
    with pytest.raises(ValueError, match="not a single layer"):
        keras_prune.prune_low_magnitude(
            keras.layers.Dense(3), allocation="global"
        )
    with pytest.raises(ValueError, match="max_sparsity"):
        keras_prune.prune_low_magnitude(model, max_sparsity=0.9)
    with pytest.raises(ValueError, match="sparsity_m_by_n"):
        keras_prune.prune_low_magnitude(
            model, allocation="global", sparsity_m_by_n=(2, 4)
        )
    with pytest.raises(ValueError, match="sparsity"):
        keras_prune.prune_once(model, 1.5)


def test_incomplete_group_is_reported():
    pruned = keras_prune.prune_low_magnitude(make_model(), allocation="global")
    wrapper = pruning_wrappers(pruned)[0]
    lone = keras_prune.PruneLowMagnitude.from_config(wrapper.get_config())
    lone.build((None, 12))
    with pytest.raises(ValueError, match="has 1 of its 3 layers"):
        lone.update_masks_now(0.5)
