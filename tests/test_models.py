"""Real models as users have them, pruned with the defaults (issue 17).

For each model below, built small from its constructor (nothing is
downloaded), and on the backend of this process:

    prune_low_magnitude(model)  (defaults: ConstantSparsity(0.5, 0))
    -> fit, 2 batches of 2
    -> exact sparsity: every pruned weight keeps exactly kept_count(n, 0.5)
    -> strip_pruning -> same outputs, same sparsity, same class
    -> save -> load in a fresh process where keras_prune cannot be imported
       -> identical outputs (and identical generate() for causal LMs)
    and the PRUNED model, saved after fit (still wrapped), loaded in that
    same fresh process once keras_prune is importable -> same class, masks,
    step, outputs (and generate()) -> 1 more fit step -> exact sparsity
    -> strip_pruning -> its own class, the same outputs

Models: Keras-Hub 0.32 backbones and tasks (BERT, GPT-2, Gemma, Llama, Qwen,
Mistral, Phi-3, ViT: 1 layer, hidden 16, 2 heads, vocabulary 50, sequence 8)
and keras.applications ResNet50, MobileNetV2, EfficientNetB0, DenseNet121 and
ConvNeXtTiny (weights=None, 32x32x3 input, 4 classes).

Each model runs its whole pipeline once, lazily, the first time a test asks
for it (`pipeline(name)`); every stage's result or exception is kept, and
each test checks one stage, so that one bug fails only the tests that depend
on it. Only NumPy results are kept, not the models. The fresh-process loads
of all models run in ONE subprocess (`fresh_results()`), after every model
has been saved: first every stripped file with keras_prune blocked, then
every pruned file with it imported.

No test is expected to fail: the issue 17 bugs these tests found are fixed,
and a regression fails the tests of the stage it breaks.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.strip import pruning_wrappers

from conftest import BACKEND
from conftest import assert_same_outputs
from conftest import to_np

keras_hub = pytest.importorskip("keras_hub")

VOCAB = 50
SEQ = 8
BATCH = 2
STEPS = 2
IMAGE = (32, 32, 3)
VIT_IMAGE = (16, 16, 3)
CLASSES = 4
SPARSITY = 0.5  # the default schedule's target: ConstantSparsity(0.5, 0)

# --------------------------------------------------------------------- models


def _kh():
    return keras_hub.models


def _text_backbone(cls, **kw):
    return lambda: cls(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        **kw,
    )


def _decoder_kwargs():
    return dict(num_query_heads=2, num_key_value_heads=1)


BACKBONES = {
    "bert": lambda: _kh().BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    ),
    "gpt2": lambda: _kh().GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    ),
    "gemma": lambda: _kh().GemmaBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
        **_decoder_kwargs(),
    ),
    "llama": lambda: _kh().LlamaBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        **_decoder_kwargs(),
    ),
    "qwen": lambda: _kh().QwenBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        **_decoder_kwargs(),
    ),
    "mistral": lambda: _kh().MistralBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        sliding_window=SEQ,
        **_decoder_kwargs(),
    ),
    "phi3": lambda: _kh().Phi3Backbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
        pretraining_sequence_length=SEQ,
        **_decoder_kwargs(),
    ),
    "vit": lambda: _kh().ViTBackbone(
        image_shape=VIT_IMAGE,
        patch_size=4,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    ),
}

CAUSAL_LMS = {
    "gpt2": "GPT2CausalLM",
    "gemma": "GemmaCausalLM",
    "llama": "LlamaCausalLM",
    "qwen": "QwenCausalLM",
    "mistral": "MistralCausalLM",
    "phi3": "Phi3CausalLM",
}


def _task(arch, cls_name, **kw):
    def build():
        cls = getattr(_kh(), cls_name)
        return cls(BACKBONES[arch](), preprocessor=None, **kw)

    return build


def _application(fn_name):
    def build():
        fn = getattr(keras.applications, fn_name)
        return fn(weights=None, input_shape=IMAGE, classes=CLASSES)

    return build


# name -> (builder, kind); kind picks the data, loss and generate().
MODELS = {}
for _arch in BACKBONES:
    MODELS[f"{_arch}_backbone"] = (BACKBONES[_arch], "backbone")
for _arch, _cls in CAUSAL_LMS.items():
    MODELS[f"{_arch}_causal_lm"] = (_task(_arch, _cls), "causal_lm")
MODELS["bert_classifier"] = (
    _task("bert", "BertTextClassifier", num_classes=CLASSES),
    "classifier",
)
MODELS["vit_classifier"] = (
    _task("vit", "ViTImageClassifier", num_classes=CLASSES),
    "classifier",
)
for _name, _fn in [
    ("resnet50", "ResNet50"),
    ("mobilenetv2", "MobileNetV2"),
    ("efficientnetb0", "EfficientNetB0"),
    ("densenet121", "DenseNet121"),
    ("convnext_tiny", "ConvNeXtTiny"),
]:
    MODELS[_name] = (_application(_fn), "classifier")

# CI runs the Keras-Hub tasks, two backbones and ResNet50 (about 2.5 min of
# CPU per backend on main, most of it compiling train steps). The other
# backbones repeat what their task checks, and the big keras.applications
# models (DenseNet121: 7M weights, ConvNeXtTiny: 28M) each take longer than
# all the rest on JAX (issue 17 item 11): KERAS_PRUNE_MODELS=all runs them
# all (docs/models.md has the time each takes).
FULL_MATRIX = os.environ.get("KERAS_PRUNE_MODELS", "") == "all"
HEAVY = (
    "gemma_backbone",
    "llama_backbone",
    "qwen_backbone",
    "mistral_backbone",
    "phi3_backbone",
    "vit_backbone",
    "mobilenetv2",
    "efficientnetb0",
    "densenet121",
    "convnext_tiny",
)
ENABLED = [n for n in MODELS if FULL_MATRIX or n not in HEAVY]
# Models whose PRUNED file (saved after `fit`, still wrapped) the fresh
# process also loads with keras-prune importable, checks and trains on.
# CI: the causal LMs but GPT-2, the ViT classifier (about 3.5 s of CPU
# each on JAX, compiling the resumed train step) and ResNet50 (13-16 s of
# CPU on every backend, kept: the CNN users prune most). GPT-2 and the BERT
# classifier are reloaded in a fresh process by test_inplace_reload.py and
# the backbones are inside their tasks: KERAS_PRUNE_RELOAD=all (or
# KERAS_PRUNE_MODELS=all) loads the pruned file of every model that runs.
RELOAD_ALL = FULL_MATRIX or os.environ.get("KERAS_PRUNE_RELOAD", "") == "all"
RELOAD_PRUNED = [
    n
    for n in ENABLED
    if RELOAD_ALL
    or n
    in (
        "gemma_causal_lm",
        "llama_causal_lm",
        "qwen_causal_lm",
        "mistral_causal_lm",
        "phi3_causal_lm",
        "vit_classifier",
        "resnet50",
    )
]
RESUME_STEPS = 1  # fit steps on the reloaded pruned model

HUB = [
    n
    for n in MODELS
    if n
    not in (
        "resnet50",
        "mobilenetv2",
        "efficientnetb0",
        "densenet121",
        "convnext_tiny",
    )
]
APPLICATIONS = [n for n in MODELS if n not in HUB]
LMS = [n for n in MODELS if MODELS[n][1] == "causal_lm"]


def cases(names):
    """`pytest.param`s for `names`, skipped where not in the CI set.

    Args:
        names: Model names.

    Returns:
        One `pytest.param` per name, with the name as its id.
    """
    out = []
    for name in names:
        marks = []
        if name not in ENABLED:
            marks = [
                pytest.mark.skip(
                    reason="not in the CI set: KERAS_PRUNE_MODELS=all runs it"
                )
            ]
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# ----------------------------------------------------------------------- data


def _tokens(rng, n):
    return {
        "token_ids": rng.integers(1, VOCAB, (n, SEQ)).astype("int32"),
        "padding_mask": np.ones((n, SEQ), "int32"),
    }


def model_data(name, n):
    """`(x, y)` for `n` samples of the model `name` (fixed seed)."""
    rng = np.random.default_rng(0)
    kind = MODELS[name][1]
    if name.startswith("vit"):
        x = rng.standard_normal((n,) + VIT_IMAGE).astype("float32")
    elif name in APPLICATIONS:
        x = rng.standard_normal((n,) + IMAGE).astype("float32")
    else:
        x = _tokens(rng, n)
        if name.startswith("bert"):
            x["segment_ids"] = np.zeros((n, SEQ), "int32")
    if kind == "causal_lm":
        y = rng.integers(1, VOCAB, (n, SEQ)).astype("int32")
    elif kind == "classifier":
        y = rng.integers(0, CLASSES, (n,)).astype("int32")
    else:
        y = None  # backbones: zeros shaped like their outputs (see `fit`)
    return x, y


def compile_for_training(model, kind):
    if kind == "backbone":
        loss = "mse"
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)


def training_data(model, name, n):
    """`(x, y)` to fit `model` on; a backbone's `y`: zeros like its outputs."""
    x, y = model_data(name, n)
    if y is None:
        y = keras.tree.map_structure(
            lambda t: np.zeros(t.shape, "float32"),
            model.compute_output_spec(
                keras.tree.map_structure(
                    lambda a: keras.KerasTensor(a.shape, a.dtype), x
                )
            ),
        )
    return x, y


