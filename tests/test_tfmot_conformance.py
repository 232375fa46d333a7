"""tfmot's public behaviour, as a tfmot user writes it (import swapped).

One test per behaviour of `tfmot.sparsity.keras` 0.8.1 (names, arguments,
defaults, errors, values; /work/shared/reference/tfmot-semantics.md), and
tfmot's custom-training-loop idiom on every backend: the callback's hooks
called by hand, eagerly and in compiled steps, with and without
`model.optimizer` set, must give exactly the step and masks of the same loop
without the callback. Deliberate differences are in
docs/migrating-from-tfmot.md; where a difference shows here, the test says
which row.
"""

import inspect
import tempfile
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_prune as kp
from keras_prune.integration import host_updates

from conftest import BACKEND
from conftest import to_np

# ------------------------------------------------------------ public names

TFMOT_NAMES = (
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
    "UpdatePruningStep",
    "PruningSummaries",
    "PruningSchedule",
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruningPolicy",
    "PruneForLatencyOnXNNPack",
)


def test_every_tfmot_name_is_exported():
    missing = [name for name in TFMOT_NAMES if not hasattr(kp, name)]
    assert missing == []


def test_prune_low_magnitude_arguments_and_defaults():
    params = inspect.signature(kp.prune_low_magnitude).parameters
    names = list(params)
    assert names[:6] == [
        "to_prune",
        "pruning_schedule",
        "block_size",
        "block_pooling_type",
        "pruning_policy",
        "sparsity_m_by_n",
    ]
    assert params["block_size"].default == (1, 1)
    assert params["block_pooling_type"].default == "AVG"
    assert params["pruning_policy"].default is None
    assert params["sparsity_m_by_n"].default is None
    # The default schedule is ConstantSparsity(0.5, 0), frequency 100.
    wrapper = kp.prune_low_magnitude(L.Dense(2))
    assert wrapper.pruning_schedule.get_config() == {
        "class_name": "ConstantSparsity",
        "config": {
            "target_sparsity": 0.5,
            "begin_step": 0,
            "end_step": -1,
            "frequency": 100,
        },
    }


