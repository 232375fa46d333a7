"""Regression tests of the fourth hostile pass: the in-step host select
(`tf.numpy_function` / `jax.pure_callback`, `_backend.shared_step_function`)
and the host-driven updates of `UpdatePruningStep` around it.

Every test compares masks bit for bit with one reference fit (module
fixture): the in-step update of a plain `fit`, whose masks are the same on
every backend (the weights are set from NumPy, so no backend RNG enters).
Models are tiny: two Dense layers, 20 steps.
"""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.integration.state import pruning_wrappers

BACKEND = keras.backend.backend()
X = np.random.default_rng(0).normal(size=(40, 5)).astype("float32")
Y = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")

# Masks of `_model()` after `_fit` (2 epochs of 10 batches), the same on
# JAX, TensorFlow and torch: their sums pin the schedule's counts.
KEPT = (9, 7)
# With `begin_step=5, end_step=15`: after step 9, sparsity 0.7 * (1 - 0.6**3).
KEPT_AT_9 = [30 - 16, 24 - 13]


def _model(seed=1, units=(6, 4), schedule=None, **schedule_args):
    inp = keras.Input((5,))
    x = inp
    for u in units[:-1]:
        x = keras.layers.Dense(u, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(units[-1])(x))
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in model.weights]
    )
    if schedule is None:
        args = dict(begin_step=0, end_step=20, frequency=1)
        args.update(schedule_args)
        schedule = kp.PolynomialDecay(0.0, 0.7, **args)
    return kp.prune_low_magnitude(model, pruning_schedule=schedule)


def _compiled(model=None, **compile_args):
    model = _model() if model is None else model
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss="mse", **compile_args
    )
    return model


def _masks(model):
    return [
        keras.ops.convert_to_numpy(m)
        for w in pruning_wrappers(model)
        for m in w.masks
    ]


def _fit(model, epochs=2, **kwargs):
    model.fit(
        X, Y, batch_size=4, epochs=epochs, verbose=0, shuffle=False, **kwargs
    )
    return _masks(model)


def _same(a, b):
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b)
    )


@pytest.fixture(scope="module")
def reference():
    model = _compiled()
    masks = _fit(model)
    assert [int(m.sum()) for m in masks] == [30 - 21, 24 - 17]
    assert kp.pruning_step(model) == 20
    return masks


def test_reference_counts(reference):
    assert tuple(int(m.sum()) for m in reference) == KEPT


# ------------------------------------------------- TensorFlow SavedModel


def _graph_ops(directory):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(f"{directory}/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    found = set()
    for graph in proto.meta_graphs:
        found.update(n.op for n in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            found.update(n.op for n in function.node_def)
    return found


PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow SavedModel")
def test_saved_training_signature_has_no_host_call(tmp_path, reference):
    """Before: a user's `tf.function` training step of a pruned model (an
    on-device training signature), saved with `tf.saved_model.save`,
    held the in-step host select's `tf.numpy_function` (a PyFunc op):
    loaded in another process it failed at its first call (its Python
    callback does not exist there). Traced for saving, the step now keeps
    the in-graph select."""
    import tensorflow as tf

    model = _model()
    trainer = _trainer(model)
    for i in range(10):  # traced before saving, with the host select
        trainer.train(X[4 * i : 4 * i + 4], Y[4 * i : 4 * i + 4])
    tf.saved_model.save(trainer, str(tmp_path))
    assert not _graph_ops(tmp_path) & PY_FUNC_OPS
    # The live step keeps selecting on the host, the same masks.
    for i in range(10):
        trainer.train(X[4 * i : 4 * i + 4], Y[4 * i : 4 * i + 4])
    assert _same(_masks(model), reference)


class _HalfFrom(kp.PruningSchedule):
    """Sparsity 0.5 from step 0, then `value` from step `at` (keras.ops)."""

    in_graph = True

    def __init__(self, value, at):
        self.value, self.at = value, at

    def __call__(self, step):
        value = keras.ops.where(keras.ops.less(step, self.at), 0.5, self.value)
        return keras.ops.greater_equal(step, 0), value

    def get_config(self):
        return {"value": self.value, "at": self.at}


def _sgd_step(model, optimizer, x, y):
    """One training step of a user's TensorFlow loop (mean squared error)."""
    import tensorflow as tf

    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x, training=True) - y) ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss


