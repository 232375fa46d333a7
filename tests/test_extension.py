"""The extension point: a user's own `Score`, `Pattern` and `Allocation`.

The parts are defined in tests/_user_parts.py.

Prunes a Functional model (mask updates driven from the host by
`UpdatePruningStep`) and a subclassed one (in-step updates) with them,
asserts every mask after every step against a NumPy reference, saves a
`.keras` file, reloads it in a new process (where only importing the
user's module registers the parts) and resumes training there.
"""

import os
import subprocess
import sys

import _user_parts as user
import keras
import numpy as np
import pytest

import keras_prune

TESTS = os.path.dirname(os.path.abspath(__file__))

_RESUME = """
import sys
import _user_parts
_user_parts.resume(sys.argv[1], sys.argv[2], sys.argv[3] == "host", sys.argv[4])
"""


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_user_score_and_pattern_train_save_reload_resume(kind, tmp_path):
    model = user.functional() if kind == "functional" else user.subclassed()
    host = kind == "functional"
    model.compile(keras.optimizers.SGD(0.05), "mse")
    wrappers = keras_prune.integration.state.pruning_wrappers(model)
    assert len(wrappers) == 2
    for w in wrappers:
        assert type(w.pruning_spec.mask_pattern) is user.TopKPerRow
        assert w.score == user.OutputWeighted(user.ALPHA)
        assert w.get_config()["pattern"]["registered_name"] == (
            "user_parts>TopKPerRow"
        )

    final = user.train_checked(model, 3, host)
    # The masks keep k of every row, not k of the tensor.
    for _, triples in final:
        for _, m, _ in triples:
            row_counts = m.reshape(-1, m.shape[-1]).sum(axis=1)
            assert len(set(row_counts.tolist())) == 1, row_counts

    path = str(tmp_path / "model.keras")
    model.save(path)
    saved = {}
    for i, (step, triples) in enumerate(user.state(model)):
        saved[f"step_{i}"] = step
        for j, (v, m, _) in enumerate(triples):
            saved[f"w_{i}_{j}"] = v
            saved[f"m_{i}_{j}"] = m
    expected = str(tmp_path / "expected.npz")
    np.savez(expected, **saved)
    out = str(tmp_path / "out.npz")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [TESTS] + [p for p in sys.path if p and os.path.isdir(p)]
        ),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESUME,
            path,
            expected,
            "host" if host else "in-step",
            out,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    got = dict(np.load(out))
    assert got["steps"].tolist() == [6, 6]
    # At the schedule's end (step 5) every row of d1 (12 outputs) keeps
    # kept_count(12, 0.75) = 3, every row of d2 (4 outputs) keeps 1.
    assert int(got["kept_0_0"]) == 8 * 3
    assert int(got["kept_1_0"]) == 12 * 1


def test_user_pattern_prune_once_matches_reference():
    model = user.functional()
    wrappers = keras_prune.integration.state.pruning_wrappers(model)
    before = user.state(model)
    for w in wrappers:
        w.update_masks_now(0.6)
    for (_, old), (_, new) in zip(before, user.state(model)):
        for (v, m, _), (_, m_new, t_new) in zip(old, new):
            mask, threshold = user.reference(v, m, np.float32(0.6))
            np.testing.assert_array_equal(m_new, mask)
            assert t_new.tobytes() == np.float32(threshold).tobytes()


def test_user_allocation_shares_a_group_and_round_trips(tmp_path):
    def model():
        inputs = keras.Input((8,))
        h = keras.layers.Dense(12, name="d1")(inputs)
        return keras.Model(inputs, keras.layers.Dense(4, name="d2")(h))

    pruned = keras_prune.prune_once(model(), 0.7, allocation=user.Uniform())
    wrappers = keras_prune.integration.state.pruning_wrappers(pruned)
    assert wrappers[0]._group is wrappers[1]._group
    for w in wrappers:
        (mask,) = [user.to_np(m) for m in w.masks]
        weight = user.to_np(w.pruned_weights[0])
        expected = keras_prune.magnitude_mask(weight, 0.7)
        np.testing.assert_array_equal(mask, expected)
    path = str(tmp_path / "uniform.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    again = keras_prune.integration.state.pruning_wrappers(loaded)
    assert again[0]._group is again[1]._group
    assert again[0]._group.allocation == user.Uniform()
    again[0].update_masks_now(0.9)
    for w in again:
        assert int(user.to_np(w.masks[0]).sum()) == int(
            user.to_np(
                keras_prune.kept_count(
                    w.masks[0].shape[0] * w.masks[0].shape[1], 0.9
                )
            )
        )


def test_user_parts_refused_where_they_cannot_apply():
    with pytest.raises(ValueError, match="allocation='global'"):
        keras_prune.prune_low_magnitude(
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
            pattern=user.TopKPerRow(),
            allocation="global",
        )
    with pytest.raises(ValueError, match="cannot be combined"):
        keras_prune.PruningSpec(pattern=user.TopKPerRow(), block_size=(1, 2))
    with pytest.raises(TypeError, match="keras_prune.Score"):
        keras_prune.PruningSpec(score=lambda w: w)