def train(model, name):
    """Two batches of `BATCH`, no shuffling."""
    kind = MODELS[name][1]
    x, y = training_data(model, name, BATCH * STEPS)
    compile_for_training(model, kind)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)


def outputs(model, name):
    """Inference outputs on 2 fixed samples, flattened to a list.

    An eager call (no compiled predict function to build: on JAX that
    alone takes seconds per large model); the fresh process does the same.
    """
    x, _ = model_data(name, 2)
    return [to_np(t) for t in keras.tree.flatten(model(x, training=False))]


def prompt():
    """Two prompts of 3 tokens, padded to SEQ: generate() fills the rest."""
    rng = np.random.default_rng(1)
    mask = np.zeros((2, SEQ), "int32")
    mask[:, :3] = 1
    ids = rng.integers(1, VOCAB, (2, SEQ)).astype("int32") * mask
    return {"token_ids": ids, "padding_mask": mask}


def generate(model):
    """Greedy generate() on `prompt()`: the token ids."""
    model.compile(sampler="greedy")
    out = model.generate(prompt(), stop_token_ids=None)
    return to_np(out["token_ids"])


# ------------------------------------------------------------------- checks


def kept(rows):
    """(layer, weight) -> non-zeros, for the pruned rows of a report."""
    return {
        (r["layer"], r["weight"]): r["params"] - r["zeros"]
        for r in rows
        if r["pruned"]
    }


