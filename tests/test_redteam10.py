"""Hostile pass 10: saved masks that break their pattern, legacy `.h5`
files, torch tensors with the negative bit or a sparse layout, thresholds
under mixed precision, float64 host updates, and built-in schedules and
patterns changed after creation.

- A `.keras` file whose mask keeps 3 of 4 weights of a 2:4 group (or part
  of a block, or part of a channel) loaded silently: the stripped weights
  then failed `is_pruned_m_by_n`. Loading now refuses such a mask by name
  (`integration/loading.py`), and so does saving; masks a real update can
  give (every group N:M or dense, gradual N:M) still load.
- Keras' legacy `.h5` loader assigned every variable itself: none of the
  checks of hostile pass 5 ran (a mask of 0.5 loaded as True, a step of
  2**32 + 3 as 3), for top-level and nested wrappers.
- `magnitude_mask`, `kept_count`, `is_pruned_m_by_n` and `compress_array`
  of a torch tensor with the negative bit set (`torch._neg_view`) raised
  torch's "negative bit" error, or skipped their checks (a sparsity of
  -0.5 and a count of -4 were taken for symbolic tensors); a sparse torch
  tensor ended in a RuntimeError about reshape.
- On torch under `mixed_bfloat16`, in-step updates left every threshold at
  0.0 (an `assign` inside the layer's autocast scope wrote a copy).
- The host update of `fit` with `UpdatePruningStep` rewrote a float64
  kernel from its float32 copy.
- `schedule.target_sparsity = 0.75` after a first `fit` was ignored by the
  compiled in-step update on JAX and TensorFlow but used with
  `UpdatePruningStep` and on torch; `final_sparsity = 1.5` was not checked.

One tiny model per pattern is saved once per module; each case edits a
copy of its `model.weights.h5` (or of the `.h5` file).
"""

import copy
import io
import pickle
import re
import zipfile

import h5py
import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.state import pruning_wrappers

from conftest import BACKEND
from conftest import to_np

OWN = "layers/prune_low_magnitude/vars/"
MASK = OWN + "1"  # pruning_step, kernel_mask, kernel_threshold, count


def _model(kind):
    rng = np.random.default_rng(3)
    if kind == "conv":
        inp = keras.Input((3, 3, 4))
        out = keras.layers.Conv2D(2, 2, name="c")(inp)
    else:
        rows = 7 if kind == "nm" else 8
        inp = keras.Input((rows,))
        out = keras.layers.Dense(4 if kind != "nm" else 2, name="d")(inp)
    model = keras.Model(inp, out)
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in model.weights]
    )
    return model


PRUNE = {
    "nm": dict(sparsity_m_by_n=(3, 4)),  # kernel (7, 2): groups 4 + 3
    "conv": dict(sparsity_m_by_n=(2, 4)),  # kernel (2, 2, 4, 2): axis 2
    "block": dict(block_size=(2, 2)),  # kernel (8, 4)
    "channel": dict(pattern="channel"),  # kernel (8, 4)
}


def _legal_mask(kind):
    """A mask each pattern's update could give (set, not computed: no
    compile)."""
    if kind == "nm":  # 1 kept of each group of 4, and of the trailing 3
        mask = np.zeros((7, 2), bool)
        mask[[1, 5], 0] = mask[[2, 4], 1] = True
    elif kind == "conv":  # 2 of the 4 input channels at each position
        mask = np.zeros((2, 2, 4, 2), bool)
        mask[..., :2, 0] = mask[..., 2:, 1] = True
    elif kind == "block":  # a checkerboard of (2, 2) blocks
        grid = np.add.outer(np.arange(4), np.arange(2)) % 2 == 0
        mask = np.kron(grid, np.ones((2, 2), int)).astype(bool)
    else:  # channels 0 and 2
        mask = np.zeros((8, 4), bool)
        mask[:, [0, 2]] = True
    return mask


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`{kind: (path, mask)}`: pruned models saved as `.keras`."""
    folder = tmp_path_factory.mktemp("rt10")
    out = {}
    for kind, kwargs in PRUNE.items():
        pruned = kp.prune_low_magnitude(
            _model(kind), kp.ConstantSparsity(0.5, 0), **kwargs
        )
        mask = _legal_mask(kind)
        pruning_wrappers(pruned)[0].masks[0].assign(mask)
        path = folder / f"{kind}.keras"
        pruned.save(path)
        out[kind] = (path, mask)
    return out


def _with_mask(src, dst, mask):
    """Copy of the `.keras` file `src` at `dst` whose first mask is `mask`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "model.weights.h5":
                buf = io.BytesIO(data)
                with h5py.File(buf, "r+") as f:
                    del f[MASK]
                    f.create_dataset(MASK, data=mask)
                data = buf.getvalue()
            zout.writestr(info.filename, data)
    return dst