def test_schedule_arguments_and_defaults():
    c = inspect.signature(kp.ConstantSparsity).parameters
    assert list(c)[:4] == [
        "target_sparsity",
        "begin_step",
        "end_step",
        "frequency",
    ]
    assert c["end_step"].default == -1 and c["frequency"].default == 100
    p = inspect.signature(kp.PolynomialDecay).parameters
    assert list(p)[:6] == [
        "initial_sparsity",
        "final_sparsity",
        "begin_step",
        "end_step",
        "power",
        "frequency",
    ]
    assert p["power"].default == 3 and p["frequency"].default == 100


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: kp.ConstantSparsity(0.5, -1), "begin_step should be >= 0"),
        (lambda: kp.PolynomialDecay(0.1, 0.5, 0, -1), "end_step cannot be -1."),
        (lambda: kp.ConstantSparsity(0.5, 0, -2), "end_step can be -1 or >= 0"),
        (
            lambda: kp.ConstantSparsity(0.5, 10, 5),
            "begin_step should be <= end_step if end_step != -1",
        ),
        (
            lambda: kp.ConstantSparsity(0.5, 0, frequency=0),
            "frequency should be > 0",
        ),
        (
            lambda: kp.ConstantSparsity(1.0, 0),
            r"target_sparsity must be in range \[0,1\)",
        ),
        (
            lambda: kp.PolynomialDecay(0.1, 1.0, 0, 10),
            r"final_sparsity must be in range \[0,1\)",
        ),
    ],
)
def test_schedule_validation_messages(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedule_prunes_on_tfmot_steps():
    # Inclusive at both ends; frequency counted from begin_step.
    schedule = kp.ConstantSparsity(0.5, 10, 20, frequency=5)
    got = [bool(to_np(schedule(s)[0])) for s in (9, 10, 14, 15, 20, 21, 25)]
    assert got == [False, True, False, True, True, False, False]
    # end_step -1 prunes forever.
    assert bool(to_np(kp.ConstantSparsity(0.5, 0, -1, 7)(7000)[0]))


def test_polynomial_decay_values_and_kept_counts():
    # tfmot's vector: Dense(8 -> 4), PolynomialDecay(0.2, 0.6, 1, 4, 3, 1):
    # sparsity 0.1875 (26 of 32 kept) at step 1, 0.59375 (13 kept) at 4.
    schedule = kp.PolynomialDecay(0.2, 0.6, 1, 4, power=3, frequency=1)
    for step in (1, 2, 3, 4):
        # tfmot's formula (tests/test_schedules.py pins the float32 bits).
        p = min(1.0, max(0.0, (step - 1) / (4 - 1)))
        expected = 0.6 + (0.2 - 0.6) * (1 - p) ** 3
        got = np.float32(to_np(schedule(step)[1]))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    s1, s4 = (float(to_np(schedule(s)[1])) for s in (1, 4))
    assert int(to_np(kp.kept_count(32, s1))) == 26
    assert int(to_np(kp.kept_count(32, s4))) == 13


@pytest.mark.parametrize(
    "n, s, kept",
    [
        (10, 0.25, 8),
        (10, 0.35, 6),
        (10, 0.45, 6),
        (10, 0.15, 8),
        (10, 0.05, 10),
        (5, 0.5, 2),
        (7, 0.5, 4),
        (3, 0.5, 2),
        (1, 0.5, 1),
        (50, 0.99, 1),
        (100, 0.9999, 1),
    ],
)
def test_kept_count_is_tfmots(n, s, kept):
    assert int(to_np(kp.kept_count(n, s))) == kept


def test_pruning_summaries_log_dir_must_be_a_non_empty_string():
    for bad in ("", None, object()):
        with pytest.raises(ValueError, match="`log_dir` must be a non-empty"):
            kp.PruningSummaries(log_dir=bad)


def test_block_pooling_type_message():
    with pytest.raises(
        ValueError,
        match=r"^Unsupported pooling type 'MIN'. Should be 'AVG' or 'MAX'.$",
    ):
        kp.prune_low_magnitude(L.Dense(2), block_pooling_type="MIN")


# ---------------------------------------------------------------- wrapper


def test_wrapper_name():
    wrapper = kp.prune_low_magnitude(L.Dense(2, name="fc"))
    assert wrapper.name == "prune_low_magnitude_fc"


def test_wrapped_first_layer_input_shape_builds_the_sequential():
    model = keras.Sequential(
        [kp.prune_low_magnitude(L.Dense(2, input_shape=(3,)))]
    )
    assert model.built
    assert model.layers[0].built
    assert tuple(model.output_shape) == (None, 2)
    assert [tuple(v.shape) for v, _, _ in model.layers[0].pruning_vars] == [
        (3, 2)
    ]


def test_pruning_vars_is_empty_before_build():
    wrapper = kp.PruneLowMagnitude(L.Dense(2))
    assert wrapper.pruning_vars == []
    wrapper.build((None, 3))
    weight, mask, threshold = wrapper.pruning_vars[0]
    assert weight is wrapper.layer.kernel
    assert tuple(mask.shape) == (3, 2) and tuple(threshold.shape) == ()


def test_wrapped_built_in_layer_answers_get_prunable_weights():
    model = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((3,)), L.Dense(2), L.Dense(1)])
    )
    for wrapper in model.layers:
        assert wrapper.layer.get_prunable_weights() == [wrapper.layer.kernel]

    # A custom layer keeps its own method.
    class Custom(L.Dense, kp.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]

    wrapper = kp.prune_low_magnitude(Custom(2))
    wrapper.build((None, 3))
    assert len(wrapper.layer.get_prunable_weights()) == 2
    assert len(wrapper.pruning_vars) == 2


@pytest.mark.parametrize("bad", [object(), 3, "dense"])
def test_pruning_something_else_raises_tfmots_value_error(bad):
    with pytest.raises(ValueError) as info:
        kp.prune_low_magnitude(bad)
    assert str(info.value).startswith(
        "`prune_low_magnitude` can only prune an object of the following "
        "types: keras.models.Sequential, keras functional model, "
        "keras.layers.Layer, list of keras.layers.Layer. You passed an "
        f"object of type: {type(bad).__name__}."
    )
    # Also a TypeError, keras-prune's type before.
    assert isinstance(info.value, TypeError)