def _trainer(model):
    """A `tf.Module` with a saved training signature `train(x, y)`."""
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    trainer = tf.Module()
    trainer.model, trainer.optimizer = model, optimizer

    @tf.function(
        input_signature=[tf.TensorSpec((None, 5)), tf.TensorSpec((None, 4))]
    )
    def train(x, y):
        return _sgd_step(model, optimizer, x, y)

    trainer.train = train
    return trainer


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow SavedModel")
def test_saving_a_training_function_with_a_python_schedule_is_refused(
    tmp_path,
):
    """Before: saved with a `tf.numpy_function` (PyFuncStateless) that
    failed where the SavedModel was loaded."""
    import tensorflow as tf

    schedule = kp.FunctionSchedule(lambda step: min(0.5, step / 4))
    trainer = _trainer(_model(schedule=schedule))
    trainer.train(X[:4], Y[:4])  # trains here
    with pytest.raises(ValueError, match="runs Python.*strip_pruning"):
        tf.saved_model.save(trainer, str(tmp_path))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow SavedModel")
def test_saved_in_graph_user_schedule_is_checked_in_the_graph(tmp_path):
    """A user's keras.ops schedule is checked by a host call in a live step
    (it raises the schedule's own error); saved, by a graph assertion."""
    import tensorflow as tf

    trainer = _trainer(_model(schedule=_HalfFrom(float("nan"), 2)))
    tf.saved_model.save(trainer, str(tmp_path))
    assert not _graph_ops(tmp_path) & PY_FUNC_OPS
    loaded = tf.saved_model.load(str(tmp_path))
    loaded.train(X[:4], Y[:4])
    loaded.train(X[:4], Y[:4])
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        loaded.train(X[:4], Y[:4])  # step 2: NaN


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow SavedModel")
@pytest.mark.parametrize("strip", [False, True])
def test_exported_fitted_model_has_no_host_call(tmp_path, strip):
    model = _compiled()
    _fit(model, epochs=1)
    if strip:
        model = kp.strip_pruning(model)
    model.export(str(tmp_path / "export"), verbose=False)
    ops = _graph_ops(tmp_path / "export")
    assert "MatMul" in ops and not ops & PY_FUNC_OPS


# ------------------------------------------------- two forward passes


def test_two_training_forward_passes_before_one_backward():
    """A loss over two training calls of the model (siamese and
    consistency losses, a custom `train_step` calling `self(x)` twice):
    each call is a step and may update the masks. The first call's
    backward pass must still run, and both calls' gradients reach the
    kept weights only. (main 9205648's torch forward multiplied by the
    mask's uint8 view, which autograd kept: the second call's in-place
    mask update made the backward pass raise RuntimeError.)"""
    model = _model(schedule=kp.ConstantSparsity(0.5, 0, frequency=1))
    kernel = pruning_wrappers(model)[0].layer.kernel
    x = keras.ops.convert_to_tensor(X[:4])
    grads = _two_pass_kernel_gradient(model, kernel, x)
    mask = keras.ops.convert_to_numpy(pruning_wrappers(model)[0].masks[0])
    assert kp.pruning_step(model) == 2
    assert int(mask.sum()) == 15
    assert np.all(grads[~mask] == 0) and np.any(grads[mask] != 0)


