"""README's three answers, checked on every entry point (claims12).

tests/test_docs_claims.py checks the answers through `fit` with
`UpdatePruningStep`. Here the same answers are checked where a user can
also reach the masks: `fit` without the callback (the compiled in-step
update), an eager custom loop (`model(x, training=True)`), `prune_once`,
`PruneLowMagnitude.update_masks_now` and `magnitude_mask` itself, with
ties (equal magnitudes of both signs, exact zeros, negative zeros), and
plain-Python custom schedules returning Python, NumPy and 0-d array values
that train, save and reload. The fast paths the docs promise (NumPy select
for eager calls and host updates at the update steps only) are checked by
counting calls of `masks.host_mask`.
"""

import os
import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core import masks as masks_lib
from keras_prune.integration import strip as strip_lib

from conftest import ON_CPU
from conftest import to_np


@pytest.fixture(autouse=True)
def _keras_registry_restored():
    """README's `Staircase` registers itself with Keras when its block runs:
    each test leaves Keras' global registry as it found it."""
    from keras.src.saving import object_registration as registry

    objects = dict(registry.GLOBAL_CUSTOM_OBJECTS)
    names = dict(registry.GLOBAL_CUSTOM_NAMES)
    yield
    registry.GLOBAL_CUSTOM_OBJECTS.clear()
    registry.GLOBAL_CUSTOM_OBJECTS.update(objects)
    registry.GLOBAL_CUSTOM_NAMES.clear()
    registry.GLOBAL_CUSTOM_NAMES.update(names)


def wrappers(model):
    return strip_lib.pruning_wrappers(model)


def mask_by_name(model):
    return {
        w.layer.name: to_np(w.masks[0]).astype(bool) for w in wrappers(model)
    }


# ------------------------------------------------------------------- ties


def _tie_kernels():
    rng = np.random.default_rng(12)
    out = {}
    w = np.ones((8, 6), "float32")
    w[::2] *= -1.0  # 48 equal magnitudes, both signs
    out["equal"] = w
    w = np.zeros((8, 6), "float32")  # README's [3,1,1,1,1,3], 42 zeros
    w.ravel()[[1, 5, 9, 20, 33, 40]] = [3, 1, 1, 1, 1, 3]
    out["sparse"] = w
    w = np.full((8, 6), -0.0, "float32")  # negative and positive zeros
    w.ravel()[::3] = 0.0
    w.ravel()[7:30:4] = -2.0
    out["negzero"] = w
    w = rng.normal(size=(8, 6)).astype("float32")  # 50% zero (question 2)
    zeros = rng.permutation(48)[:24]
    w.ravel()[zeros] = 0.0
    w.ravel()[zeros[:4]] = -0.0  # 4 of the 24 zeros negative
    out["half"] = w
    w = rng.integers(-2, 3, size=(8, 6)).astype("float32")  # 5 levels
    out["levels"] = w
    return out


TIES = _tie_kernels()


def reference_mask(w, sparsity):
    """README: keep max(round(n * (1 - s)), 1), the largest magnitudes,
    ties broken by flat position (lowest index kept)."""
    n = w.size
    k = int(to_np(keras_prune.kept_count(n, sparsity)))
    order = np.lexsort((np.arange(n), -np.abs(w.ravel())))
    mask = np.zeros(n, bool)
    mask[order[:k]] = True
    return mask.reshape(w.shape)


def _tie_model(schedule):
    x = keras.Input((8,))
    outs = [
        keras.layers.Dense(6, use_bias=False, name=name)(x) for name in TIES
    ]
    model = keras.Model(x, keras.layers.Concatenate()(outs))
    for name, w in TIES.items():
        model.get_layer(name).kernel.assign(w)
    return keras_prune.prune_low_magnitude(model, schedule)


X = np.random.default_rng(1).normal(size=(4, 8)).astype("float32")
Y = np.zeros((4, 6 * len(TIES)), "float32")