def test_strip_pruning_of_a_layer_raises_value_error():
    with pytest.raises(ValueError, match="keras.Model"):
        kp.strip_pruning(L.Dense(2))


def test_prune_scope_is_a_custom_object_scope():
    scope = kp.prune_scope()
    assert isinstance(scope, keras.saving.CustomObjectScope)
    with scope:
        assert (
            keras.saving.get_registered_object("PruneLowMagnitude")
            is kp.PruneLowMagnitude
        )


def test_inference_leaves_the_step_alone():
    model = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((3,)), L.Dense(2)])
    )
    x = np.ones((4, 3), "float32")
    model.predict(x, verbose=0)
    model(x)
    assert kp.pruning_step(model) == 0


def test_pruned_model_predicts_what_the_original_does_before_training():
    base = keras.Sequential([keras.Input((3,)), L.Dense(4), L.Dense(2)])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    np.testing.assert_array_equal(
        to_np(kp.prune_low_magnitude(base)(x)), to_np(base(x))
    )


# ------------------------------------------------------------------ policy


def test_xnnpack_policy_looks_into_nested_models_and_names_class_and_layer():
    inp = keras.Input((9, 9, 3))
    x = L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(1)(inp))
    nested = keras.Sequential(
        [keras.Input((5, 5, 4)), L.Identity(), L.Conv2D(4, 1, name="pw")]
    )
    x = L.GlobalAveragePooling2D(keepdims=True)(nested(x))
    policy = kp.PruneForLatencyOnXNNPack()
    model = keras.Model(inp, x)
    policy.ensure_model_supports_pruning(model)
    pruned = kp.prune_low_magnitude(model, pruning_policy=policy)
    assert [
        w.layer.name for w in kp.integration.strip.pruning_wrappers(pruned)
    ] == ["pw"]
    bad = keras.Sequential(
        [keras.Input((5, 5, 4)), L.MaxPooling2D(1, name="max_pooling2d")]
    )
    x = L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(1)(inp))
    model = keras.Model(inp, L.GlobalAveragePooling2D()(bad(x)))
    with pytest.raises(ValueError) as info:
        policy.ensure_model_supports_pruning(model)
    message = str(info.value)
    assert message.startswith(
        "Layer MaxPooling2D is not supported for the "
        "PruneForLatencyOnXNNPack pruning policy"
    )
    assert "'max_pooling2d'" in message


# -------------------------------------------------------------- callbacks


def test_update_pruning_step_hooks_take_tfmots_arguments():
    model = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((3,)), L.Dense(4)]),
        kp.ConstantSparsity(0.5, 0, frequency=1),
    )
    callback = kp.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(-1)
    callback.on_epoch_begin(epoch=-1)
    callback.on_train_batch_begin(batch=-1)
    callback.on_train_batch_begin(-1, logs={})
    callback.on_train_batch_end(batch=-1)
    logs = {}
    with pytest.warns(UserWarning, match="did not advance"):  # no training
        callback.on_epoch_end(batch=-1)
    callback.on_epoch_end(-1, logs)
    callback.on_epoch_end(epoch=0, logs=logs)
    callback.on_train_end()
    assert logs == {"sparsity": 0.0}
    assert kp.pruning_step(model) == 0
    assert host_updates.active(model) is None


