"""Models pruned in place reload from `.keras` files, pruned (issue 17.3).

A user's subclassed model and Keras-Hub tasks are pruned in place: they keep
their class (`isinstance`, methods, `generate()`), and `model.save` then
`keras.saving.load_model` gives back the pruned model, of the same class,
with the same masks, thresholds, steps and weights, and training resumes
where it stopped. `strip_pruning` gives the model its own class back.

Every model is trained, saved and checked once (module fixtures); ONE
subprocess does every fresh-process load (`fresh`), first with keras-prune
blocked (a pruned file must then fail to load, a stripped one load), then
with it imported.
"""

import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap

import _inplace_models as user
import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.core import schedules
from keras_prune.integration import inplace
from keras_prune.integration.state import pruning_wrappers

from conftest import BACKEND
from conftest import assert_same_outputs
from conftest import to_np

TESTS = os.path.dirname(os.path.abspath(__file__))
SCHEDULE = kp.PolynomialDecay(0.2, 0.7, 0, 6, power=1, frequency=1)
BATCH = 4
STEPS = 2  # batches per fit


def net_data():
    rng = np.random.RandomState(0)
    x = rng.randn(STEPS * BATCH, 6).astype("float32")
    y = rng.randn(STEPS * BATCH, 3).astype("float32")
    return x, y


def state(model):
    """Step, masks, thresholds and every weight of a pruned model."""
    out = {"step": np.asarray(kp.pruning_step(model))}
    for i, w in enumerate(pruning_wrappers(model)):
        for j, (_, m, t) in enumerate(w.pruning_vars):
            out[f"mask_{i}_{j}"] = to_np(m)
            out[f"threshold_{i}_{j}"] = to_np(t)
    for i, v in enumerate(model.weights):
        out[f"weight_{i}"] = to_np(v)
    return out


def assert_same_state(got, want):
    assert sorted(got) == sorted(want)
    for key in sorted(want):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def fit(model, x, y):
    model.fit(
        x,
        y,
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )


def assert_exact_sparsity(model):
    """Every mask keeps exactly `kept_count(n, s)`, `s` the schedule's
    sparsity at the last step trained."""
    step = int(kp.pruning_step(model))
    _, s = schedules.evaluate(SCHEDULE, step - 1)
    for w in pruning_wrappers(model):
        for m in w.masks:
            m = to_np(m)
            assert int(m.sum()) == kp.kept_count(m.size, float(s)), w.name


# ----------------------------------------------------------- subclassed


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A subclassed model pruned whole, trained 2 steps, saved; then the
    same model trained 2 more steps (what a resumed run must reproduce)."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    tmp = tmp_path_factory.mktemp("net")
    x, y = net_data()
    dense = user.Net()
    dense(x[:1])
    pruned = kp.prune_low_magnitude(dense, SCHEDULE)
    pruned.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    fit(pruned, x, y)
    path = str(tmp / "pruned.keras")
    pruned.save(path)
    saved = state(pruned)
    outputs = to_np(pruned(x, training=False))
    cls = type(pruned)
    paths = sorted(
        inplace.format_path(p) for _, p in inplace.wrapper_paths(pruned)
    )
    stripped = kp.strip_pruning(keras.saving.load_model(path))
    stripped_path = str(tmp / "stripped.keras")
    stripped.save(stripped_path)
    fit(pruned, x, y)  # continues: steps 2 and 3
    return dict(
        model=pruned,
        cls=cls,
        dense=dense,
        paths=paths,
        path=path,
        saved=saved,
        outputs=outputs,
        continued=state(pruned),
        stripped=stripped,
        stripped_path=stripped_path,
        x=x,
        y=y,
    )


