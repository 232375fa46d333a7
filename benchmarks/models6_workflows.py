"""Real workflows around pruned real models (models6), on the backend of
the process: transfer learning on a `keras.applications` model, a
Keras-Hub task with its preprocessor and every sampler, a pruned backbone
shared by two tasks, int8 / float8 after strip, and the TensorFlow
SavedModel export.

For each workflow it records the exact kept count of every pruned tensor
(checked against `keras_prune.kept_count`), the max abs difference of the
outputs of the pruned, stripped and reloaded (fresh process, without
keras-prune) models, and anything wrong. Results go to
`benchmarks/results/models6_<backend>.json`; docs/models.md ("models6")
has the table.

    KERAS_BACKEND=jax python -m benchmarks.models6_workflows
"""

import argparse
import json
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile

import keras
import numpy as np

import keras_prune

BACKEND = keras.backend.backend()
OUT = pathlib.Path(__file__).parent / "results" / f"models6_{BACKEND}.json"
SCHEDULE = keras_prune.ConstantSparsity(0.5, 0)
_PRUNING_STATE = ("_mask", "_threshold", "pruning_step", "nonfinite_count")


def _np(x):
    if isinstance(x, dict):
        return {k: _np(v) for k, v in x.items()}
    return np.asarray(keras.ops.convert_to_numpy(x))


def _exact(model, sparsity=0.5):
    """(tensors pruned, tensors at exactly kept_count, wrong ones)."""
    from keras_prune.integration import state

    total, wrong = 0, []
    for wrapper in state.pruning_wrappers(model):
        for weight, mask, _ in wrapper.pruning_vars:
            total += 1
            n = int(np.prod(weight.shape))
            kept = int(_np(mask).sum())
            nonzero = int((_np(weight) != 0).sum())
            want = keras_prune.kept_count(n, sparsity)
            if kept != want or nonzero > want:
                wrong.append((weight.path, kept, nonzero, want))
    return total, wrong


def _fresh_reload(path, x, expected):
    """Max abs diff of a stripped file's outputs, loaded in a fresh process
    without keras-prune."""
    xs = path + ".x.pkl"
    with open(xs, "wb") as f:
        pickle.dump((x, expected), f)
    code = (
        "import sys, pickle; sys.modules['keras_prune'] = None\n"
        "import numpy as np, keras\n"
        "try:\n    import keras_hub\nexcept ImportError:\n    pass\n"
        f"m = keras.saving.load_model({path!r})\n"
        f"x, e = pickle.load(open({xs!r}, 'rb'))\n"
        "o = m.predict(x, verbose=0)\n"
        "print(float(np.max(np.abs(np.asarray(o) - e))))\n"
    )
    r = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        return "ERROR " + r.stderr[-300:]
    return float(r.stdout.strip().splitlines()[-1])


