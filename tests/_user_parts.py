"""A user's own score, pattern and models, as `docs/extending.md` shows.

Importable (tests/ on PYTHONPATH) so that a new process can load models
saved with these parts: `test_extension.py` runs `resume` in a subprocess.
"""

import keras
import numpy as np
from keras import ops

import keras_prune
from keras_prune.core import schedules


@keras.saving.register_keras_serializable(package="user_parts")
class OutputWeighted(keras_prune.Score):
    """`|w|` times `1 + alpha * j` along the weight's last axis (the
    outputs of a Dense kernel): later outputs are worth more. A score that
    depends on the weight (its shape) and not only on its values."""

    def __init__(self, alpha=0.5):
        self.alpha = float(alpha)

    def __call__(self, value, weight, layer):
        factors = factors_for(tuple(weight.shape), self.alpha)
        return ops.multiply(ops.abs(value), ops.convert_to_tensor(factors))

    def get_config(self):
        return {"alpha": self.alpha}


def factors_for(shape, alpha):
    """The float32 factors of `OutputWeighted`, broadcastable to `shape`."""
    return (1.0 + alpha * np.arange(shape[-1])).astype(np.float32)


@keras.saving.register_keras_serializable(package="user_parts")
class TopKPerRow(keras_prune.Pattern):
    """Keeps the `kept_count(n, s)` largest scores of every row (along the
    last axis), ties by position: in a Dense kernel `(in, out)`, every
    input keeps the same number of outputs."""

    def mask(self, scores, sparsity):
        shape = tuple(scores.shape)
        length = shape[-1]
        rows = ops.reshape(scores, (-1, length))
        k = keras_prune.kept_count(length, sparsity)
        a = ops.expand_dims(rows, -1)  # entry i
        b = ops.expand_dims(rows, -2)  # entry j
        index = ops.arange(length)
        earlier = ops.less(ops.expand_dims(index, 0), ops.expand_dims(index, 1))
        beats = ops.logical_or(
            ops.greater(b, a), ops.logical_and(ops.equal(b, a), earlier)
        )
        rank = ops.sum(ops.cast(beats, "int32"), axis=-1)
        keep = ops.less(rank, k)
        threshold = ops.min(ops.where(keep, rows, float("inf")))
        n_bad = ops.sum(ops.cast(ops.logical_not(ops.isfinite(rows)), "int32"))
        return ops.reshape(keep, shape), threshold, n_bad


SCHEDULE = keras_prune.PolynomialDecay(
    initial_sparsity=0.25,
    final_sparsity=0.75,
    begin_step=0,
    end_step=5,
    frequency=1,
)
ALPHA = 0.5


def pruning_arguments():
    return dict(
        pruning_schedule=SCHEDULE,
        pattern=TopKPerRow(),
        score=OutputWeighted(ALPHA),
    )


@keras.saving.register_keras_serializable(package="user_parts")
class PrunedNet(keras.Model):
    """A subclassed model whose layers are pruned with the user's parts."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1 = keras_prune.prune_low_magnitude(
            keras.layers.Dense(12, name="d1"), **pruning_arguments()
        )
        self.d2 = keras_prune.prune_low_magnitude(
            keras.layers.Dense(4, name="d2"), **pruning_arguments()
        )

    def call(self, x, training=None):
        h = ops.relu(self.d1(x, training=training))
        return self.d2(h, training=training)


def functional():
    inputs = keras.Input((8,))
    h = keras.layers.Dense(12, activation="relu", name="d1")(inputs)
    outputs = keras.layers.Dense(4, name="d2")(h)
    model = keras.Model(inputs, outputs)
    return keras_prune.prune_low_magnitude(model, **pruning_arguments())


def subclassed():
    model = PrunedNet()
    model(ops.zeros((1, 8)))
    return model


def data():
    rng = np.random.RandomState(0)
    return (
        rng.normal(size=(16, 8)).astype("float32"),
        rng.normal(size=(16, 4)).astype("float32"),
    )


def reference(weight, old_mask, sparsity, alpha=ALPHA):
    """NumPy `(mask, threshold)` of `TopKPerRow` over `OutputWeighted`."""
    value = np.where(old_mask, weight, np.float32(0)).astype(np.float32)
    scores = np.abs(value) * factors_for(weight.shape, alpha)
    rows = scores.reshape(-1, weight.shape[-1])
    k = keras_prune.core.masks.host_kept_count(rows.shape[1], sparsity)
    keep = np.zeros(rows.shape, bool)
    for r, row in enumerate(rows):
        keep[r, np.argsort(-row, kind="stable")[:k]] = True
    return keep.reshape(weight.shape), np.float32(rows[keep].min())


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x))


def state(model):
    """Per wrapper: `(step, [(weight, mask, threshold), ...])`."""
    return [
        (
            int(to_np(w.pruning_step)),
            [(to_np(v), to_np(m), to_np(t)) for v, m, t in w.pruning_vars],
        )
        for w in keras_prune.integration.state.pruning_wrappers(model)
    ]


def train_checked(model, steps, host):
    """Trains `steps` single-batch steps; after each, asserts every mask
    equals the NumPy reference at the schedule's sparsity of that step,
    from the weights and masks before it (`host`: `UpdatePruningStep`)."""
    x, y = data()
    for _ in range(steps):
        before = state(model)
        model.fit(
            x,
            y,
            batch_size=len(x),
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[keras_prune.UpdatePruningStep()] if host else [],
        )
        after = state(model)
        for (step, old), (new_step, new) in zip(before, after):
            assert new_step == step + 1, (step, new_step)
            should, sparsity = schedules.evaluate(SCHEDULE, step)
            for (w, m, t), (_, m_new, t_new) in zip(old, new):
                if should:
                    mask, threshold = reference(w, m, sparsity)
                else:
                    mask, threshold = m, t
                np.testing.assert_array_equal(m_new, mask)
                assert t_new.tobytes() == np.float32(threshold).tobytes()
    return state(model)


def resume(path, expected, host, out):
    """In a new process: load, compare with `expected` (npz), train on."""
    model = keras.saving.load_model(path)
    wrappers = keras_prune.integration.state.pruning_wrappers(model)
    assert len(wrappers) == 2
    for w in wrappers:
        assert type(w.pruning_spec.mask_pattern) is TopKPerRow
        assert w.pruning_spec.score == OutputWeighted(ALPHA)
    saved = dict(np.load(expected))
    for i, (step, triples) in enumerate(state(model)):
        assert step == int(saved[f"step_{i}"])
        for j, (w, m, _) in enumerate(triples):
            np.testing.assert_array_equal(w, saved[f"w_{i}_{j}"])
            np.testing.assert_array_equal(m, saved[f"m_{i}_{j}"])
    final = train_checked(model, 3, host)
    np.savez(
        out,
        **{
            f"kept_{i}_{j}": int(m.sum())
            for i, (_, triples) in enumerate(final)
            for j, (_, m, _) in enumerate(triples)
        },
        steps=np.array([s for s, _ in final]),
    )


@keras.saving.register_keras_serializable(package="user_parts")
class Uniform(keras_prune.Allocation):
    """A shared group in which every tensor keeps `kept_count(n, s)`."""

    def counts(self, targets, sparsity, histograms):
        return ops.stack(
            [
                keras_prune.kept_count(int(np.prod(t.weight.shape)), sparsity)
                for t in targets
            ]
        )