def test_pruned_in_place_keeps_class(net):
    assert net["model"] is net["dense"]  # pruned in place
    assert isinstance(net["model"], user.Net)
    assert net["cls"].__name__ == "Net" and net["cls"] is not user.Net
    assert issubclass(net["cls"], inplace.PrunedInPlace)
    assert inplace.base_class(net["cls"]) is user.Net
    assert keras.saving.get_registered_name(net["cls"]) == (
        "keras_prune>PrunedModel"
    )
    # One class per base class, whatever the number of models pruned.
    assert inplace.pruned_class(user.Net) is net["cls"]
    assert keras.saving.get_registered_object("keras_prune>PrunedModel") is (
        inplace.PrunedInPlace
    )
    # Where each wrapper is: attributes, list items, dict keys, and inside a
    # nested model.
    assert net["paths"] == [
        "blocks[0]",
        "blocks[1].proj",
        "first",
        "heads['out']",
    ]


def test_reload_same_process(net):
    loaded = keras.saving.load_model(net["path"])
    assert isinstance(loaded, user.Net) and type(loaded) is net["cls"]
    assert len(pruning_wrappers(loaded)) == 4
    assert_same_state(state(loaded), net["saved"])
    assert int(kp.pruning_step(loaded)) == STEPS
    assert_same_outputs(loaded(net["x"], training=False), net["outputs"])
    # Compiled as saved: the optimizer's state came back too.
    assert loaded.optimizer is not None
    assert int(to_np(loaded.optimizer.iterations)) == STEPS


def test_training_resumes_after_load(net):
    loaded = keras.saving.load_model(net["path"])
    fit(loaded, net["x"], net["y"])
    assert int(kp.pruning_step(loaded)) == 2 * STEPS
    # Bit for bit what the original model did in the same 2 steps (masks,
    # thresholds, weights, momentum).
    assert_same_state(state(loaded), net["continued"])
    assert_exact_sparsity(loaded)


def test_strip_gives_original_class(net):
    stripped = net["stripped"]
    assert type(stripped) is user.Net
    assert not pruning_wrappers(stripped)
    assert_same_outputs(stripped(net["x"], training=False), net["outputs"])
    again = keras.saving.load_model(net["stripped_path"])
    assert type(again) is user.Net


def test_clone_and_pickle(net):
    loaded = keras.saving.load_model(net["path"])
    clone = keras.models.clone_model(loaded)  # from its config: fresh
    assert type(clone) is net["cls"]
    assert (
        sorted(inplace.format_path(p) for _, p in inplace.wrapper_paths(clone))
        == net["paths"]
    )
    assert len(clone.weights) == len(loaded.weights)
    copy = pickle.loads(pickle.dumps(loaded))  # through .keras bytes
    assert type(copy) is net["cls"]
    assert_same_state(state(copy), net["saved"])


def test_changed_class_names_the_path(net):
    config = keras.saving.serialize_keras_object(net["model"])["config"]
    config["wrappers"][1]["path"] = [["attr", "blocks"], ["item", 5]]
    with pytest.raises(ValueError, match=r"nothing at 'blocks\[5\]'"):
        inplace.PrunedInPlace.from_config(config)
    config["wrappers"][1]["path"] = [["attr", "first"]]
    config["wrappers"][1]["layer_class"] = "Conv2D"
    with pytest.raises(ValueError, match="holds a Dense, but a pruned Conv2D"):
        inplace.PrunedInPlace.from_config(config)


def test_lying_wrapper_records_are_refused(net):
    # Two records for one layer: only one setting could hold (the second
    # was ignored). A record without its schedule: it loaded with the
    # default ConstantSparsity(0.5, 0) instead of the one saved.
    saved = keras.saving.serialize_keras_object(net["model"])["config"]
    config = copy.deepcopy(saved)
    config["wrappers"].append(copy.deepcopy(config["wrappers"][0]))
    with pytest.raises(ValueError, match="two saved pruning wrapper records"):
        inplace.PrunedInPlace.from_config(config)
    config = copy.deepcopy(saved)
    config["wrappers"][0]["config"]["pruning_schedule"] = None
    with pytest.raises(ValueError, match="has no 'pruning_schedule'"):
        inplace.PrunedInPlace.from_config(config)
    loaded = inplace.PrunedInPlace.from_config(copy.deepcopy(saved))
    assert len(inplace.wrapper_paths(loaded)) == len(net["paths"])


# ---------------------------------------------------- global allocation