def test_intact_files_load_with_their_masks(saved):
    for path, mask in saved.values():
        loaded = keras.saving.load_model(path)
        np.testing.assert_array_equal(
            to_np(pruning_wrappers(loaded)[0].masks[0]), mask
        )


def _edited(saved, kind, edit):
    mask = saved[kind][1].copy()
    edit(mask)
    return mask


def _first_pruned(mask, where=()):
    index = tuple(np.argwhere(~mask[where])[0])
    return where + index


BROKEN = {
    # kind, edit of the saved mask, what the message names
    "nm-full-group": (
        "nm",
        lambda m: m.__setitem__(_first_pruned(m[:4, :1]), True),
        "keeps 2 of the 4 weights of group 0 of row 0",
    ),
    "nm-tail-group": (
        "nm",
        lambda m: m.__setitem__((4 + _first_pruned(m[4:, :1])[0], 0), True),
        "keeps 2 of the 3 weights of group 1 of row 0",
    ),
    "conv-in-channels": (
        "conv",
        lambda m: m.__setitem__((0, 0, int(np.argmin(m[0, 0, :, 0])), 0), True),
        "keeps 3 of the 4 weights of group 0 of row 0",
    ),
    "block": (
        "block",
        lambda m: m.__setitem__(tuple(np.argwhere(~m)[0]), True),
        "keeps part of block",
    ),
    "channel": (
        "channel",
        lambda m: m.__setitem__((0, int(np.argmin(m[0]))), True),
        "keeps part of channel",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_mask_breaking_its_pattern_is_refused_by_name(saved, tmp_path, case):
    """Before: loaded silently (the stripped kernel then failed
    `is_pruned_m_by_n`, or held part of a block or channel)."""
    kind, edit, message = BROKEN[case]
    mask = _edited(saved, kind, edit)
    path = _with_mask(saved[kind][0], tmp_path / "m.keras", mask)
    with pytest.raises(ValueError) as info:
        keras.saving.load_model(path)
    text = str(info.value)
    layer = "c" if kind == "conv" else "d"
    assert f"pruning state of layer '{layer}': its saved `kernel_mask`" in text
    assert message in text


LEGAL = {
    # Masks an update can give: a dense group (gradual N:M, or a mask not
    # updated yet), every group dense, fewer kept than n - m.
    "nm-dense-group": ("nm", lambda m: m.__setitem__((slice(0, 4), 0), True)),
    "nm-dense-tail": ("nm", lambda m: m.__setitem__((slice(4, 7), 1), True)),
    "nm-all-dense": ("nm", lambda m: m.fill(True)),
    "nm-fewer-kept": ("nm", lambda m: m.__setitem__((slice(0, 4), 0), False)),
    "conv-spatial": ("conv", lambda m: m.__setitem__((0, 1), m[0, 0])),
    "block-whole": ("block", lambda m: m.__setitem__((slice(0, 2), 0), True)),
    "channel-whole": ("channel", lambda m: m.__setitem__((slice(None), 0), 0)),
}


@pytest.mark.parametrize("case", list(LEGAL))
def test_masks_an_update_can_give_still_load(saved, tmp_path, case):
    kind, edit = LEGAL[case]
    mask = _edited(saved, kind, edit)
    if case == "block-whole":  # keep the whole (2, 2) block
        mask[0:2, 0:2] = True
    path = _with_mask(saved[kind][0], tmp_path / "m.keras", mask)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        to_np(pruning_wrappers(loaded)[0].masks[0]), mask
    )


def test_weights_file_with_a_broken_mask_is_refused(saved, tmp_path):
    """`model.load_weights(.weights.h5)` goes through the same check."""
    path, mask = saved["nm"]
    model = keras.saving.load_model(path)
    weights = tmp_path / "m.weights.h5"
    model.save_weights(weights)
    broken = _edited(saved, "nm", BROKEN["nm-full-group"][1])
    with h5py.File(weights, "r+") as f:
        del f[MASK]
        f.create_dataset(MASK, data=broken)
    with pytest.raises(ValueError, match="sparsity_m_by_n=\\(3, 4\\) keeps"):
        model.load_weights(weights)


# ------------------------------------------------------- negative bit


def _torch():
    if BACKEND != "torch":
        pytest.skip("torch tensors only")
    import torch

    return torch


def test_negative_bit_tensors_are_read_as_their_values():
    """Before: torch's 'negative bit' RuntimeError (magnitude_mask,
    is_pruned_m_by_n), or a TypeError (compress_array)."""
    torch = _torch()
    plain = np.array([[1.0, -2.0, 3.0, 0.5], [0.0, 4.0, -0.25, 2.5]], "f4")
    neg = torch._neg_view(torch.from_numpy(plain))
    assert neg.is_neg()
    np.testing.assert_array_equal(
        to_np(kp.magnitude_mask(neg, 0.5)), kp.magnitude_mask(-plain, 0.5)
    )
    assert kp.is_pruned_m_by_n(neg, (2, 4), "C_IN") is False
    sparse = torch._neg_view(torch.tensor([[1.0], [0.0], [0.0], [2.0]]))
    assert kp.is_pruned_m_by_n(sparse, (2, 4)) is True
    np.testing.assert_array_equal(
        kp.decompress_array(kp.compress_array(neg)), -plain
    )


def test_negative_bit_arguments_are_checked():
    """Before: a neg view failed to convert, was taken for a symbolic
    tensor and not checked: sparsity -0.5 kept everything, kept_count of
    sparsity -0.5 gave 15 of 10, a count of -4 gave 1."""
    torch = _torch()
    weights = torch.tensor([1.0, -2.0, 3.0, 0.5])
    with pytest.raises(ValueError, match="got -0.5"):
        kp.magnitude_mask(weights, torch._neg_view(torch.tensor(0.5)))
    with pytest.raises(ValueError, match="got -0.5"):
        kp.kept_count(10, torch._neg_view(torch.tensor(0.5)))
    with pytest.raises(ValueError, match="got -4"):
        kp.kept_count(torch._neg_view(torch.tensor(4)), 0.5)
    with pytest.raises(TypeError, match="dtype float32"):
        kp.kept_count(torch._neg_view(torch.tensor(4.0)), 0.5)
    assert int(kp.kept_count(10, torch._neg_view(torch.tensor(-0.25)))) == 8


def test_sparse_torch_weights_are_refused_clearly():
    """Before: "reshape is not implemented for sparse tensors" (COO) and
    "Sparse CSR tensors do not have is_contiguous"."""
    torch = _torch()
    dense = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    for sparse in (dense.to_sparse(), dense.to_sparse_csr()):
        with pytest.raises(TypeError, match="to_dense"):
            kp.magnitude_mask(sparse, 0.5)


# ------------------------------------------------- mixed-precision threshold


def test_in_step_threshold_under_mixed_precision_is_the_smallest_kept():
    """Before, on torch: 0.0 (the assign inside the layer's bfloat16
    autocast scope wrote a cast copy of the threshold)."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _model("block")  # Dense(4) on 8 inputs
    kernel = to_np(model.weights[0]).copy()
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0, end_step=0)
    )
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.ones((4, 8), "float32")
    pruned.fit(x, np.zeros((4, 4), "float32"), batch_size=4, verbose=0)
    wrapper = pruning_wrappers(pruned)[0]
    mask = to_np(wrapper.masks[0])
    assert int(mask.sum()) == 16
    np.testing.assert_array_equal(mask, kp.magnitude_mask(kernel, 0.5))
    threshold = to_np(wrapper.thresholds[0])
    assert threshold.dtype == np.float32
    assert threshold == np.abs(kernel[mask]).min() > 0


# ------------------------------------------------------------- schedules


SCHEDULES = [
    (kp.ConstantSparsity(0.5, 0, frequency=2), "target_sparsity", 0.75),
    (kp.PolynomialDecay(0.1, 0.5, 0, 10), "final_sparsity", 1.5),
    (kp.PolynomialDecay(0.1, 0.5, 0, 10), "power", 2),
    (kp.ExponentialDecay(0.1, 0.5, 0, 10), "decay", 0.1),
    (kp.CosineDecay(0.1, 0.5, 0, 10), "frequency", 0),
]


@pytest.mark.parametrize(
    "schedule, name, value", SCHEDULES, ids=[s[1] for s in SCHEDULES]
)
def test_builtin_schedule_settings_are_fixed_once_created(
    schedule, name, value
):
    """Before: a valid change was ignored by compiled in-step updates (JAX,
    TensorFlow) and used by `UpdatePruningStep` and torch (masks 0.5 vs
    0.75 sparse after a second `fit`); an invalid one was not checked."""
    before = schedule.get_config()
    with pytest.raises(AttributeError, match=f"{name} cannot be changed"):
        setattr(schedule, name, value)
    assert schedule.get_config() == before
    assert copy.deepcopy(schedule).get_config() == before
    assert pickle.loads(pickle.dumps(schedule)).get_config() == before


def test_user_schedule_subclass_keeps_plain_attributes():
    class Mine(kp.PolynomialDecay):
        pass

    schedule = Mine(0.1, 0.5, 0, 10)
    schedule.final_sparsity = 0.6  # the user's class, the user's rules
    assert schedule.final_sparsity == 0.6


# ---------------------------------------------------------- legacy .h5


@pytest.fixture(scope="module")
def saved_h5(tmp_path_factory):
    """A 2:4-pruned model with a nested pruned model, saved as `.h5`."""
    inner = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, name="d")], name="inner"
    )
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(4, name="head")(inner(inp)))
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0), sparsity_m_by_n=(2, 4)
    )
    masks = []
    for wrapper in pruning_wrappers(pruned):
        rows = wrapper.masks[0].shape[0]
        mask = np.tile(np.array([[1], [0], [0], [1]], bool), (rows // 4, 4))
        wrapper.masks[0].assign(mask)
        masks.append(mask)
    path = tmp_path_factory.mktemp("rt10h5") / "pruned.h5"
    pruned.save(path)
    return path, masks


H5_NESTED = "model_weights/inner/inner/prune_low_magnitude_d/"
H5_HEAD = "model_weights/prune_low_magnitude_head/prune_low_magnitude_head/"

H5_LIES = [
    # key, value, message; before -> loaded as
    (H5_NESTED + "kernel_mask", np.full((8, 4), 0.5, "f4"), "other than 0"),
    (H5_HEAD + "kernel_mask", np.full((4, 4), 2, "u1"), "other than 0"),
    (H5_HEAD + "pruning_step", np.int64(2**32 + 3), "outside [0, 2**31"),
    (H5_NESTED + "pruning_step", np.float32(3.7), "expected an integer"),
    (H5_HEAD + "nonfinite_count", np.int32(-1), "outside [0, 2**31"),
    (H5_HEAD + "kernel_threshold", np.float64(1e300), "beyond float32"),
    (  # 3 of 4 kept in a 2:4 group
        H5_HEAD + "kernel_mask",
        np.tile(np.array([[1], [1], [0], [1]], bool), (1, 4)),
        "keeps 3 of the 4 weights",
    ),
]


@pytest.mark.parametrize(
    "key, value, message",
    H5_LIES,
    ids=[f"{k[-14:]}-{m}" for k, _, m in H5_LIES],
)
def test_legacy_h5_pruning_state_is_checked(
    saved_h5, tmp_path, key, value, message
):
    """Before: Keras' `.h5` loader assigned each variable itself, without
    `load_own_variables`: every lie loaded (mask 0.5 or 2 as True, step
    2**32 + 3 as 3, 3.7 as 3, count -1, threshold inf, broken 2:4)."""
    path = tmp_path / "m.h5"
    path.write_bytes(saved_h5[0].read_bytes())
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_dataset(key, data=value)
    layer = "d" if key.startswith(H5_NESTED) else "head"
    with pytest.raises(ValueError) as info:
        keras.saving.load_model(path)
    text = str(info.value)
    assert f"pruning state of layer '{layer}'" in text
    assert message in text


def test_legacy_h5_intact_file_loads_its_state(saved_h5):
    path, masks = saved_h5
    loaded = keras.saving.load_model(path)
    wrappers = pruning_wrappers(loaded)
    for wrapper, mask in zip(wrappers, masks):
        np.testing.assert_array_equal(to_np(wrapper.masks[0]), mask)
    # The stand-ins exist only inside the loader.
    assert all(
        type(v).__name__ != "_CheckedVariable"
        for w in wrappers
        for v in w.weights
    )


# ------------------------------------------------ float64 host updates


def test_host_update_keeps_float64_weights_exact():
    """Before: the host update of `fit` with `UpdatePruningStep` wrote each
    weight back from its float32 copy (a float64 kernel lost its low bits
    at every update: kept weights 4e-8 off the in-step run)."""
    if BACKEND == "jax":
        pytest.skip("JAX keeps float64 as float32 without jax_enable_x64")
    layer = keras.layers.Dense(4, dtype="float64", name="d")
    layer.build((None, 8))
    kernel = np.random.default_rng(5).normal(size=(8, 4)) * (1 + 2.0**-40)
    layer.kernel.assign(kernel)
    wrapper = kp.PruneLowMagnitude(layer, kp.ConstantSparsity(0.5, 0))
    wrapper.build((None, 8))
    assert wrapper.mask_update().update_now(0.5, zero_weights=True) == 0
    mask = to_np(wrapper.masks[0])
    assert int(mask.sum()) == 16
    np.testing.assert_array_equal(
        mask, kp.magnitude_mask(kernel.astype("float32"), 0.5)
    )
    stored = to_np(layer.kernel)
    assert stored.dtype == np.float64
    assert stored[mask].tobytes() == kernel[mask].tobytes()
    assert not stored[~mask].any()


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".kpz"])
def test_mask_set_by_hand_off_its_pattern_saves_marked_over_a_good_file(
    saved, tmp_path, suffix
):
    """Before: saving a mask set by hand that breaks 2:4 was refused from
    inside Keras' save, after Keras had opened the file for writing: the
    good file saved at the same path before was lost (left truncated, not
    loadable). Now the mask is saved as it is, with a warning naming it,
    and the file marks it, so it loads back with the same warning; a file
    with such a mask and no mark is still refused (the tests above)."""
    from keras_prune.integration.loading import OFF_PATTERN_KEY

    model = keras.saving.load_model(saved["conv"][0])
    path = tmp_path / f"m{suffix}"
    save, load = _savers(suffix, saved["conv"][0])
    save(model, path)  # the user's good file
    assert load(path) is not None
    mask = _edited(saved, "conv", BROKEN["conv-in-channels"][1])
    pruning_wrappers(model)[0].masks[0].assign(mask)
    message = (
        "Layer 'c': its `kernel_mask` (the mask of `kernel`) keeps 3 of "
        "the 4 weights of group 0 of row 0"
    )
    with pytest.warns(UserWarning, match=re.escape(message)) as record:
        save(model, path)
    assert sum("Saved as it is" in str(w.message) for w in record) == 1
    if suffix != ".kpz":
        with h5py.File(_weights_h5(path), "r") as f:
            marks = []
            f.visititems(
                lambda name, obj: (
                    marks.append(name)
                    if name.endswith(OFF_PATTERN_KEY)
                    else None
                )
            )
            assert len(marks) == 1
            assert int(np.asarray(f[marks[0]])) == 1
    with pytest.warns(UserWarning, match=re.escape(message)) as record:
        loaded = load(path)
    assert sum("Loaded as it is" in str(w.message) for w in record) == 1
    np.testing.assert_array_equal(
        to_np(pruning_wrappers(loaded)[0].masks[0]), mask
    )
    kernel = to_np(pruning_wrappers(loaded)[0].layer.kernel)
    assert not kernel[~mask].any()
    # the slot kept again by hand holds the zero the first save baked in
    assert int(np.count_nonzero(kernel)) == int(mask.sum()) - 1 == 16


@pytest.mark.parametrize(
    "mark",
    [np.int32(0), np.int32(-1), np.float32(1.5), np.array([1, 1], "int32")],
    ids=["zero", "negative", "float", "vector"],
)
def test_lying_off_pattern_mark_is_refused_by_name(saved, tmp_path, mark):
    """The mark that lets an off-pattern mask load is checked as a count
    (an integer scalar >= 1), like the wrapper's other saved counters."""
    from keras_prune.integration.loading import OFF_PATTERN_KEY

    src, mask = saved["conv"]
    dst = tmp_path / "m.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "model.weights.h5":
                buf = io.BytesIO(data)
                with h5py.File(buf, "r+") as f:
                    f.create_dataset(OWN + OFF_PATTERN_KEY, data=mark)
                data = buf.getvalue()
            zout.writestr(info.filename, data)
    with pytest.raises(ValueError) as info:
        keras.saving.load_model(dst)
    assert f"layer 'c': its saved `{OFF_PATTERN_KEY}`" in str(info.value)


def _savers(suffix, architecture):
    if suffix == ".kpz":
        return kp.save_compressed, kp.load_compressed
    if suffix == ".keras":
        return (lambda m, p: m.save(p)), keras.saving.load_model

    def load(path):
        fresh = keras.saving.load_model(architecture)
        fresh.load_weights(path)
        return fresh

    return (lambda m, p: m.save_weights(p)), load


def _weights_h5(path):
    if str(path).endswith(".weights.h5"):
        return path
    with zipfile.ZipFile(path) as z:
        return io.BytesIO(z.read("model.weights.h5"))


def test_compressed_file_with_a_broken_mask_is_refused(
    saved, tmp_path, monkeypatch
):
    """`load_compressed` goes through the same check (a `.kpz` written
    without the mark of a mask saved off its pattern, as an old or hostile
    writer)."""
    from keras_prune.integration import loading

    model = keras.saving.load_model(saved["channel"][0])
    mask = _edited(saved, "channel", BROKEN["channel"][1])
    pruning_wrappers(model)[0].masks[0].assign(mask)
    monkeypatch.setattr(loading, "mark_masks_off_pattern", lambda w, s: 0)
    path = tmp_path / "m.kpz"
    kp.save_compressed(model, path)
    monkeypatch.undo()
    with pytest.raises(kp.CompressedFormatError) as info:
        kp.load_compressed(path)
    assert "layer 'd': its saved `kernel_mask`" in str(info.value)
    assert "keeps part of channel" in str(info.value)