def _masks_from(entry, sparsity):
    if entry == "magnitude_mask":
        out = {}
        for name, w in TIES.items():
            a = to_np(keras_prune.magnitude_mask(w, sparsity))
            b = to_np(
                keras_prune.magnitude_mask(
                    keras.ops.convert_to_tensor(w), sparsity
                )
            )
            np.testing.assert_array_equal(a, b, err_msg=name)
            out[name] = a.astype(bool)
        return out, None
    if entry == "prune_once":
        model = _tie_model(None)  # unused; keeps the layer names
        model = keras_prune.prune_once(strip_lib.strip_pruning(model), sparsity)
        return mask_by_name(model), model
    if entry == "update_masks_now":
        model = _tie_model(keras_prune.ConstantSparsity(0.1, 0))
        for w in wrappers(model):
            w.update_masks_now(sparsity)
        return mask_by_name(model), None
    model = _tie_model(keras_prune.ConstantSparsity(sparsity, 0))
    if entry == "eager_call":
        model(X, training=True)
        return mask_by_name(model), None
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    callbacks = [keras_prune.UpdatePruningStep()] if entry == "fit_cb" else []
    model.fit(X[:1], Y[:1], verbose=0, callbacks=callbacks)
    return mask_by_name(model), model


@pytest.mark.parametrize(
    "entry",
    [
        "fit_cb",
        "fit_in_step",
        "eager_call",
        "prune_once",
        "update_masks_now",
        "magnitude_mask",
    ],
)
def test_ties_give_the_readme_mask_on_every_entry_point(entry):
    # Question 2: "a mask keeps exactly max(round(n * (1 - s)), 1) weights,
    # the largest magnitudes ... ties broken by position"; a 50%-sparse
    # tensor at target 0.5 keeps its non-zeros.
    fits = entry.startswith("fit")
    for sparsity in (0.5,) if fits else (0.5, 0.75):
        got, model = _masks_from(entry, sparsity)
        for name, w in TIES.items():
            np.testing.assert_array_equal(
                got[name],
                reference_mask(w, sparsity),
                err_msg=f"{entry} {name} {sparsity}",
            )
        if sparsity == 0.5:
            np.testing.assert_array_equal(got["half"], TIES["half"] != 0)
        if model is not None and entry != "fit_in_step":
            # Stored weights are exactly weight * mask (question 2: a
            # half-sparse kernel at 0.5 is left as it was).
            for w in wrappers(model):
                kernel = to_np(w.layer.kernel)
                np.testing.assert_array_equal(
                    kernel, TIES[w.layer.name] * got[w.layer.name]
                )


# ------------------------------------------------------------- question 1


@pytest.mark.parametrize("entry", ["fit_in_step", "eager_loop"])
def test_q1_begin_step_prunes_initial_sparsity_without_the_callback(entry):
    # The test of docs_claims (fit with UpdatePruningStep) gave
    # [(3, 0), (4, 50), (5, 50), (6, 85), (8, 90)]: the same here.
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(10, use_bias=False, name="a")]
    )
    schedule = keras_prune.PolynomialDecay(
        initial_sparsity=0.5,
        final_sparsity=0.9,
        begin_step=3,
        end_step=7,
        frequency=2,
    )
    pruned = keras_prune.prune_low_magnitude(model, schedule)
    x = np.ones((1, 10), "float32")
    if entry == "fit_in_step":
        pruned.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    seen = []
    for batches in (3, 1, 1, 1, 2):
        if entry == "fit_in_step":
            pruned.fit(
                np.repeat(x, batches, 0),
                np.zeros((batches, 10), "float32"),
                batch_size=1,
                verbose=0,
            )
        else:
            for _ in range(batches):
                pruned(x, training=True)
        (mask,) = wrappers(pruned)[0].masks
        seen.append(
            (keras_prune.pruning_step(pruned), 100 - int(to_np(mask).sum()))
        )
    assert seen == [(3, 0), (4, 50), (5, 50), (6, 85), (8, 90)]


# ------------------------------------------------------------- question 3


def _halves(step):
    # Updates at odd steps: 0.5 at step 1, 0.75 from step 3 on.
    return 0.5 if step < 3 else 0.75


RETURNS = {
    "python": lambda step: (step % 2 == 1, _halves(step)),
    "ints": lambda step: (int(step % 2), 0 if step % 2 == 0 else _halves(step)),
    "numpy32": lambda step: (
        np.bool_(step % 2 == 1),
        np.float32(_halves(step)),
    ),
    "numpy64": lambda step: (np.int64(step % 2), np.float64(_halves(step))),
    "array0d": lambda step: (np.array(step % 2 == 1), np.array(_halves(step))),
}