def _two_pass_kernel_gradient(model, kernel, x):
    def loss_of(outputs):
        return sum(keras.ops.mean(o**2) for o in outputs)

    if BACKEND == "torch":
        a = model(x, training=True)
        b = model(x + 1.0, training=True)
        loss_of([a, b]).backward()
        grads = kernel.value.grad
        return grads.detach().cpu().numpy()
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            a = model(x, training=True)
            b = model(x + 1.0, training=True)
            loss = loss_of([a, b])
        return tape.gradient(loss, kernel.value).numpy()
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    index = [id(v) for v in model.trainable_variables].index(id(kernel))

    def loss_fn(trainable, non_trainable):
        a, non_trainable = model.stateless_call(
            trainable, non_trainable, x, training=True
        )
        b, non_trainable = model.stateless_call(
            trainable, non_trainable, x + 1.0, training=True
        )
        return loss_of([a, b]), non_trainable

    grads, non_trainable = jax.jit(jax.grad(loss_fn, has_aux=True))(
        trainable, non_trainable
    )
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        variable.assign(value)
    return np.asarray(grads[index])


# ------------------------------------------------- compile settings


COMPILE_ARGS = [
    {"jit_compile": True},
    {"jit_compile": False},
    {"jit_compile": "auto"},
    {"steps_per_execution": 2},
    {"steps_per_execution": 4, "jit_compile": False},
]


@pytest.mark.parametrize("compile_args", COMPILE_ARGS, ids=str)
def test_same_masks_under_every_compile_setting(reference, compile_args):
    """The host select (TensorFlow without XLA, JAX) and the in-graph one
    (XLA, `tf.distribute`) give the same masks as the reference, bit for
    bit, also several steps per execution."""
    if BACKEND == "torch" and set(compile_args) != {"jit_compile"}:
        pytest.skip("torch runs one step per execution")
    if BACKEND == "torch" and compile_args["jit_compile"] is True:
        pytest.skip("torch.compile: 38 s for this fit, not the host select")
    model = _compiled(**compile_args)
    assert _same(_fit(model), reference)
    assert kp.pruning_step(model) == 20


def test_update_pruning_step_with_steps_per_execution(reference):
    """Host mode refuses several steps per execution; the in-step update
    then runs, with the callback's checks: the same masks."""
    if BACKEND == "torch":
        pytest.skip("torch runs one step per execution")
    model = _compiled(steps_per_execution=4)
    assert _same(_fit(model, callbacks=[kp.UpdatePruningStep()]), reference)


@pytest.mark.skipif(BACKEND == "torch", reason="no compiled step to share")
def test_models_trained_alternately_share_nothing(reference):
    """TensorFlow traces the host select once per number of pruned weights
    for all models (`_backend.shared_step_function`): two models with the
    same number and one with another, trained batch by batch in turns,
    across `clear_session`, each get their own masks."""
    a, b = _model(), _model(seed=2)
    c = _model(seed=3, units=(3, 6, 4))
    for model in (a, b, c):
        _compiled(model)
    for epoch in range(2):
        for i in range(10):
            if epoch == 1 and i == 5:
                keras.backend.clear_session()
            for model in (a, b, c):
                model.train_on_batch(X[4 * i : 4 * i + 4], Y[4 * i : 4 * i + 4])
    assert _same(_masks(a), reference)
    b_alone, c_alone = (
        _compiled(_model(seed=2)),
        _compiled(_model(seed=3, units=(3, 6, 4))),
    )
    assert _same(_masks(b), _fit(b_alone))
    assert _same(_masks(c), _fit(c_alone))
    assert len(_masks(c)) == 3


def test_train_on_batch_with_evaluate_and_predict_between(reference):
    model = _compiled()
    for _ in range(2):
        for i in range(10):
            s = slice(4 * i, 4 * i + 4)
            model.train_on_batch(X[s], Y[s])
            if i % 4 == 1:
                model.evaluate(X[:8], Y[:8], verbose=0)
                model.predict_on_batch(X[:4])
    assert _same(_masks(model), reference)
    assert kp.pruning_step(model) == 20


# ------------------------------------------------- TensorFlow loops


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function loops")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_custom_loop(reference, jit_compile):
    import tensorflow as tf

    model = _model()
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        _sgd_step(model, optimizer, x, y)

    for _ in range(2):
        for i in range(10):
            step(X[4 * i : 4 * i + 4], Y[4 * i : 4 * i + 4])
    assert _same(_masks(model), reference)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute")
