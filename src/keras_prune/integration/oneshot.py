"""`prune_once`: prune a trained model now, without training."""

import inspect
import warnings

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.core import schedules
from keras_prune.integration import spec as _spec
from keras_prune.integration import state
from keras_prune.integration.prune import prune_low_magnitude
from keras_prune.integration.state import pruning_wrappers


@keywords_checked
def prune_once(
    model,
    sparsity,
    allocation="layer",
    pruning_schedule=None,
    **kwargs,
):
    """Prunes a trained model now, to `sparsity`, without training.

    tfmot's internal `prune_for_benchmark`, made public. The result is a
    pruned model (a copy for Sequential/Functional, the same object for
    subclassed models) whose masks are already computed: evaluate it,
    fine-tune it (masks stay fixed unless `pruning_schedule` is given), or
    `strip_pruning` it.

    Masks are fixed by default through
    `ConstantSparsity(sparsity, begin_step=0, end_step=0)`: the first
    training batch recomputes them at the same sparsity from the already
    pruned weights, which selects the same weights (only weights that are
    exactly zero could be exchanged for other exact zeros), and never again.

    Args:
        model: A built `keras.Model` (or a layer or list of layers).
        sparsity: Fraction to prune, in `[0, 1)`: of each weight tensor with
            `allocation='layer'`, of all pruned weights together with
            `'global'` or `'erk'`.
        allocation: `'layer'`, `'global'` or `'erk'`, as in
            `prune_low_magnitude`.
        pruning_schedule: Optional schedule for fine-tuning afterwards.
        **kwargs: Any other argument of `prune_low_magnitude`
            (`block_size`, `sparsity_m_by_n`, `pattern`, `layers`,
            `max_sparsity`, `pruning_policy`, ...).

    Returns:
        The pruned model, with masks applied in every forward pass and
        its pruned weights already set to exactly zero. For a Sequential
        or Functional model the layers are copies and `model` keeps its
        dense weights (as do models with a constructor config, like
        Keras-Hub's, that `prune_low_magnitude` rebuilds). A subclassed
        model, a layer or a list of layers is pruned in place: the
        result holds `model`'s own layers, whose pruned weights are now
        zero; keep `model.get_weights()` first to restore a dense copy
        (`set_weights` on the stripped model).

    Raises:
        TypeError: an unknown keyword (naming the closest valid one).
        ValueError: `sparsity` is NaN or outside `[0, 1)`, or another
            argument is invalid (see `prune_low_magnitude`).

    Example:

    ```python
    pruned = keras_prune.prune_once(model, 0.9, allocation="global")
    pruned.compile(loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"])
    pruned.evaluate(x_test, y_test)
    small = keras_prune.strip_pruning(pruned)
    ```
    """
    valid = set(inspect.signature(prune_low_magnitude).parameters)
    valid |= set(inspect.signature(prune_once).parameters)
    valid -= {"to_prune", "kwargs"}
    if isinstance(model, keras.layers.Layer) and not isinstance(
        model, keras.Model
    ):
        valid |= _spec.layer_keywords()
    _spec.check_keywords("prune_once", kwargs, valid)
    sparsity = _spec.fraction(sparsity, "sparsity", optional=False)
    if pruning_schedule is None:
        if not np.float32(sparsity) < 1.0:  # also once rounded to float32
            raise ValueError(
                "prune_once: `sparsity` must be below 1 (the schedule that "
                f"keeps the masks fixed needs a sparsity in [0, 1), also "
                f"once rounded to float32), got {sparsity}; try 0.99."
            )
        pruning_schedule = schedules.ConstantSparsity(
            sparsity, begin_step=0, end_step=0
        )
    with warnings.catch_warnings():
        # prune_once does not train: how `fit` would call the model is moot.
        warnings.simplefilter("ignore", state.TrainingNotPassedWarning)
        pruned = prune_low_magnitude(
            model,
            pruning_schedule=pruning_schedule,
            allocation=allocation,
            **kwargs,
        )
    # A list of layers gives a list (wrappers and layers left unwrapped); a
    # model or a layer, the wrappers in it (a wrapper is its own).
    wrappers = []
    for item in pruned if isinstance(pruned, list) else [pruned]:
        wrappers += [w for w in pruning_wrappers(item) if w not in wrappers]
    if not wrappers:
        raise ValueError(
            "prune_once found no layer to prune: the model has no Dense, "
            "convolution, embedding, recurrent or attention weights (or "
            "`layers=` matched none)."
        )
    done = set()
    for wrapper in wrappers:
        if not wrapper.built and wrapper.layer.built:
            # A built layer (or list of layers) given on its own: its
            # weights exist, so its masks can be made from them.
            wrapper.build(None)
        if not wrapper.built:
            raise ValueError(
                f"Layer {wrapper.layer.name!r} is not built: call the model "
                "on data (or build it) before prune_once."
            )
        group = wrapper._group
        if group is not None and id(group) in done:
            continue
        wrapper.update_masks_now(sparsity)
        if group is not None:
            done.add(id(group))
    # The stored weights hold the result too, as tfmot's
    # `prune_for_benchmark` leaves them: reading a pruned weight (or
    # `model_sparsity`) right away gives the sparsity asked for, not 0, and
    # code that reads a variable outside its layer's call (Keras-Hub's
    # Gemma3n reads its tied embedding table for the LM head) sees the
    # pruned weights too.
    for wrapper in wrappers:
        wrapper.apply_masks()
    return pruned