def _tf_math(step):
    # README: "A schedule written for tfmot with `tf.math` also runs
    # unchanged, on all three backends, when TensorFlow is installed."
    import tensorflow as tf

    odd = tf.math.equal(tf.math.floormod(tf.constant(step), 2), 1)
    return odd, tf.where(step < 3, 0.5, 0.75)


try:
    import tensorflow  # noqa: F401

    RETURNS["tf_math"] = _tf_math
except ImportError:  # the claim is "when TensorFlow is installed"
    pass


@keras.saving.register_keras_serializable(package="claims12")
class PlainPython(keras_prune.PruningSchedule):
    """A schedule in plain Python returning the values of `RETURNS[kind]`."""

    def __init__(self, kind):
        self.kind = kind

    def __call__(self, step):
        assert isinstance(step, np.int64), type(step)
        return RETURNS[self.kind](step)

    def get_config(self):
        return {"kind": self.kind}


@keras.saving.register_keras_serializable(package="claims12")
def claims12_halves(step):
    return np.float64(_halves(step))


def _q3_model():
    keras.utils.set_random_seed(3)
    x = keras.Input((8,))
    names = [*RETURNS, "function"]
    outs = [keras.layers.Dense(6, name=name)(x) for name in names]
    model = keras.Model(x, keras.layers.Concatenate()(outs))
    schedules = {name: PlainPython(name) for name in RETURNS}
    schedules["function"] = keras_prune.FunctionSchedule(
        claims12_halves, begin_step=1, frequency=2
    )
    return keras_prune.prune_low_magnitude(model, schedules)


Y6 = np.zeros((4, 6 * (len(RETURNS) + 1)), "float32")


