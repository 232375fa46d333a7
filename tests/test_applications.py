"""Every `keras.applications` constructor, pruned with the defaults.

Built with `weights=None`, the smallest input each accepts and 4 classes
(nothing is downloaded). For each model, on the backend of this process:

- `prune_low_magnitude(model)` with the defaults wraps every convolution
  and Dense kernel; no layer (Lambda, Rescaling, Normalization,
  InceptionResNetV2's scaling, MobileNetV3's hard-swish, NASNet's cells)
  blocks it;
- `prune_once(model, 0.5)` keeps exactly `kept_count(n, 0.5)` weights of
  every pruned tensor;
- `prune_once(model, 0.5, sparsity_m_by_n=(2, 4))` keeps 2 of every 4
  weights along each kernel's contracted axes
  (`patterns.contracted_axes`); a kernel whose contracted length is not a
  multiple of 4 (a stem on 3 RGB channels) is still pruned, never left
  dense;

and with KERAS_PRUNE_MODELS=all (the full sweep):

- `prune_once(model, 0.8, allocation="global")` keeps exactly
  `kept_count(N, 0.8)` of all N pruned weights and empties no tensor;
- 2 `fit` steps with `UpdatePruningStep` -> exact sparsity ->
  `strip_pruning`: same class, same layer count, bit-identical outputs ->
  `.keras` save and load: identical outputs; the stripped file is not
  bigger than the dense model's (5% for the config).

CI runs the cheap checks on MobileNetV3Small only (Rescaling, hard-swish,
squeeze-excite multiplies, depthwise kernels); tests/test_models.py runs
the whole pipeline on ResNet50 (and on MobileNetV2, EfficientNetB0,
DenseNet121, ConvNeXtTiny with KERAS_PRUNE_MODELS=all). docs/models.md
has the results and times of the full sweep.
"""

import os
import tempfile

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.core import patterns
from keras_prune.integration.strip import pruning_wrappers

from conftest import assert_same_outputs
from conftest import to_np

FULL = os.environ.get("KERAS_PRUNE_MODELS", "") == "all"
CLASSES = 4
# The smallest input each accepts with weights=None (32 for the others).
MIN_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
CHEAP = ("MobileNetV3Small",)
CONSTRUCTORS = sorted(
    name for name in dir(keras.applications) if name[:1].isupper()
)


def cases(names, cheap):
    out = []
    for name in names:
        marks = []
        if not FULL and not (cheap and name in CHEAP):
            marks = [pytest.mark.skip(reason="KERAS_PRUNE_MODELS=all runs it")]
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def image_size(name):
    return MIN_SIZE.get(name, 32)


_BUILT = {}


def build(name):
    """The dense model `name`, built once and shared by the tests that do
    not change it (pruning copies Functional models)."""
    if name not in _BUILT:
        _BUILT.clear()
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        size = image_size(name)
        _BUILT[name] = getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=CLASSES
        )
    return _BUILT[name]


def images(name, n=2):
    size = image_size(name)
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, size, size, 3)).astype("float32")


def own_weights(layer):
    return layer._trainable_variables + layer._non_trainable_variables


def kernel_paths(model):
    """Paths of every kernel of rank >= 2 (convolutions, Dense)."""
    return {
        v.path
        for layer in model._flatten_layers(include_self=False, recursive=True)
        for v in own_weights(layer)
        if v.name.endswith("kernel") and len(v.shape) >= 2
    }


def effective_weights(pruned):
    """[(layer, variable, weight * mask)] for every pruned weight."""
    owner = {}
    for layer in pruned._flatten_layers(include_self=False, recursive=True):
        for v in own_weights(layer):
            owner[id(v)] = layer
    out = []
    for wrapper in pruning_wrappers(pruned):
        for w, m in zip(wrapper.pruned_weights, wrapper.masks):
            out.append((owner[id(w)], w, np.where(to_np(m), to_np(w), 0)))
    return out


@pytest.mark.parametrize("name", cases(CONSTRUCTORS, cheap=True))
def test_prunes_with_defaults_exactly(name):
    model = build(name)
    pruned = kp.prune_low_magnitude(model)
    wrapped = {
        v.path for w in pruning_wrappers(pruned) for v in w.pruned_weights
    }
    missing = kernel_paths(model) - wrapped
    assert not missing, sorted(missing)[:5]

    once = kp.prune_once(model, 0.5)
    weights = effective_weights(once)
    assert {v.path for _, v, _ in weights} == wrapped
    wrong = [
        (v.path, np.count_nonzero(value))
        for _, v, value in weights
        if np.count_nonzero(value) != kp.kept_count(value.size, 0.5)
    ]
    assert not wrong, wrong[:5]