def weight_nonzeros(model, keys):
    """(layer, weight) -> non-zeros of those weights in `model`."""
    found = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for v in own_weights(layer):
            if (layer.name, v.name) in keys:
                found[(layer.name, v.name)] = int(np.count_nonzero(to_np(v)))
    return found


PRUNABLE_TYPES = (
    "Dense",
    "EinsumDense",
    "Conv1D",
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
)


def kernels_users_prune(model):
    """(layer, kernel name) of every Dense, EinsumDense and convolution.

    Kernels only: an `EinsumDense` bias can be of rank 2 (`(heads,
    head_dim)` in attention) and is not pruned.
    """
    keys = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__ in PRUNABLE_TYPES:
            for v in own_weights(layer):
                if v.name.endswith("kernel"):
                    keys.add((layer.name, v.name))
    return keys


def mask_arrays(model):
    """`({"mask_i_j": mask}, [wrapper names])` of a pruned model's masks."""
    masks, names = {}, []
    for i, wrapper in enumerate(pruning_wrappers(model)):
        names.append(wrapper.name)
        for j, m in enumerate(wrapper.masks):
            masks[f"mask_{i}_{j}"] = to_np(m)
    return masks, names


def class_names(model):
    """`module.qualname` of every class in `type(model).__mro__`."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]


def as_dict(x, key):
    """`x` as a dict of arrays for `np.savez` (`{key: x}` if not a dict)."""
    return dict(x) if isinstance(x, dict) else {key: x}


def file_size(model, path):
    model.save(path)
    return os.path.getsize(path)


# ------------------------------------------------------------------ pipeline

_RESULTS = {}
_TIMES = {}
WORKDIR = None


def _workdir():
    global WORKDIR
    if WORKDIR is None:
        import tempfile

        WORKDIR = tempfile.mkdtemp(prefix="keras_prune_models_")
    return WORKDIR


class Stages(dict):
    """Stage name -> result; a failed stage holds its exception."""

    def get_ok(self, stage):
        if stage not in self:
            pytest.fail(
                f"stage {stage!r} did not run (an earlier stage "
                f"failed: {self.first_error()!r})"
            )
        value = self[stage]
        if isinstance(value, BaseException):
            raise value
        return value

    def first_error(self):
        for value in self.values():
            if isinstance(value, BaseException):
                return value
        return None


def _run(stages, stage, fn):
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        stages[stage] = fn()
        return True
    except Exception as e:  # noqa: BLE001 - kept for the test of the stage
        stages[stage] = e
        return False
    finally:
        stages.setdefault("_seconds", {})[stage] = (
            round(time.perf_counter() - t0, 2),
            round(time.process_time() - c0, 2),
        )


def pipeline(name):
    """Runs (once) every stage for `name`; returns its `Stages`."""
    if name in _RESULTS:
        return _RESULTS[name]
    stages = _RESULTS[name] = Stages()
    t_start = time.perf_counter(), time.process_time()
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    builder, kind = MODELS[name]
    base = os.path.join(_workdir(), name)
    model = {}

    def build():
        model["dense"] = builder()
        return type(model["dense"])

    def dense_size():
        return file_size(model["dense"], base + "_dense.keras")

    def prune():
        model["pruned"] = kp.prune_low_magnitude(model["dense"])
        return type(model["pruned"])

    def fit():
        train(model["pruned"], name)
        return int(to_np(kp.pruning_step(model["pruned"])))

    def pruned_state():
        rows = kp.sparsity_report(model["pruned"], pattern=False)
        return dict(
            rows=rows,
            outputs=outputs(model["pruned"], name),
            wanted=kernels_users_prune(model["pruned"]),
        )

    def save_pruned():
        # Mid-training, still wrapped (before generate_pruned: its
        # compile(sampler=...) would replace the optimizer that is saved).
        pruned = model["pruned"]
        path = base + "_pruned.keras"
        pruned.save(path)
        masks, names = mask_arrays(pruned)
        np.savez(base + "_pruned_masks.npz", **masks)
        x, y = training_data(pruned, name, BATCH * RESUME_STEPS)
        np.savez(base + "_resume_x.npz", **as_dict(x, "x"))
        np.savez(base + "_resume_y.npz", **as_dict(y, "y"))
        return dict(
            path=path,
            masks=base + "_pruned_masks.npz",
            names=names,
            step=int(to_np(kp.pruning_step(pruned))),
            classes=class_names(pruned),
            resume_x=base + "_resume_x.npz",
            resume_y=base + "_resume_y.npz",
        )

    def strip():
        model["stripped"] = kp.strip_pruning(model["pruned"])
        return type(model["stripped"])

    def stripped_state():
        s = model["stripped"]
        keys = set(kept(stages["pruned_state"]["rows"]))
        return dict(
            outputs=outputs(s, name),
            nonzeros=weight_nonzeros(s, keys),
            wrappers=len(pruning_wrappers(s)),
        )

    def save():
        path = base + "_stripped.keras"
        size = file_size(model["stripped"], path)
        x, _ = model_data(name, 2)
        inputs = x if isinstance(x, dict) else {"x": x}
        np.savez(base + "_inputs.npz", **inputs)
        return dict(path=path, size=size, inputs=base + "_inputs.npz")

    ok = _run(stages, "build", build)
    if ok:
        _run(stages, "dense_size", dense_size)
    ok = ok and _run(stages, "prune", prune)
    ok = ok and _run(stages, "fit", fit)
    ok = ok and _run(stages, "pruned_state", pruned_state)
    if ok and name in RELOAD_PRUNED:
        _run(stages, "save_pruned", save_pruned)
    if ok and kind == "causal_lm":
        _run(stages, "generate_pruned", lambda: generate(model["pruned"]))
    ok = ok and _run(stages, "strip", strip)
    ok = ok and _run(stages, "stripped_state", stripped_state)
    if ok and kind == "causal_lm":
        _run(stages, "generate_stripped", lambda: generate(model["stripped"]))
    ok = ok and _run(stages, "save", save)
    model.clear()
    keras.utils.clear_session()
    _TIMES[name] = (
        round(time.perf_counter() - t_start[0], 2),
        round(time.process_time() - t_start[1], 2),
    )
    _dump_times()
    return stages


def _dump_times():
    """With MODELS_TIMES=path: writes the seconds of each model there."""
    path = os.environ.get("MODELS_TIMES")
    if path:
        stages = {n: s.get("_seconds", {}) for n, s in _RESULTS.items()}
        with open(path, "w") as f:
            json.dump(
                dict(backend=BACKEND, total=_TIMES, stages=stages), f, indent=1
            )


# ------------------------------------------------------- the pipeline tests


@pytest.mark.parametrize("name", cases(MODELS))
def test_prunes_with_defaults(name):
    stages = pipeline(name)
    assert stages.get_ok("build") is not None
    stages.get_ok("prune")
    assert stages.get_ok("fit") == STEPS


@pytest.mark.parametrize("name", cases(HUB))
def test_pruned_keeps_class(name):
    stages = pipeline(name)
    # A pruned Keras-Hub model is an instance of its class, of the same name
    # (a subclass that saves its wrappers: integration/inplace.py).
    pruned, dense = stages.get_ok("prune"), stages.get_ok("build")
    assert issubclass(pruned, dense) and pruned.__name__ == dense.__name__


@pytest.mark.parametrize("name", cases(MODELS))
def test_exact_sparsity_after_fit(name):
    stages = pipeline(name)
    state = stages.get_ok("pruned_state")
    got = kept(state["rows"])
    assert got, "nothing was pruned"
    # Every Dense / EinsumDense / convolution kernel (attention Q/K/V/O,
    # feed-forward, convolutions, classifier heads) is pruned.
    assert state["wanted"] <= set(got), sorted(state["wanted"] - set(got))
    want = {
        k: kp.kept_count(r["params"], SPARSITY)
        for r in state["rows"]
        if r["pruned"]
        for k in [(r["layer"], r["weight"])]
    }
    assert got == want


@pytest.mark.parametrize("name", cases(MODELS))
def test_strip_same_outputs_and_sparsity(name):
    stages = pipeline(name)
    pruned = stages.get_ok("pruned_state")
    stripped = stages.get_ok("stripped_state")
    assert stripped["wrappers"] == 0
    assert stripped["nonzeros"] == kept(pruned["rows"])
    assert len(stripped["outputs"]) == len(pruned["outputs"])
    for got, want in zip(stripped["outputs"], pruned["outputs"]):
        assert_same_outputs(got, want)


@pytest.mark.parametrize("name", cases(HUB))
def test_stripped_keeps_class(name):
    stages = pipeline(name)
    assert stages.get_ok("strip") is stages.get_ok("build")


@pytest.mark.parametrize("name", cases(LMS))
def test_generate_pruned_and_stripped(name):
    stages = pipeline(name)
    got = stages.get_ok("generate_pruned")
    again = stages.get_ok("generate_stripped")
    p = prompt()
    assert got.shape == (2, SEQ)
    # The prompt is kept, every other position is generated.
    np.testing.assert_array_equal(got[:, :3], p["token_ids"][:, :3])
    assert ((got[:, 3:] >= 0) & (got[:, 3:] < VOCAB)).all()
    np.testing.assert_array_equal(again, got)


@pytest.mark.parametrize("name", cases(MODELS))
def test_stripped_file_not_bigger_than_dense(name):
    # A stripped model is for export: no optimizer state. Its zeros compress,
    # so it must not be bigger than the dense model's file (5% for config).
    stages = pipeline(name)
    dense = stages.get_ok("dense_size")
    stripped = stages.get_ok("save")["size"]
    assert stripped <= 1.05 * dense, (stripped, dense)


# ----------------------------------------------------------- fresh process

_FRESH_CODE = textwrap.dedent(
    """
    import json, sys, time
    T0 = time.perf_counter()
    sys.modules["keras_prune"] = None  # importing it raises ImportError
    import numpy as np
    import keras
    import keras_hub  # registers Keras-Hub classes, as users import it

    jobs = json.loads(sys.argv[1])
    report = {}
    for job in jobs:
        name = job["name"]
        try:
            model = keras.saving.load_model(job["path"])
            x = dict(np.load(job["inputs"]))
            x = x["x"] if list(x) == ["x"] else x
            out = keras.tree.flatten(model(x, training=False))
            np.savez(job["out"], *[keras.ops.convert_to_numpy(t)
                                   for t in out])
            result = dict(cls=type(model).__name__)
            if job["generate"]:
                p = dict(np.load(job["prompt"]))
                model.compile(sampler="greedy")
                ids = model.generate(p, stop_token_ids=None)["token_ids"]
                np.save(job["generated"], keras.ops.convert_to_numpy(ids))
            report[name] = result
        except Exception as e:
            report[name] = dict(error=f"{type(e).__name__}: {e}"[:2000])
        keras.utils.clear_session()
    report["_keras_prune_imported"] = any(
        m.startswith("keras_prune") and sys.modules[m] is not None
        for m in sys.modules)

    # The PRUNED files, with keras-prune importable (as a user resuming
    # training has it): state, outputs, generate(), fit, strip.
    seconds = {"stripped": (round(time.perf_counter() - T0, 2),
                            round(time.process_time(), 2))}
    del sys.modules["keras_prune"]
    import keras_prune as kp
    from keras_prune.integration.strip import pruning_wrappers

    def arrays(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    def one(d, key):
        return d[key] if list(d) == [key] else d

    def classes(m):
        return [f"{c.__module__}.{c.__qualname__}" for c in type(m).__mro__]

    def outputs(m, x):
        return [keras.ops.convert_to_numpy(t)
                for t in keras.tree.flatten(m(x, training=False))]

    for job in jobs:
        if not job.get("pruned"):
            continue
        name = job["name"]
        res = report[name + ":pruned"] = {}
        t0 = time.perf_counter(), time.process_time()
        laps = res["seconds"] = {}  # stage -> CPU seconds

        def lap(stage, t=[time.process_time()]):
            laps[stage] = round(time.process_time() - t[0], 2)
            t[0] = time.process_time()
        stage = "load"
        try:
            model = keras.saving.load_model(job["pruned"])
            res["classes"] = classes(model)
            lap("load")
            stage = "state"
            masks, names = {}, []
            for i, w in enumerate(pruning_wrappers(model)):
                names.append(w.name)
                for j, m in enumerate(w.masks):
                    masks[f"mask_{i}_{j}"] = keras.ops.convert_to_numpy(m)
            np.savez(job["pruned_masks"], **masks)
            res["names"] = names
            res["step"] = int(keras.ops.convert_to_numpy(
                kp.pruning_step(model)))
            x = one(dict(np.load(job["inputs"])), "x")
            np.savez(job["pruned_out"], *outputs(model, x))
            lap("state")
            if job["generate"]:
                stage = "generate"
                # The restored optimizer and loss stay for the fit below.
                model.compile(optimizer=model.optimizer, loss=model.loss,
                              sampler="greedy")
                p = dict(np.load(job["prompt"]))
                ids = model.generate(p, stop_token_ids=None)["token_ids"]
                np.save(job["pruned_generated"],
                        keras.ops.convert_to_numpy(ids))
                lap("generate")
            stage = "fit"
            model.fit(one(arrays(job["resume_x"]), "x"),
                      one(arrays(job["resume_y"]), "y"),
                      batch_size=job["batch"], shuffle=False, verbose=0,
                      callbacks=[kp.UpdatePruningStep()])
            res["resumed_step"] = int(keras.ops.convert_to_numpy(
                kp.pruning_step(model)))
            res["resumed_rows"] = [
                [r["layer"], r["weight"], r["params"], r["zeros"]]
                for r in kp.sparsity_report(model, pattern=False)
                if r["pruned"]]
            np.savez(job["resumed_out"], *outputs(model, x))
            lap("fit")
            stage = "strip"
            stripped = kp.strip_pruning(model)
            res["stripped_classes"] = classes(stripped)
            res["stripped_wrappers"] = len(pruning_wrappers(stripped))
            np.savez(job["stripped_out"], *outputs(stripped, x))
            lap("strip")
            stage = "done"
        except Exception as e:
            res["error"] = f"{type(e).__name__}: {e}"[:2000]
        res["stage"] = stage
        keras.utils.clear_session()
        # wall, CPU (all threads)
        seconds[name + ":pruned"] = (round(time.perf_counter() - t0[0], 2),
                                     round(time.process_time() - t0[1], 2),
                                     laps)
    seconds["total"] = round(time.perf_counter() - T0, 2)
    seconds["total_cpu"] = round(time.process_time(), 2)
    report["_seconds"] = seconds
    print("REPORT" + json.dumps(report))
    """
)

_FRESH = {}
_FRESH_JOBS = {}


def fresh_results(name):
    """Loads saved models in a new process without keras_prune.

    One process loads every model whose pipeline has run and that was not
    loaded yet: with the tests in file order, one process for all of them.
    """
    pipeline(name)
    if name in _FRESH:
        return _FRESH
    jobs = []
    p = os.path.join(_workdir(), "prompt.npz")
    np.savez(p, **prompt())
    for other, stages in _RESULTS.items():
        if other in _FRESH or not isinstance(stages.get("save"), dict):
            continue
        base = os.path.join(_workdir(), other)
        job = dict(
            name=other,
            path=stages["save"]["path"],
            inputs=stages["save"]["inputs"],
            out=base + "_fresh.npz",
            generate=MODELS[other][1] == "causal_lm",
            prompt=p,
            generated=base + "_fresh_generated.npy",
        )
        if isinstance(stages.get("save_pruned"), dict):
            saved = stages["save_pruned"]
            job.update(
                pruned=saved["path"],
                pruned_masks=base + "_fresh_pruned_masks.npz",
                pruned_out=base + "_fresh_pruned.npz",
                pruned_generated=base + "_fresh_pruned_generated.npy",
                resume_x=saved["resume_x"],
                resume_y=saved["resume_y"],
                batch=BATCH,
                resumed_out=base + "_fresh_resumed.npz",
                stripped_out=base + "_fresh_resumed_stripped.npz",
            )
        jobs.append(job)
    env = dict(
        os.environ,
        KERAS_BACKEND=BACKEND,
        # This process's keras_prune (the second half of the subprocess
        # imports it), whatever the working directory.
        PYTHONPATH=os.pathsep.join(
            os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)
        ),
    )
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", _FRESH_CODE, json.dumps(jobs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=_workdir(),
        timeout=900,
        check=False,
    )
    _TIMES.setdefault("_fresh_processes", []).append(
        (len(jobs), round(time.perf_counter() - t0, 2))
    )
    _dump_times()
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("REPORT")]
    assert run.returncode == 0 and lines, run.stderr[-4000:]
    report = json.loads(lines[-1][len("REPORT") :])
    assert report.pop("_keras_prune_imported") is False
    _TIMES.setdefault("_fresh_seconds", []).append(report.pop("_seconds"))
    _dump_times()
    _FRESH.update(report)
    _FRESH_JOBS.update({j["name"]: j for j in jobs})
    return _FRESH


@pytest.mark.parametrize("name", cases(MODELS))
def test_reload_in_fresh_process(name):
    stages = pipeline(name)
    stages.get_ok("save")
    result = fresh_results(name).get(name)
    assert result is not None, "not saved"
    assert "error" not in result, result["error"]
    assert result["cls"] == stages.get_ok("build").__name__
    job = _FRESH_JOBS[name]
    with np.load(job["out"]) as f:
        got = [f[k] for k in sorted(f.files, key=lambda s: int(s[4:]))]
    want = stages.get_ok("stripped_state")["outputs"]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same_outputs(g, w)
    if job["generate"]:
        np.testing.assert_array_equal(
            np.load(job["generated"]), stages.get_ok("generate_stripped")
        )


def fresh_pruned(name, until):
    """The fresh process's results on the pruned file of `name`.

    Fails the test if the fresh process stopped before the stage `until`
    (one of "state", "generate", "fit", "strip", "done": the stage that
    must have been passed).
    """
    stages = pipeline(name)
    stages.get_ok("save_pruned")
    result = fresh_results(name).get(name + ":pruned")
    assert result is not None, "the pruned file was not loaded"
    order = ["load", "state", "generate", "fit", "strip", "done"]
    if order.index(result["stage"]) < order.index(until):
        pytest.fail(
            f"the fresh process failed at stage {result['stage']!r}: "
            f"{result.get('error')}"
        )
    return result, _FRESH_JOBS[name]


def _saved_arrays(path):
    with np.load(path) as f:
        if f.files and f.files[0].startswith("arr_"):
            return [f[k] for k in sorted(f.files, key=lambda s: int(s[4:]))]
        return {k: f[k] for k in f.files}


def assert_all_same_outputs(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same_outputs(g, w)


def reload_cases():
    """`cases(MODELS)`, skipped where the pruned file is not reloaded."""
    out = []
    for param in cases(MODELS):
        name = param.values[0]
        if name in ENABLED and name not in RELOAD_PRUNED:
            param = pytest.param(
                name,
                marks=[
                    pytest.mark.skip(
                        reason="pruned file not reloaded in CI: "
                        "KERAS_PRUNE_RELOAD=all reloads it"
                    )
                ],
                id=name,
            )
        out.append(param)
    return out


@pytest.mark.parametrize("name", reload_cases())
def test_pruned_file_reloads_in_fresh_process(name):
    # Saved after fit, still wrapped; loaded where keras-prune is importable:
    # the same class, masks, step and (bit for bit on CPU) outputs.
    result, job = fresh_pruned(name, "fit")
    stages = pipeline(name)
    saved = stages.get_ok("save_pruned")
    assert result["classes"] == saved["classes"]
    assert result["names"] == saved["names"]
    assert result["step"] == saved["step"] == STEPS
    got = _saved_arrays(job["pruned_masks"])
    want = _saved_arrays(saved["masks"])
    assert sorted(got) == sorted(want) and want
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert_all_same_outputs(
        _saved_arrays(job["pruned_out"]),
        stages.get_ok("pruned_state")["outputs"],
    )
    if job["generate"]:
        np.testing.assert_array_equal(
            np.load(job["pruned_generated"]),
            stages.get_ok("generate_pruned"),
        )


@pytest.mark.parametrize("name", reload_cases())
def test_pruned_file_resumes_training_in_fresh_process(name):
    # fit with UpdatePruningStep on the reloaded model: the step goes on
    # and every pruned weight keeps exactly kept_count(n, 0.5) non-zeros.
    result, _ = fresh_pruned(name, "strip")
    want_keys = set(kept(pipeline(name).get_ok("pruned_state")["rows"]))
    assert result["resumed_step"] == STEPS + RESUME_STEPS
    rows = result["resumed_rows"]
    assert {(r[0], r[1]) for r in rows} == want_keys
    for layer, weight, params, zeros in rows:
        assert params - zeros == kp.kept_count(params, SPARSITY), (
            layer,
            weight,
        )


@pytest.mark.parametrize("name", reload_cases())
def test_pruned_file_strips_in_fresh_process(name):
    # strip_pruning of the reloaded, further trained model: its own class
    # back, no wrapper, and the outputs of the pruned model it came from.
    result, job = fresh_pruned(name, "done")
    stages = pipeline(name)
    assert result["stripped_classes"][0] == (
        "{0.__module__}.{0.__qualname__}".format(stages.get_ok("build"))
    )
    assert result["stripped_wrappers"] == 0
    assert_all_same_outputs(
        _saved_arrays(job["stripped_out"]), _saved_arrays(job["resumed_out"])
    )


# ------------------------------------------------------------------ variants
# allocation="global", 2:4 and prune_once on ResNet50 and one transformer.

VARIANT_MODELS = ["resnet50", "gpt2_causal_lm"]
_DENSE = {}


def dense_model(name):
    """The built dense model `name`, shared by the variant tests."""
    if name not in _DENSE:
        _DENSE.clear()
        keras.utils.set_random_seed(0)
        _DENSE[name] = MODELS[name][0]()
    return _DENSE[name]


def own_weights(layer):
    return layer._trainable_variables + layer._non_trainable_variables


def effective_weights(pruned):
    """[(layer, weight name, weight * mask)] of every pruned weight.

    `layer` is the innermost layer holding the weight (a wrapper may wrap a
    whole transformer block).
    """
    owner = {}
    for layer in pruned._flatten_layers(include_self=False, recursive=True):
        for v in own_weights(layer):
            owner[id(v)] = layer
    out = []
    for wrapper in pruning_wrappers(pruned):
        for w, m in zip(wrapper.pruned_weights, wrapper.masks):
            out.append((owner[id(w)], w.name, np.where(to_np(m), to_np(w), 0)))
    return out


@pytest.mark.parametrize("name", cases(VARIANT_MODELS))
def test_prune_once_layer(name):
    model = dense_model(name)
    pruned = kp.prune_once(model, 0.7)
    assert isinstance(pruned, type(model))
    assert type(pruned).__name__ == type(model).__name__
    weights = effective_weights(pruned)
    assert weights
    for layer, wname, value in weights:
        assert np.count_nonzero(value) == kp.kept_count(value.size, 0.7), (
            layer.name,
            wname,
        )


@pytest.mark.parametrize("name", cases(VARIANT_MODELS))
def test_prune_once_global_exact_total(name):
    model = dense_model(name)
    pruned = kp.prune_once(model, 0.8, allocation="global")
    weights = effective_weights(pruned)
    total = sum(v.size for _, _, v in weights)
    nonzeros = sum(np.count_nonzero(v) for _, _, v in weights)
    assert nonzeros == kp.kept_count(total, 0.8)


@pytest.mark.parametrize("name", cases(VARIANT_MODELS))
def test_global_never_prunes_a_whole_tensor(name):
    # At 0.8 on freshly initialised weights one threshold across layers
    # empties whole kernels of ResNet50 unless a default guard stops it.
    model = dense_model(name)
    pruned = kp.prune_once(model, 0.8, allocation="global")
    empty = [
        (layer.name, wname)
        for layer, wname, v in effective_weights(pruned)
        if not np.count_nonzero(v)
    ]
    assert not empty


def contracted_axes(layer, weight_name, shape):
    """Axes of a kernel summed over in the layer's product (its inputs).

    Read from the equation for `EinsumDense`; axis 0 for `Dense`; every axis
    but the last two's output one for convolutions; None for others
    (embeddings).
    """
    kind = type(layer).__name__
    if weight_name != "kernel":
        return None
    if kind == "EinsumDense":
        lhs, out = layer.equation.replace("...", "").split("->")
        inp, ker = lhs.split(",")
        return [i for i, c in enumerate(ker) if c in inp and c not in out]
    if kind == "Dense":
        return [0]
    if kind.startswith("Conv"):
        return [len(shape) - 2]  # C_IN
    return None


def assert_m_by_n_along(value, axes, m=2, n=4):
    """Every n consecutive weights along the flattened `axes` keep m."""
    others = [i for i in range(value.ndim) if i not in axes]
    flat = np.transpose(value, list(axes) + others)
    k = int(np.prod([value.shape[i] for i in axes]))
    assert k % n == 0, (value.shape, axes)
    groups = flat.reshape(k // n, n, -1)
    counts = np.count_nonzero(groups, axis=1)
    assert (counts == n - m).all(), np.unique(counts, return_counts=True)


@pytest.mark.parametrize("name", cases(VARIANT_MODELS))
def test_prune_once_2_by_4(name):
    model = dense_model(name)
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    checked = 0
    for layer, wname, value in effective_weights(pruned):
        axes = contracted_axes(layer, wname, value.shape)
        if axes is not None and value.shape[axes[0]] % 4 == 0:
            assert_m_by_n_along(value, axes)
            checked += 1
    assert checked


# --------------------------------------------------- N:M on attention kernels


def test_m_by_n_multi_head_attention():
    x = keras.Input((16, 64))
    m = keras.Model(x, keras.layers.MultiHeadAttention(2, 32)(x, x))
    pruned = kp.prune_once(m, 0.5, sparsity_m_by_n=(2, 4))
    kernels = [
        (layer, w, v)
        for layer, w, v in effective_weights(pruned)
        if w == "kernel"
    ]
    assert len(kernels) == 4  # query, key, value, attention_output
    failures = []
    for layer, wname, value in kernels:
        try:
            assert_m_by_n_along(
                value, contracted_axes(layer, wname, value.shape)
            )
        except AssertionError as e:
            failures.append((layer.name, value.shape, str(e)[:200]))
    assert not failures


M_BY_N_HUB = [n for n in HUB if not n.endswith("_backbone")]


@pytest.mark.parametrize("name", cases(M_BY_N_HUB))
def test_m_by_n_attention_kernels(name):
    # Every attention and feed-forward kernel takes 2:4 along its contracted
    # (input) axes, as sparse hardware expects.
    keras.utils.set_random_seed(0)
    model = MODELS[name][0]()
    pruned = kp.prune_once(model, 0.5, sparsity_m_by_n=(2, 4))
    kernels = [
        (layer, w, v)
        for layer, w, v in effective_weights(pruned)
        if type(layer).__name__ in ("EinsumDense", "Dense")
    ]
    assert kernels
    failures = []
    for layer, wname, value in kernels:
        try:
            assert_m_by_n_along(
                value, contracted_axes(layer, wname, value.shape)
            )
        except AssertionError as e:
            failures.append((layer.name, value.shape, str(e)[:200]))
    assert not failures