@pytest.mark.parametrize("entry", ["fit_cb", "fit_in_step", "eager_loop"])
def test_q3_plain_python_schedules_train_save_and_reload(entry, tmp_path):
    pruned = _q3_model()
    callbacks = [keras_prune.UpdatePruningStep()] if entry == "fit_cb" else []
    if entry == "eager_loop":
        for i in range(4):
            pruned(X[i : i + 1], training=True)
    else:
        pruned.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        pruned.fit(X, Y6, batch_size=1, verbose=0, callbacks=callbacks)
    # Steps 0..3: updates at 1 (0.5: 24 of 48 kept) and 3 (0.75: 12 kept).
    assert keras_prune.pruning_step(pruned) == 4
    kept = {k: int(v.sum()) for k, v in mask_by_name(pruned).items()}
    assert kept == {name: 12 for name in [*RETURNS, "function"]}

    path = os.path.join(tmp_path, "q3.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)  # registered: no scope needed
    schedules = {w.layer.name: w.pruning_schedule for w in wrappers(loaded)}
    assert [schedules[k].kind for k in RETURNS] == list(RETURNS)
    assert schedules["function"].fn is claims12_halves
    before = mask_by_name(loaded)
    for name, mask in mask_by_name(pruned).items():
        np.testing.assert_array_equal(before[name], mask, err_msg=name)
    if entry != "fit_cb":
        return  # training after a reload: once is enough
    loaded.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    loaded.fit(
        X[:2],
        Y6[:2],
        batch_size=1,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    # Steps 4 and 5: an update at 5 at 0.75 from the already pruned
    # weights with a zero learning rate keeps the same masks.
    assert keras_prune.pruning_step(loaded) == 6
    after = mask_by_name(loaded)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        assert int(after[name].sum()) == 12


def test_q3_readme_staircase_saves_and_reloads_once_registered(tmp_path):
    # The README's class as written, registered as the README now says.

    readme = open(
        os.path.join(os.path.dirname(__file__), "..", "README.md")
    ).read()
    (code,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", readme, re.S)
        if "class Staircase" in b
    ]
    namespace = {"keras": keras, "keras_prune": keras_prune}
    exec(code, namespace)
    staircase = namespace["Staircase"]
    assert keras.saving.get_registered_name(staircase).startswith(
        "my_schedules>"
    )
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    pruned = keras_prune.prune_low_magnitude(model, staircase())
    path = os.path.join(tmp_path, "staircase.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    (w,) = wrappers(loaded)
    assert type(w.pruning_schedule) is staircase
    assert w.pruning_schedule(np.int64(2000)) == (True, 0.6)


# -------------------------------------------------------------- fast paths


@pytest.fixture
def host_mask_calls(monkeypatch):
    calls = []
    real = masks_lib.host_mask

    def counting(weights, sparsity):
        calls.append(float(sparsity))
        return real(weights, sparsity)

    monkeypatch.setattr(masks_lib, "host_mask", counting)
    return calls


# The NumPy select is the CPU path (docs/design.md "On GPUs" has the rest).
cpu_only = pytest.mark.skipif(not ON_CPU, reason="the CPU paths")


@cpu_only
def test_eager_entry_points_take_the_numpy_select(host_mask_calls):
    # masks.py: "Eager calls on the CPU (`magnitude_mask` on a NumPy array
    # or an eager CPU tensor, on every backend) run `host_mask`";
    # update_masks_now / prune_once: "NumPy for single weights by
    # magnitude" (one host_mask per pruned weight, nothing compiled).
    w = TIES["levels"]
    keras_prune.magnitude_mask(w, 0.5)
    keras_prune.magnitude_mask(keras.ops.convert_to_tensor(w), 0.5)
    assert host_mask_calls == [0.5, 0.5]
    del host_mask_calls[:]
    model = _tie_model(keras_prune.ConstantSparsity(0.1, 0))
    for w in wrappers(model):
        w.update_masks_now(0.25)
    assert host_mask_calls == [0.25] * len(TIES)
    del host_mask_calls[:]
    keras_prune.prune_once(strip_lib.strip_pruning(model), 0.75)
    assert host_mask_calls == [0.75] * len(TIES)


@cpu_only
@pytest.mark.parametrize("entry", ["fit_cb", "fit_in_step", "eager_loop"])
def test_masks_are_selected_only_at_update_steps(host_mask_calls, entry):
    # README "Speed": with UpdatePruningStep in fit, masks are recomputed
    # between steps, only at the schedule's update steps, and the train
    # step does no mask work. design.md: in-step updates select on the
    # host too (JAX, TensorFlow without XLA; eager torch), under a `cond`.
    # 6 batches, frequency 2: updates at 0, 2, 4, one NumPy select per
    # pruned weight each, and none at the other steps, on every path.
    model = _tie_model(keras_prune.ConstantSparsity(0.5, 0, frequency=2))
    x = np.repeat(X, 2, 0)[:6]
    y = np.zeros((6, Y.shape[1]), "float32")
    if entry == "eager_loop":
        for i in range(6):
            model(x[i : i + 1], training=True)
    else:
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        callbacks = [keras_prune.UpdatePruningStep()]
        model.fit(
            x,
            y,
            batch_size=1,
            verbose=0,
            callbacks=callbacks if entry == "fit_cb" else [],
        )
    assert keras_prune.pruning_step(model) == 6
    assert host_mask_calls == [0.5] * (3 * len(TIES))


# ------------------------------------------------ one global threshold


@pytest.mark.parametrize(
    "entry",
    ["fit_cb", "fit_in_step", "eager_call", "prune_once", "update_masks_now"],
)
def test_global_ties_go_to_tensors_in_order_on_every_entry_point(entry):
    # design.md: "tied elements at the threshold go to tensors in order.
    # Each tensor then takes its own exact top-k"; README: "exactly
    # kept_count(N, s) of all N weights kept" (`max_sparsity` 1.0 lifts
    # the per-channel floor). Reference: one stable order over the
    # tensors concatenated in layer order.
    sparsity = 0.8
    every = np.concatenate([w.ravel() for w in TIES.values()])
    k = int(to_np(keras_prune.kept_count(every.size, sparsity)))
    assert k == 48
    keep = np.zeros(every.size, bool)
    keep[np.lexsort((np.arange(every.size), -np.abs(every)))[:k]] = True
    want = dict(zip(TIES, np.split(keep, len(TIES))))

    kwargs = dict(allocation="global", max_sparsity={".*": 1.0})
    dense = strip_lib.strip_pruning(_tie_model(None))
    if entry == "prune_once":
        model = keras_prune.prune_once(dense, sparsity, **kwargs)
    elif entry == "update_masks_now":
        model = keras_prune.prune_low_magnitude(
            dense, keras_prune.ConstantSparsity(0.1, 0), **kwargs
        )
        model(X)  # builds the wrappers
        wrappers(model)[0].update_masks_now(sparsity)  # the whole group
    else:
        model = keras_prune.prune_low_magnitude(
            dense, keras_prune.ConstantSparsity(sparsity, 0), **kwargs
        )
        if entry == "eager_call":
            model(X, training=True)
        else:
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
            callbacks = [keras_prune.UpdatePruningStep()]
            model.fit(
                X[:1],
                Y[:1],
                verbose=0,
                callbacks=callbacks if entry == "fit_cb" else [],
            )
    got = mask_by_name(model)
    for name in TIES:
        np.testing.assert_array_equal(
            got[name].ravel(), want[name], err_msg=name
        )


# ---------------------------------------------- row 6: from |weight * mask|


@pytest.mark.parametrize("entry", ["fit_cb", "fit_in_step", "update_masks_now"])
def test_row_06_new_masks_read_weight_times_mask_on_every_entry_point(entry):
    # Migration row 6: "New mask computed from |weight * mask|: once
    # pruned, a weight only comes back if the target sparsity goes down."
    # test_docs_claims checks the eager call; here the compiled step, the
    # host update of the callback and update_masks_now.
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(10, use_bias=False, name="a")]
    )
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0, frequency=1)
    )
    (w,) = wrappers(pruned)
    x, y = np.ones((1, 10), "float32"), np.zeros((1, 10), "float32")
    callbacks = [keras_prune.UpdatePruningStep()] if entry == "fit_cb" else []
    if entry == "update_masks_now":
        pruned(x)
        w.update_masks_now(0.5)
    else:
        pruned.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        pruned.fit(x, y, verbose=0, callbacks=callbacks)
    first = to_np(w.masks[0]).astype(bool)
    assert int(first.sum()) == 50
    kernel = to_np(w.layer.kernel).copy()
    kernel[~first] = 100.0  # every pruned weight now the largest
    w.layer.kernel.assign(kernel)
    if entry == "update_masks_now":
        w.update_masks_now(0.5)
    else:
        pruned.fit(x, y, verbose=0, callbacks=callbacks)  # step 1: update
        assert keras_prune.pruning_step(pruned) == 2
    np.testing.assert_array_equal(to_np(w.masks[0]).astype(bool), first)
    if entry == "update_masks_now":
        w.update_masks_now(0.25)  # the target goes down: 25 come back
        second = to_np(w.masks[0]).astype(bool)
        assert int(second.sum()) == 75 and np.all(second[first])