def groups_along(value, axes, n=4):
    """Non-zeros per group of `n` consecutive weights along `axes`."""
    axes = [a % value.ndim for a in axes]
    others = [i for i in range(value.ndim) if i not in axes]
    k = int(np.prod([value.shape[a] for a in axes]))
    flat = np.transpose(value, axes + others).reshape(k, -1)
    whole = k - k % n
    full = flat[:whole].reshape(whole // n, n, flat.shape[1])
    return np.count_nonzero(full, axis=1), flat[whole:]


@pytest.mark.parametrize("name", cases(CONSTRUCTORS, cheap=True))
def test_2_by_4_along_contracted_axes(name):
    model = build(name)
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    checked = 0
    for layer, v, value in effective_weights(pruned):
        axis = patterns.contracted_axes(layer, v)
        axes = [axis] if isinstance(axis, int) else list(axis)
        counts, rest = groups_along(value, axes)
        assert (counts == 2).all(), (v.path, np.unique(counts))
        # A trailing group shorter than 4 (3 RGB channels) keeps at most 2.
        if rest.size:
            assert (np.count_nonzero(rest, axis=0) <= 2).all(), v.path
        assert np.count_nonzero(value) < value.size, v.path
        checked += 1
    assert checked


@pytest.mark.parametrize("name", cases(CONSTRUCTORS, cheap=False))
def test_global_allocation_exact_and_no_empty_tensor(name):
    model = build(name)
    pruned = kp.prune_once(model, 0.8, allocation="global")
    weights = effective_weights(pruned)
    total = sum(value.size for _, _, value in weights)
    kept = sum(np.count_nonzero(value) for _, _, value in weights)
    assert kept == kp.kept_count(total, 0.8)
    empty = [v.path for _, v, value in weights if not np.count_nonzero(value)]
    assert not empty


@pytest.mark.parametrize("name", cases(CONSTRUCTORS, cheap=False))
def test_fit_strip_save_load(name):
    model = build(name)
    _BUILT.clear()  # fit trains the copy; strip_pruning works in place
    x = images(name)
    y = np.array([0, 1], "int32")
    dense_path = os.path.join(tempfile.mkdtemp(), "dense.keras")
    model.save(dense_path)
    pruned = kp.prune_low_magnitude(model)
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pruned.fit(
        x, y, batch_size=1, verbose=0, callbacks=[kp.UpdatePruningStep()]
    )
    assert int(to_np(kp.pruning_step(pruned))) == 2
    for _, v, value in effective_weights(pruned):
        assert np.count_nonzero(value) == kp.kept_count(value.size, 0.5)
        assert np.count_nonzero(to_np(v)) == np.count_nonzero(value)
    want = to_np(pruned(x, training=False))
    stripped = kp.strip_pruning(pruned)
    assert type(stripped) is type(model)
    assert len(stripped.layers) == len(model.layers)
    assert not pruning_wrappers(stripped)
    got = to_np(stripped(x, training=False))
    assert_same_outputs(got, want)
    path = os.path.join(tempfile.mkdtemp(), "stripped.keras")
    stripped.save(path)
    assert os.path.getsize(path) <= 1.05 * os.path.getsize(dense_path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(to_np(loaded(x, training=False)), got)


def test_plan_reports_depthwise_kernels_under_2_by_4():
    # MobileNets and EfficientNets are mostly depthwise kernels. N:M groups
    # them along their channels (tfmot's layout); they stay pruned 2:4 but
    # the plan says sparse matrix hardware cannot use it.
    x = keras.Input((6, 6, 8))
    y = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    y = keras.layers.SeparableConv2D(8, 3, name="sep")(y)
    m = keras.Model(x, y)
    pruned = kp.prune_once(m, 0.5, sparsity_m_by_n=(2, 4))
    rows = {
        (r["layer"], r["weight"]): r["reason"]
        for r in kp.pruning_plan(pruned)
        if r["pruned"]
    }
    flagged = {k for k, reason in rows.items() if "cannot use" in reason}
    assert set(rows) == {
        ("dw", "kernel"),
        ("sep", "depthwise_kernel"),
        ("sep", "pointwise_kernel"),
    }
    assert flagged == {("dw", "kernel"), ("sep", "depthwise_kernel")}
    for _, v, value in effective_weights(pruned):
        counts, rest = groups_along(value, [-2])
        assert (counts == 2).all() and not rest.size, v.path