def test_global_group_relinks_after_load(tmp_path):
    keras.utils.set_random_seed(1)
    x, _ = net_data()
    model = user.Net()
    model(x[:1])
    pruned = kp.prune_low_magnitude(
        model, kp.ConstantSparsity(0.5, 0), allocation="global"
    )
    pruning_wrappers(pruned)[0].update_masks_now(0.5)
    path = str(tmp_path / "global.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    wrappers = pruning_wrappers(loaded)
    assert_same_state(state(loaded), state(pruned))
    # One group of the 4 wrappers, linked from the loaded model.
    group = wrappers[-1]._group
    assert {id(w._group) for w in wrappers} == {id(group)}
    assert group.size == 4 and group.members == wrappers
    # The group recomputes what the original's group recomputes.
    for m in (pruned, loaded):
        pruning_wrappers(m)[-1].update_masks_now(0.7)
    assert_same_state(state(loaded), state(pruned))
    kept = sum(int(to_np(m).sum()) for w in wrappers for m in w.masks)
    total = sum(int(np.prod(m.shape)) for w in wrappers for m in w.masks)
    assert kept == kp.kept_count(total, 0.7)


# ------------------------------------------------------------- Keras-Hub

VOCAB = 50
SEQ = 8


def gpt2_data(n):
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, VOCAB, (n, SEQ)).astype("int32"),
        "padding_mask": np.ones((n, SEQ), "int32"),
    }
    return x, rng.integers(1, VOCAB, (n, SEQ)).astype("int32")


def prompt():
    mask = np.zeros((2, SEQ), "int32")
    mask[:, :3] = 1
    ids = np.random.default_rng(1).integers(1, VOCAB, (2, SEQ)) * mask
    return {"token_ids": ids.astype("int32"), "padding_mask": mask}