def test_hand_called_hooks_warn_once_when_the_model_did_not_train():
    """A JAX loop that keeps its state outside the variables (or a loop
    without a training forward pass) leaves the model as it was: the
    callback says so once, instead of reporting stale masks silently."""
    model = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((3,)), L.Dense(4)]),
        kp.ConstantSparsity(0.5, 0, frequency=1),
    )
    callback = kp.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    for _ in range(2):
        callback.on_train_batch_begin(batch=-1)
        model(np.ones((2, 3), "float32"), training=False)
    with pytest.warns(UserWarning, match="did not advance"):
        callback.on_epoch_end(batch=-1)
    callback.on_train_batch_begin(batch=-1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_epoch_end(batch=-1)  # once only
        fresh = kp.UpdatePruningStep()
        fresh.set_model(model)
        fresh.on_train_begin()
        # A trained batch advances the step: no warning.
        fresh.on_train_batch_begin(batch=-1)
        model(np.ones((2, 3), "float32"), training=True)
        fresh.on_epoch_end(batch=-1)
    assert not [w for w in caught if "did not advance" in str(w.message)]
    assert kp.pruning_step(model) == 1


def test_fit_counts_one_step_per_batch():
    model = kp.prune_low_magnitude(
        keras.Sequential([keras.Input((3,)), L.Dense(4)]),
        kp.ConstantSparsity(0.5, 0, frequency=1),
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.ones((12, 3), "float32")
    model.fit(
        x,
        np.zeros((12, 4), "float32"),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    assert kp.pruning_step(model) == 6
    model.evaluate(x, np.zeros((12, 4), "float32"), verbose=0)
    assert kp.pruning_step(model) == 6


# --------------------------------------------- tfmot's custom training loop
#
# The loop of tfmot's comprehensive guide ("Custom training loop"), with
# `tfmot.sparsity.keras` replaced by `keras_prune`. TensorFlow runs it as
# written (GradientTape, eagerly or in a tf.function); JAX and torch have no
# GradientTape, so their gradient step is Keras' own recipe for the backend
# (stateless_call + optimizer.stateless_apply on JAX, loss.backward() on
# torch), around the very same callback calls. `callbacks=False` runs the
# same loop without the callback lines: the reference.

EPOCHS = 2
BATCHES = 3  # 6 steps: PolynomialDecay(0, 0.8, 0, 4) ends at step 4.


def setup_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(8, activation="relu", name="d1"),
            L.Dense(3, name="d2"),
        ]
    )


def data():
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(10, 6)).astype("float32")
    y_train = np.eye(3, dtype="float32")[rng.integers(0, 3, size=10)]
    return x_train, y_train


def guide_loop(model_for_pruning, compiled, set_optimizer, callbacks):
    """tfmot's guide loop; returns nothing, leaves the model trained."""
    x_train, y_train = data()
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.Adam()
    log_dir = tempfile.mkdtemp()
    unused_arg = -1
    epochs = EPOCHS
    batches = BATCHES

    # Non-boilerplate.
    if set_optimizer:
        model_for_pruning.optimizer = optimizer
    step_callback = kp.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = kp.PruningSummaries(log_dir=log_dir)
    log_callback.set_model(model_for_pruning)

    gradient_step = GRADIENT_STEPS[BACKEND](
        model_for_pruning, loss, optimizer, compiled
    )
    if callbacks:
        step_callback.on_train_begin()  # run pruning callback
    for _ in range(epochs):
        if callbacks:
            log_callback.on_epoch_begin(epoch=unused_arg)
        gradient_step.begin_epoch()
        for _ in range(batches):
            if callbacks:
                step_callback.on_train_batch_begin(batch=unused_arg)
            gradient_step(x_train, y_train)
        gradient_step.end_epoch()
        if callbacks:
            step_callback.on_epoch_end(batch=unused_arg)
    if callbacks:
        log_callback.on_train_end()


class TensorFlowStep:
    """The guide's GradientTape step, as written."""

    def __init__(self, model_for_pruning, loss, optimizer, compiled):
        import tensorflow as tf

        def step(x_train, y_train):
            with tf.GradientTape() as tape:
                logits = model_for_pruning(x_train, training=True)
                loss_value = loss(y_train, logits)
                grads = tape.gradient(
                    loss_value, model_for_pruning.trainable_variables
                )
                optimizer.apply_gradients(
                    zip(grads, model_for_pruning.trainable_variables)
                )

        self.step = tf.function(step) if compiled else step

    def begin_epoch(self):
        pass

    def __call__(self, x, y):
        self.step(x, y)

    def end_epoch(self):
        pass