def transfer_learning(mode, tmp):
    """Keras' guide: frozen base (`training=False`), new head; prune the
    whole model, only the head, or only the base; fit, unfreeze, fit."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3),
        alpha=0.35,
        include_top=False,
        weights=None,
        pooling="avg",
    )
    base.trainable = False
    inputs = keras.Input((32, 32, 3))
    h = base(inputs, training=False)
    h = keras.layers.Dropout(0.2)(h)
    outputs = keras.layers.Dense(4, name="head")(h)
    model = keras.Model(inputs, outputs)
    rng = np.random.RandomState(0)
    x = rng.rand(8, 32, 32, 3).astype("float32")
    y = rng.randint(0, 4, 8)
    if mode == "whole":
        pruned = keras_prune.prune_low_magnitude(
            model, pruning_schedule=SCHEDULE
        )
    else:
        name = "head" if mode == "head" else base.name

        def clone(layer):
            if layer.name == name:
                return keras_prune.prune_low_magnitude(
                    layer, pruning_schedule=SCHEDULE
                )
            return layer

        pruned = keras.models.clone_model(model, clone_function=clone)
    frozen_before = {
        v.path: _np(v)
        for v in pruned.get_layer(base.name).weights
        if not v.path.endswith(_PRUNING_STATE)
    }
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruned.compile("adam", loss)
    cb = [keras_prune.UpdatePruningStep()]
    pruned.fit(x, y, batch_size=4, verbose=0, callbacks=cb)
    # Frozen weights: unchanged, except pruned ones set to exactly zero.
    moved = 0
    for v in pruned.get_layer(base.name).weights:
        if v.path in frozen_before:
            a, b = _np(v), frozen_before[v.path]
            moved += int(np.sum((a != b) & (a != 0)))
    pruned.get_layer(base.name).trainable = True
    trainable = {id(v) for v in pruned.trainable_variables}
    base_kernels = [
        v
        for v in pruned.get_layer(base.name).weights
        if v.path.endswith("kernel")
    ]
    frozen_after_unfreeze = sum(id(v) not in trainable for v in base_kernels)
    pruned.compile(keras.optimizers.Adam(1e-5), loss)
    pruned.fit(x, y, batch_size=4, verbose=0, callbacks=cb)
    total, wrong = _exact(pruned)
    out = _np(pruned.predict(x, verbose=0))
    stripped = keras_prune.strip_pruning(pruned)
    s_out = _np(stripped.predict(x, verbose=0))
    path = os.path.join(tmp, f"tl_{mode}.keras")
    stripped.save(path)
    return {
        "tensors_pruned": total,
        "not_exact": wrong,
        "frozen_kept_weights_moved_in_fit1": moved,
        "base_kernels_still_frozen_after_unfreeze": frozen_after_unfreeze,
        "pruned_vs_stripped": float(np.max(np.abs(out - s_out))),
        "stripped_vs_reloaded_fresh": _fresh_reload(path, x, s_out),
    }


def _gpt2_task():
    import keras_hub

    vocab = {
        "<|endoftext|>": 0,
        "a": 1,
        "b": 2,
        "c": 3,
        "Ġ": 4,
        "Ġa": 5,
        "Ġb": 6,
        "Ġc": 7,
        "ab": 8,
        "Ġab": 9,
    }
    tok = keras_hub.models.GPT2Tokenizer(
        vocabulary=vocab, merges=["Ġ a", "Ġ b", "Ġ c", "a b", "Ġa b"]
    )
    pre = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tok, sequence_length=8
    )
    bb = keras_hub.models.GPT2Backbone(
        vocabulary_size=10,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
    )
    return keras_hub.models.GPT2CausalLM(backbone=bb, preprocessor=pre)


def hub_task(tmp):
    """GPT2CausalLM with its preprocessor: summary, compile defaults, fit
    (token ids: tensorflow-text, needed to tokenize strings, is not
    installed here), generate with every sampler, predict pruned /
    stripped / reloaded."""
    keras.utils.set_random_seed(0)
    lm = _gpt2_task()
    pruned = keras_prune.prune_low_magnitude(lm, pruning_schedule=SCHEDULE)
    lines = []
    pruned.summary(print_fn=lambda s, **k: lines.append(s))
    vocab_ok = pruned.preprocessor.tokenizer.vocabulary_size() == 10
    pruned.preprocessor = None  # token ids in and out
    ids = np.array(
        [[1, 4, 2, 4, 3, 0, 0, 0], [8, 4, 3, 5, 0, 0, 0, 0]] * 2, "int32"
    )
    data = {"token_ids": ids, "padding_mask": ids != 0}
    pruned.compile(optimizer=keras.optimizers.Adam(1e-2))
    pruned.fit(
        data,
        np.roll(ids, -1, 1),
        batch_size=2,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    total, wrong = _exact(pruned)
    prompt = {
        "token_ids": np.array([[1, 4, 2, 0, 0, 0, 0, 0]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], bool),
    }
    samplers = ["greedy", "top_k", "top_p", "beam", "random", "contrastive"]

    def generate(model):
        got = {}
        for s in samplers:
            model.compile(sampler=s)
            keras.utils.set_random_seed(1)
            got[s] = _np(
                model.generate(prompt, max_length=6, stop_token_ids=None)[
                    "token_ids"
                ]
            ).tolist()
        return got

    gen = generate(pruned)
    out = _np(pruned.predict(data, verbose=0))
    stripped = keras_prune.strip_pruning(pruned)
    s_out = _np(stripped.predict(data, verbose=0))
    gen_s = generate(stripped)
    path = os.path.join(tmp, "gpt2.keras")
    stripped.save(path)
    return {
        "summary_and_vocabulary": vocab_ok and len(lines) > 0,
        "tensors_pruned": total,
        "not_exact": wrong,
        "generate_same_pruned_vs_stripped": {
            s: gen[s] == gen_s[s] for s in samplers
        },
        "pruned_vs_stripped": float(np.max(np.abs(out - s_out))),
        "stripped_vs_reloaded_fresh": _fresh_reload(path, data, s_out),
    }


def shared_backbone():
    """One pruned BertBackbone under two tasks: training one prunes the
    backbone both use."""
    import keras_hub

    keras.utils.set_random_seed(0)
    bb = keras_hub.models.BertBackbone(
        vocabulary_size=20,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    pruned_bb = keras_prune.prune_low_magnitude(bb, pruning_schedule=SCHEDULE)
    a = keras_hub.models.BertTextClassifier(pruned_bb, 3, preprocessor=None)
    b = keras_hub.models.BertTextClassifier(pruned_bb, 2, preprocessor=None)
    ids = np.array([[1, 2, 3, 4, 5, 0, 0, 0]] * 4, "int32")
    data = {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": ids != 0,
    }
    a.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    a.fit(
        data,
        np.array([0, 1, 2, 0]),
        batch_size=2,
        verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    total, wrong = _exact(pruned_bb)
    b_out = _np(b.predict(data, verbose=0))
    keras_prune.strip_pruning(a)
    b_after = _np(b.predict(data, verbose=0))
    return {
        "backbone_tensors_pruned": total,
        "not_exact": wrong,
        "second_task_before_vs_after_strip_of_first": float(
            np.max(np.abs(b_out - b_after))
        ),
    }


def quantize_and_export(tmp):
    keras.utils.set_random_seed(0)
    result = {}
    x = np.random.RandomState(0).rand(4, 6).astype("float32")
    for mode in ["int8", "float8", "int4"]:
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, activation="relu", name="d1"),
                keras.layers.EinsumDense(
                    "ab,bc->ac", 5, bias_axes="c", name="e1"
                ),
                keras.layers.Dense(3, name="d2"),
            ]
        )
        stripped = keras_prune.strip_pruning(keras_prune.prune_once(model, 0.5))
        ref = _np(stripped.predict(x, verbose=0))
        zeros = {l.name: _np(l.kernel) == 0 for l in stripped.layers}
        stripped.quantize(mode)
        q = _np(stripped.predict(x, verbose=0))
        entry = {"max_abs_diff_vs_float": float(np.max(np.abs(q - ref)))}
        if mode == "int8":
            entry["zeros_kept"] = all(
                np.array_equal(_np(l._kernel) == 0, zeros[l.name])
                for l in stripped.layers
            )
        path = os.path.join(tmp, f"q_{mode}.keras")
        stripped.save(path)
        loaded = keras.saving.load_model(path)
        entry["reloaded_vs_quantized"] = float(
            np.max(np.abs(_np(loaded.predict(x, verbose=0)) - q))
        )
        if mode == "int8" and BACKEND in ("tensorflow", "jax"):
            try:
                import tensorflow as tf

                export = os.path.join(tmp, "saved_model")
                stripped.export(export, format="tf_saved_model", verbose=False)
                served = tf.saved_model.load(export)
                o = np.asarray(served.serve(tf.constant(x)))
                entry["saved_model_vs_quantized"] = float(np.max(np.abs(o - q)))
                entry["saved_model_int8_zeros"] = sorted(
                    int((v.numpy() == 0).sum())
                    for v in served.variables
                    if v.dtype == tf.int8
                )
            except Exception as e:  # noqa: BLE001 - recorded
                entry["saved_model"] = f"ERROR {type(e).__name__}: {e}"[:300]
        result[mode] = entry
    return result


WORKFLOWS = (
    "transfer_whole",
    "transfer_head",
    "transfer_base",
    "gpt2_task",
    "shared_backbone",
    "quantize_export",
)


def main(argv=None):
    """Runs every workflow, or those named on the command line (their
    results then replace those of an earlier run in the JSON file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "workflows",
        nargs="*",
        metavar="WORKFLOW",
        help=f"run only these (default: all): {', '.join(WORKFLOWS)}",
    )
    only = parser.parse_args(sys.argv[1:] if argv is None else argv).workflows
    unknown = sorted(set(only) - set(WORKFLOWS))
    if unknown:
        parser.error(f"unknown workflow(s) {unknown}; choose from {WORKFLOWS}")
    results = {}
    if only and OUT.exists():
        results = json.loads(OUT.read_text())
    results.update(backend=BACKEND, keras=keras.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {
            "transfer_whole": lambda: transfer_learning("whole", tmp),
            "transfer_head": lambda: transfer_learning("head", tmp),
            "transfer_base": lambda: transfer_learning("base", tmp),
            "gpt2_task": lambda: hub_task(tmp),
            "shared_backbone": shared_backbone,
            "quantize_export": lambda: quantize_and_export(tmp),
        }
        for name, job in jobs.items():
            if only and name not in only:
                continue
            try:
                results[name] = job()
            except Exception as e:  # noqa: BLE001 - recorded
                results[name] = f"ERROR {type(e).__name__}: {e}"[:500]
            print(name, json.dumps(results[name], default=str), flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