@pytest.mark.parametrize("strategy", ["one_device", "mirrored"])
def test_tf_distribute_strategies(reference, strategy):
    import tensorflow as tf

    if strategy == "one_device":
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    else:
        strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _compiled()
    assert _same(_fit(model), reference)


# ------------------------------------------------- NaN weights


@pytest.fixture(scope="module")
def nan_data():
    x = X.copy()
    x[12:16] = np.nan  # the fourth batch makes every weight NaN
    return x


@pytest.mark.parametrize("compile_args", [{}, {"jit_compile": True}], ids=str)
def test_nan_weights_with_callback_raise_naming_the_layer(
    nan_data, compile_args
):
    if BACKEND == "torch" and compile_args:
        pytest.skip("torch.compile: slow, not the host select")
    model = _compiled(**compile_args)
    name = pruning_wrappers(model)[0].layer.name
    with pytest.raises(FloatingPointError, match=f"'{name}'.*NaN or Inf"):
        model.fit(
            nan_data,
            Y,
            batch_size=4,
            verbose=0,
            shuffle=False,
            callbacks=[kp.UpdatePruningStep()],
        )
    assert kp.pruning_step(model) == 4


def test_nan_weights_without_callback_keep_masks_and_block_strip(nan_data):
    """Without the callback a compiled step cannot raise: the update leaves
    the masks as they were and counts the NaN weights (eager steps raise at
    once); `strip_pruning` then refuses, naming the layer."""
    model = _compiled()
    # The fourth step updates the masks, then its NaN gradients reach
    # every weight of the first layer.
    model.fit(nan_data[:16], Y[:16], batch_size=4, verbose=0, shuffle=False)
    before = _masks(model)
    name = pruning_wrappers(model)[0].layer.name
    try:
        model.fit(nan_data[16:], Y[16:], batch_size=4, verbose=0, shuffle=False)
    except FloatingPointError as error:  # torch: eager, raises at once
        assert BACKEND == "torch" and name in str(error)
        return
    first = pruning_wrappers(model)[0]
    assert int(keras.ops.convert_to_numpy(first.nonfinite_count)) > 0
    assert _same(_masks(model)[:1], before[:1])
    with pytest.raises(FloatingPointError, match=f"'{name}'"):
        kp.strip_pruning(model)


# ------------------------------------------------- schedules


def test_schedule_begin_and_end_inside_training():
    """Updates at every step from step 5 to 15, then none: the counts of
    the eager update (checked once on each backend), and the masks stop
    changing after `end_step`."""
    model = _compiled(_model(begin_step=5, end_step=15))
    at_9 = _fit(model, epochs=1)  # steps 0-9
    model.fit(X[:24], Y[:24], batch_size=4, verbose=0, shuffle=False)
    at_15 = _masks(model)  # steps 10-15
    at_25 = _fit(model, epochs=1)  # steps 16-25
    assert [int(m.sum()) for m in at_9] == KEPT_AT_9
    assert [int(m.sum()) for m in at_15] == [9, 7]
    assert _same(at_25, at_15)  # no update after end_step


@pytest.mark.skipif(BACKEND == "torch", reason="no compiled step")
def test_host_select_runs_only_at_update_steps(monkeypatch):
    """The host call sits under the step's `cond`: 2 weights x 4 updates
    (steps 0, 5, 10, 15) in 20 steps, also several steps per execution;
    TensorFlow with XLA selects in the graph instead (none)."""
    from keras_prune.core import masks

    calls = []
    host_mask = masks.host_mask

    def counted(*args):
        calls.append(1)
        return host_mask(*args)

    monkeypatch.setattr(masks, "host_mask", counted)
    expected = {"jit_compile": 0 if BACKEND == "tensorflow" else 8}
    expected["steps_per_execution"] = 8
    for key, count in expected.items():
        calls.clear()
        value = True if key == "jit_compile" else 4
        model = _compiled(_model(frequency=5), **{key: value})
        _fit(model)
        assert len(calls) == count, key