def _fit_and_save(pruned, x, y, path):
    """Trains a pruned Keras-Hub task 2 steps with `UpdatePruningStep` and
    saves it to `path`; returns the path as a string."""
    pruned.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pruned.fit(
        x,
        y,
        batch_size=2,
        shuffle=False,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    pruned.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    tmp = tmp_path_factory.mktemp("gpt2")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    task = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    pruned = kp.prune_low_magnitude(task)
    x, y = gpt2_data(4)
    path = _fit_and_save(pruned, x, y, tmp / "gpt2_pruned.keras")
    inputs, _ = gpt2_data(2)
    np.savez(str(tmp / "gpt2_inputs.npz"), **inputs)
    saved = state(pruned)
    outputs = to_np(pruned(inputs, training=False))
    pruned.compile(sampler="greedy")
    generated = to_np(
        pruned.generate(prompt(), stop_token_ids=None)["token_ids"]
    )
    return dict(
        cls=type(pruned),
        base=keras_hub.models.GPT2CausalLM,
        path=path,
        inputs=str(tmp / "gpt2_inputs.npz"),
        saved=saved,
        outputs=outputs,
        generated=generated,
    )


def test_gpt2_pruned_keeps_class(gpt2):
    assert gpt2["cls"].__name__ == "GPT2CausalLM"
    assert issubclass(gpt2["cls"], gpt2["base"])
    assert inplace.base_class(gpt2["cls"]) is gpt2["base"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    tmp = tmp_path_factory.mktemp("bert")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    task = keras_hub.models.BertTextClassifier(
        backbone, num_classes=3, preprocessor=None
    )
    pruned = kp.prune_low_magnitude(task)
    x, _ = gpt2_data(4)
    x["segment_ids"] = np.zeros((4, SEQ), "int32")
    y = np.arange(4) % 3
    path = _fit_and_save(pruned, x, y, tmp / "bert_pruned.keras")
    inputs = {k: v[:2] for k, v in x.items()}
    np.savez(str(tmp / "bert_inputs.npz"), **inputs)
    return dict(
        cls=type(pruned),
        base=keras_hub.models.BertTextClassifier,
        path=path,
        inputs=str(tmp / "bert_inputs.npz"),
        saved=state(pruned),
        outputs=to_np(pruned(inputs, training=False)),
    )


# --------------------------------------------------------- fresh process

_FRESH_CODE = textwrap.dedent(
    """
    import json, sys
    P = json.loads(sys.argv[1])
    sys.path.insert(0, P["tests"])
    sys.modules["keras_prune"] = None  # importing it raises ImportError
    import numpy as np
    import keras
    import _inplace_models as user
    out = {}

    def arr(x):
        return np.asarray(keras.ops.convert_to_numpy(x))

    net = P["net"]
    x = np.load(net["x"])
    # Without keras-prune: a stripped model loads, a pruned one does not.
    stripped = keras.saving.load_model(net["stripped"])
    out["stripped_class"] = type(stripped).__qualname__
    out["stripped_module"] = type(stripped).__module__
    try:
        keras.saving.load_model(net["pruned"])
        out["without"] = "loaded"
    except Exception as e:
        out["without"] = f"{type(e).__name__}: {e}"[:3000]

    del sys.modules["keras_prune"]
    import keras_prune as kp
    from keras_prune.integration.state import pruning_wrappers

    def state(model):
        s = {"step": np.asarray(kp.pruning_step(model))}
        for i, w in enumerate(pruning_wrappers(model)):
            for j, (_, m, t) in enumerate(w.pruning_vars):
                s[f"mask_{i}_{j}"] = arr(m)
                s[f"threshold_{i}_{j}"] = arr(t)
        for i, v in enumerate(model.weights):
            s[f"weight_{i}"] = arr(v)
        return s

    model = keras.saving.load_model(net["pruned"])
    out["net_class"] = type(model).__name__
    out["net_isinstance"] = isinstance(model, user.Net)
    np.savez(net["loaded"], outputs=arr(model(x, training=False)),
             **state(model))
    y = np.load(net["y"])
    model.fit(x, y, batch_size=P["batch"], shuffle=False, verbose=0,
              callbacks=[kp.UpdatePruningStep()])
    np.savez(net["resumed"], **state(model))

    hub = P.get("gpt2")
    if hub:
        import keras_hub
        model = keras.saving.load_model(hub["pruned"])
        out["gpt2_class"] = type(model).__name__
        out["gpt2_isinstance"] = isinstance(
            model, keras_hub.models.GPT2CausalLM)
        inputs = dict(np.load(hub["inputs"]))
        outputs = arr(model(inputs, training=False))
        loaded_state = state(model)
        model.compile(sampler="greedy")
        generated = arr(model.generate(dict(np.load(hub["prompt"])),
                                       stop_token_ids=None)["token_ids"])
        stripped = kp.strip_pruning(model)
        out["gpt2_stripped_exact"] = (
            type(stripped) is keras_hub.models.GPT2CausalLM)
        np.savez(hub["loaded"], outputs=outputs, generated=generated,
                 stripped_outputs=arr(stripped(inputs, training=False)),
                 **loaded_state)
    bert = P.get("bert")
    if bert:
        import keras_hub
        model = keras.saving.load_model(bert["pruned"])
        out["bert_class"] = type(model).__name__
        out["bert_isinstance"] = isinstance(
            model, keras_hub.models.BertTextClassifier)
        inputs = dict(np.load(bert["inputs"]))
        outputs = arr(model(inputs, training=False))
        loaded_state = state(model)
        stripped = kp.strip_pruning(model)
        out["bert_stripped_exact"] = (
            type(stripped) is keras_hub.models.BertTextClassifier)
        np.savez(bert["loaded"], outputs=outputs, **loaded_state)
    print("REPORT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def fresh(net, request, tmp_path_factory):
    """Runs the fresh-process loads of every model once."""
    tmp = tmp_path_factory.mktemp("fresh")
    np.save(str(tmp / "x.npy"), net["x"])
    np.save(str(tmp / "y.npy"), net["y"])
    params = dict(
        tests=TESTS,
        batch=BATCH,
        net=dict(
            pruned=net["path"],
            stripped=net["stripped_path"],
            x=str(tmp / "x.npy"),
            y=str(tmp / "y.npy"),
            loaded=str(tmp / "net_loaded.npz"),
            resumed=str(tmp / "net_resumed.npz"),
        ),
    )
    hub = bert = None
    try:
        hub = request.getfixturevalue("gpt2")
        bert = request.getfixturevalue("bert")
    except pytest.skip.Exception:
        pass
    if bert is not None:
        params["bert"] = dict(
            pruned=bert["path"],
            inputs=bert["inputs"],
            loaded=str(tmp / "bert_loaded.npz"),
        )
    if hub is not None:
        np.savez(str(tmp / "prompt.npz"), **prompt())
        params["gpt2"] = dict(
            pruned=hub["path"],
            inputs=hub["inputs"],
            prompt=str(tmp / "prompt.npz"),
            loaded=str(tmp / "gpt2_loaded.npz"),
        )
    env = dict(
        os.environ,
        KERAS_BACKEND=BACKEND,
        TF_CPP_MIN_LOG_LEVEL="3",
        # This process's keras_prune, whatever the working directory.
        PYTHONPATH=os.pathsep.join(
            [TESTS] + [p for p in sys.path if p and os.path.isdir(p)]
        ),
    )
    run = subprocess.run(
        [sys.executable, "-c", _FRESH_CODE, json.dumps(params)],
        env=env,
        cwd=str(tmp),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("REPORT")]
    # The error's last line, shortened: Keras prints whole configs.
    error = [ln[:1500] for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 0 and lines, "\n".join(error[-30:])
    report = json.loads(lines[-1][len("REPORT") :])
    report["params"] = params
    return report


def _load_npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_fresh_process_without_keras_prune(fresh):
    # The stripped model is a plain Net: it needs no keras-prune.
    assert fresh["stripped_class"] == "Net"
    assert fresh["stripped_module"] == user.Net.__module__
    # A pruned model needs keras-prune, as a pruned CNN does: Keras' own
    # error, naming keras-prune's module.
    assert fresh["without"].startswith(
        "TypeError: Could not locate class 'Net'"
    ), fresh["without"]
    assert "'module': 'keras_prune.integration.inplace'" in fresh["without"]


def test_fresh_process_reload_and_resume(net, fresh):
    assert fresh["net_class"] == "Net" and fresh["net_isinstance"]
    loaded = _load_npz(fresh["params"]["net"]["loaded"])
    assert_same_outputs(loaded.pop("outputs"), net["outputs"])
    assert_same_state(loaded, net["saved"])
    resumed = _load_npz(fresh["params"]["net"]["resumed"])
    assert int(resumed["step"]) == 2 * STEPS
    assert_same_state(resumed, net["continued"])


def test_gpt2_fresh_process(gpt2, fresh):
    assert fresh["gpt2_class"] == "GPT2CausalLM"
    assert fresh["gpt2_isinstance"] and fresh["gpt2_stripped_exact"]
    got = _load_npz(fresh["params"]["gpt2"]["loaded"])
    assert_same_outputs(got.pop("outputs"), gpt2["outputs"])
    # Stripping changes nothing the model computes (saved weights are
    # exactly sparse already).
    assert_same_outputs(got.pop("stripped_outputs"), gpt2["outputs"])
    generated = got.pop("generated")
    np.testing.assert_array_equal(generated, gpt2["generated"])
    np.testing.assert_array_equal(
        generated[:, :3], prompt()["token_ids"][:, :3]
    )
    assert_same_state(got, gpt2["saved"])
    assert int(got["step"]) == 2


def test_bert_classifier_fresh_process(bert, fresh):
    assert bert["cls"].__name__ == "BertTextClassifier"
    assert issubclass(bert["cls"], bert["base"])
    assert fresh["bert_class"] == "BertTextClassifier"
    assert fresh["bert_isinstance"] and fresh["bert_stripped_exact"]
    got = _load_npz(fresh["params"]["bert"]["loaded"])
    assert_same_outputs(got.pop("outputs"), bert["outputs"])
    assert_same_state(got, bert["saved"])
    assert int(got["step"]) == 2