class TorchStep:
    """The same step on torch: loss.backward() instead of the tape."""

    def __init__(self, model, loss, optimizer, compiled):
        self.model, self.loss, self.optimizer = model, loss, optimizer

    def begin_epoch(self):
        pass

    def __call__(self, x_train, y_train):
        import torch

        model = self.model
        logits = model(x_train, training=True)
        loss_value = keras.ops.sum(self.loss(y_train, logits))
        model.zero_grad()
        loss_value.backward()
        trainable = model.trainable_variables
        grads = [v.value.grad for v in trainable]
        with torch.no_grad():
            self.optimizer.apply_gradients(zip(grads, trainable))

    def end_epoch(self):
        pass


class JaxStep:
    """The same step on JAX: stateless_call and stateless_apply, the state
    (masks and pruning step included) carried through the epoch and written
    back into the variables at its end, before `on_epoch_end`."""

    def __init__(self, model, loss, optimizer, compiled):
        import jax

        self.model, self.optimizer = model, optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)

        def compute_loss(trainable, non_trainable, x, y):
            logits, non_trainable = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return keras.ops.sum(loss(y, logits)), non_trainable

        grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

        def train_step(state, x, y):
            trainable, non_trainable, optimizer_vars = state
            (loss_value, non_trainable), grads = grad_fn(
                trainable, non_trainable, x, y
            )
            trainable, optimizer_vars = optimizer.stateless_apply(
                optimizer_vars, grads, trainable
            )
            return loss_value, (trainable, non_trainable, optimizer_vars)

        self.train_step = jax.jit(train_step) if compiled else train_step

    def begin_epoch(self):
        model = self.model
        self.state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )

    def __call__(self, x, y):
        _, self.state = self.train_step(self.state, x, y)

    def end_epoch(self):
        model = self.model
        trainable, non_trainable, optimizer_vars = self.state
        for variable, value in zip(model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(
            model.non_trainable_variables, non_trainable
        ):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, optimizer_vars):
            variable.assign(value)


GRADIENT_STEPS = {
    "tensorflow": TensorFlowStep,
    "torch": TorchStep,
    "jax": JaxStep,
}


def pruned_model():
    return kp.prune_low_magnitude(
        setup_model(), kp.PolynomialDecay(0.0, 0.8, 0, 4, frequency=1)
    )


def state(model):
    out = []
    for w in kp.integration.strip.pruning_wrappers(model):
        out.append(
            (
                int(to_np(w.pruning_step)),
                [to_np(m) for m in w.masks],
                [to_np(t).tobytes() for t in w.thresholds],
                [to_np(v)[to_np(m)] for v, m in zip(w.pruned_weights, w.masks)],
            )
        )
    return out


_REFERENCES = {}


def reference(compiled):
    if compiled not in _REFERENCES:
        model = pruned_model()
        guide_loop(model, compiled, set_optimizer=False, callbacks=False)
        _REFERENCES[compiled] = state(model)
    return _REFERENCES[compiled]


COMPILED = [False] if BACKEND == "torch" else [False, True]


@pytest.mark.parametrize("set_optimizer", [True, False], ids=["opt", "no-opt"])
@pytest.mark.parametrize("compiled", COMPILED, ids=lambda c: f"compiled={c}")
def test_guide_custom_loop_gives_the_numbers_of_the_loop_without_callback(
    compiled, set_optimizer
):
    model = pruned_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guide_loop(model, compiled, set_optimizer, callbacks=True)
    assert not [w for w in caught if "UpdatePruningStep" in str(w.message)]
    got, expected = state(model), reference(compiled)
    assert len(got) == len(expected) == 2
    for (step, masks, thresholds, kept), (step0, masks0, th0, kept0) in zip(
        got, expected
    ):
        assert step == step0 == EPOCHS * BATCHES
        for a, b in zip(masks, masks0):
            np.testing.assert_array_equal(a, b)
        assert thresholds == th0
        for a, b in zip(kept, kept0):
            np.testing.assert_array_equal(a, b)
    # PolynomialDecay(0, 0.8, 0, 4) reached 0.8 exactly (tfmot's kept
    # count), and on_epoch_end left the stored weights exactly sparse.
    for w in kp.integration.strip.pruning_wrappers(model):
        for weight, mask in zip(w.pruned_weights, w.masks):
            mask, weight = to_np(mask), to_np(weight)
            assert int(mask.sum()) == int(to_np(kp.kept_count(mask.size, 0.8)))
            assert np.count_nonzero(weight[~mask]) == 0
    assert host_updates.active(model) is None
    assert "train_step" not in model.__dict__