# -------------------------------------------------------- python -m


def test_python_m_keras_prune_runs_the_cli(monkeypatch, capsys):
    # README "Commands": `python -m keras_prune ...` is `keras-prune ...`.
    import runpy
    import sys

    monkeypatch.setattr(
        sys, "argv", ["keras_prune", "schedule", "ConstantSparsity(0.5, 3)"]
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("keras_prune", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "ConstantSparsity(target_sparsity=0.5, begin_step=3" in out


def test_cli_demo_creates_its_output_folder(tmp_path, monkeypatch, capsys):
    # README "Commands": `keras-prune demo` (default `--out out/demo`) in a
    # fresh checkout, where `out/` does not exist: it refused with
    # "folder 'out/demo' does not exist" (the demo itself creates it).
    from keras_prune import cli
    from keras_prune import demo

    ran = []
    monkeypatch.setattr(demo, "main", lambda argv: ran.append(argv) or 0)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo"]) == 0
    assert ran == [["--out", "out/demo"]]
    # An existing folder still refuses to overwrite without --force.
    os.makedirs("out/demo")
    open("out/demo/dense.keras", "w").close()
    assert cli.main(["demo"]) == 2  # a user error
    assert "dense.keras" in capsys.readouterr().err
    assert ran == [["--out", "out/demo"]]
