"""Global/ERK groups are linked from the model that holds the wrappers.

Wrappers made from configs (loading, cloning) share their group's id with
every other copy of the same pruned model. Each model must get its own
group, whatever the order in which the copies' wrappers were created, and
compute the masks the original computes.
"""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.integration import groups
from keras_prune.integration.strip import pruning_wrappers

SHAPES = {"a": (6, 10), "b": (10, 8), "c": (8, 3)}


def make_model(seed):
    rng = np.random.RandomState(seed)
    model = keras.Sequential(
        [keras.Input((6,))]
        + [keras.layers.Dense(s[1], name=n) for n, s in SHAPES.items()]
    )
    for layer in model.layers:
        layer.kernel.assign(rng.randn(*SHAPES[layer.name]).astype("float32"))
    return model


def masks_of(model):
    return [
        np.asarray(keras.ops.convert_to_numpy(w.masks[0]))
        for w in pruning_wrappers(model)
    ]


def group_of(model):
    found = {id(w._group) for w in pruning_wrappers(model)}
    assert len(found) == 1
    return pruning_wrappers(model)[0]._group


@pytest.fixture(scope="module", params=["global", "erk"])
def original(request):
    """A pruned model, and its masks after an update to 70%."""
    pruned = keras_prune.prune_low_magnitude(
        make_model(0),
        keras_prune.ConstantSparsity(0.5, 0),
        allocation=request.param,
    )
    pruned(np.zeros((1, 6), "float32"))
    weights = pruned.get_weights()
    wrappers = pruning_wrappers(pruned)
    wrappers[0].update_masks_now(0.7)
    expected = masks_of(pruned)
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    assert sum(int(m.sum()) for m in expected) == int(
        keras_prune.kept_count(total, 0.7)
    )
    return pruned, weights, expected


def test_copies_made_in_interleaved_order_keep_separate_groups(original):
    pruned, weights, expected = original
    configs = [w.get_config() for w in pruning_wrappers(pruned)]
    # Wrappers of two copies, created alternately (as two loads or clones
    # running one layer at a time would).
    first, second = [], []
    for config in configs:
        first.append(keras_prune.PruneLowMagnitude.from_config(config))
        second.append(keras_prune.PruneLowMagnitude.from_config(config))
    copies = [
        keras.Sequential([keras.Input((6,))] + wrappers)
        for wrappers in (first, second)
    ]
    for copy in copies:
        copy.set_weights(weights)
        copy(np.zeros((1, 6), "float32"))  # the model's call links it
    a, b = group_of(copies[0]), group_of(copies[1])
    assert a is not b and a is not group_of(pruned)
    assert a.members == first and b.members == second
    first[1].update_masks_now(0.7)  # any member updates its whole group
    for got, want in zip(masks_of(copies[0]), expected):
        np.testing.assert_array_equal(got, want)
    # The other copy is untouched (the weights' masks start all ones).
    assert all(bool(m.all()) for m in masks_of(copies[1]))
    second[2].update_masks_now(0.7)
    for got, want in zip(masks_of(copies[1]), expected):
        np.testing.assert_array_equal(got, want)


def test_clones_and_loaded_copies_keep_separate_groups(original, tmp_path):
    pruned, weights, expected = original
    path = str(tmp_path / "m.keras")
    reference = keras.models.clone_model(pruned)
    reference.set_weights(weights)
    reference.save(path)
    copies = [
        keras.saving.load_model(path),
        keras.models.clone_model(reference),
        keras.saving.load_model(path),
        keras.models.clone_model(reference),
    ]
    for copy in copies:
        copy.set_weights(weights)
        groups.link(copy)
    seen = {id(group_of(c)) for c in copies + [reference, pruned]}
    assert len(seen) == 6
    for copy in copies[::-1]:
        pruning_wrappers(copy)[-1].update_masks_now(0.7)
        for got, want in zip(masks_of(copy), expected):
            np.testing.assert_array_equal(got, want)


def test_a_clone_trained_by_fit_links_its_groups(original):
    """No explicit link: the first call `fit` makes links the groups."""
    pruned, weights, _ = original
    clone = keras.models.clone_model(pruned)
    clone.set_weights(weights)
    clone.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.random.RandomState(1).randn(4, 6).astype("float32")
    clone.fit(x, np.zeros((4, 3), "float32"), batch_size=4, verbose=0)
    assert group_of(clone) is not group_of(pruned)
    assert group_of(clone).members == pruning_wrappers(clone)
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    # ConstantSparsity(0.5, 0): the step-0 update prunes the clone to 50%.
    assert sum(int(m.sum()) for m in masks_of(clone)) == int(
        keras_prune.kept_count(total, 0.5)
    )


def test_a_layer_taken_out_of_its_model_reports_its_group():
    pruned = keras_prune.prune_low_magnitude(make_model(0), allocation="global")
    config = pruning_wrappers(pruned)[0].get_config()
    lone = keras_prune.PruneLowMagnitude.from_config(config)
    lone.build((None, 6))
    with pytest.raises(ValueError, match="has 1 of its 3 layers"):
        lone.update_masks_now(0.5)