def test_hand_made_callback_list_with_fit_params_keeps_in_step_updates():
    """Keras' own custom-loop idiom: a CallbackList given epochs and steps
    (so the callback gets fit-like params), on a compiled model that `fit`
    already trained with the callback (so a train function exists)."""
    x_train, y_train = data()
    model = pruned_model()
    model.compile(keras.optimizers.Adam(), "categorical_crossentropy")
    model.fit(
        x_train,
        y_train,
        epochs=1,
        batch_size=10,
        verbose=0,
        callbacks=[kp.UpdatePruningStep()],
    )
    before = state(model)
    step = GRADIENT_STEPS[BACKEND](
        model, keras.losses.categorical_crossentropy, model.optimizer, False
    )
    callbacks = keras.callbacks.CallbackList(
        [kp.UpdatePruningStep()], model=model, epochs=1, steps=BATCHES
    )
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    step.begin_epoch()
    for i in range(BATCHES):
        callbacks.on_train_batch_begin(i)
        assert host_updates.active(model) is None
        step(x_train, y_train)
    step.end_epoch()
    callbacks.on_epoch_end(0)
    callbacks.on_train_end()
    after = state(model)
    assert after[0][0] == before[0][0] + BATCHES == 1 + BATCHES
    # Steps 1..3 updated the masks to the schedule's sparsity at step 3.
    s3 = float(to_np(kp.PolynomialDecay(0.0, 0.8, 0, 4, frequency=1)(3)[1]))
    for mask in after[0][1]:
        assert int(mask.sum()) == int(to_np(kp.kept_count(mask.size, s3)))


@pytest.mark.skipif(BACKEND == "jax", reason="JAX train_step is stateless")
def test_train_step_called_by_hand_after_an_interrupted_fit_is_in_step():
    """A fit that raised left host mode on; calling `model.train_step` by
    hand (Keras' custom-loop idiom) switches back to in-step updates."""
    x_train, y_train = data()
    model = pruned_model()
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")

    class Boom(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x_train,
            y_train,
            epochs=1,
            batch_size=5,
            verbose=0,
            callbacks=[kp.UpdatePruningStep(), Boom()],
        )
    assert host_updates.active(model) is not None
    assert kp.pruning_step(model) == 1
    for _ in range(3):
        model.train_step((x_train, y_train))
    assert host_updates.active(model) is None
    assert "train_step" not in model.__dict__
    assert kp.pruning_step(model) == 4
    s3 = float(to_np(kp.PolynomialDecay(0.0, 0.8, 0, 4, frequency=1)(3)[1]))
    for w in kp.integration.strip.pruning_wrappers(model):
        mask = to_np(w.masks[0])
        assert int(mask.sum()) == int(to_np(kp.kept_count(mask.size, s3)))


def test_fit_without_the_callback_after_an_interrupted_fit_is_in_step():
    x_train, y_train = data()
    model = pruned_model()
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")

    class Boom(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x_train,
            y_train,
            epochs=1,
            batch_size=5,
            verbose=0,
            callbacks=[kp.UpdatePruningStep(), Boom()],
        )
    assert host_updates.active(model) is not None
    model.fit(x_train, y_train, epochs=2, batch_size=5, verbose=0)
    assert host_updates.active(model) is None
    assert kp.pruning_step(model) == 5
    for w in kp.integration.strip.pruning_wrappers(model):
        mask = to_np(w.masks[0])
        assert int(mask.sum()) == int(to_np(kp.kept_count(mask.size, 0.8)))
