"""`prune_low_magnitude`: add pruning to a layer, a list or any Keras model."""

import contextlib
import inspect
import uuid

import keras
from keras.src.models.functional import Functional

from keras_prune import groups
from keras_prune import registry
from keras_prune import spec as _spec
from keras_prune.wrapper import PruneLowMagnitude


def is_graph_model(model):
    """Whether `model` is Sequential or Functional (not subclassed)."""
    return isinstance(model, (keras.Sequential, Functional))


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    layers=None,
    skip_unsupported=False,
    allocation="layer",
    max_sparsity=None,
    min_sparsity=None,
    pattern=None,
    **kwargs,
):
    """Adds magnitude pruning to a layer, a list of layers or a model.

    Same name and arguments as `tfmot.sparsity.keras.prune_low_magnitude`.

    - A **layer** is wrapped in `PruneLowMagnitude` (usable in
      `Sequential.add`); `**kwargs` go to the wrapper.
    - A **list** of layers gives a list: layers with prunable weights are
      wrapped, others returned as they are.
    - A **Sequential or Functional** model (nested models included) is copied,
      with its weights: every layer with prunable weights is wrapped, other
      layers (Dropout, BatchNormalization, ...) stay as they are. The model
      you pass is not changed, and the copy is not compiled.
    - A **subclassed** model is pruned **in place**: its sublayers held in
      attributes, lists and dicts (also inside custom layers) are replaced
      by wrappers, and the same model is returned. Save it with
      `save_weights` / `load_weights` after pruning a fresh instance.

    The step is the number of training batches completed: the first batch
    sees step 0, so `ConstantSparsity(0.5, begin_step=0)` prunes before the
    first weight update. No callback is needed (`UpdatePruningStep` reports
    NaN weights at the next batch and adds `sparsity` to the epoch logs).

    Args:
        to_prune: Layer, list of layers, or `keras.Model`.
        pruning_schedule: A `PruningSchedule`, or a dict mapping layer names
            or regexes (full match) to schedules or to float targets (a
            float `s` means `ConstantSparsity(s, 0)`); layers matching no key
            are not pruned. Default `ConstantSparsity(0.5, 0)`.
        block_size: `(rows, cols)`: prune whole blocks over the last two
            axes of each weight (tfmot's block sparsity, also for conv
            kernels). Default `(1, 1)`: single weights.
        block_pooling_type: `'AVG'` or `'MAX'`: block score from `|w|`.
        pruning_policy: Optional `PruningPolicy`-like object with
            `allow_pruning(layer)` and `ensure_model_supports_pruning(model)`.
        sparsity_m_by_n: `(m, n)`, e.g. `(2, 4)`: `m` zeros in every `n`
            consecutive weights along the input-channel axis, recomputed at
            each update. The schedule's sparsity `s` makes a fraction
            `s / (m / n)` of the groups N:M (all once `s >= m / n`), so
            `PolynomialDecay(0, 0.5, ...)` moves to 2:4 gradually.
        layers: For models: which layers to prune: a name or regex, a list of
            them, or a callable `layer -> bool`. Default: all prunable.
        skip_unsupported: For models: leave layers whose weights keras-prune
            does not know dense, instead of raising.
        allocation: `'layer'` (default, tfmot's): every pruned weight reaches
            the schedule's sparsity. `'global'`: one magnitude threshold
            across all pruned weights of the model; exactly
            `max(round(N * (1 - s)), 1)` of all N pruned weights are kept.
            `'erk'`: Erdős–Rényi-Kernel budgets (larger layers sparser), the
            total equally exact. Needs a single schedule.
        max_sparsity: With `'global'`: a cap per layer (float, or a dict of
            layer name/regex -> float), e.g. `{"predictions": 0.8, ".*":
            0.98}`; the total stays exact while the caps allow it.
        min_sparsity: With `'global'`: a floor per layer, same forms.
        pattern: `None` or `'channel'`: prune whole output channels (Dense
            units, Conv filters) with the smallest L2 norms.
        **kwargs: For a single layer, passed to `PruneLowMagnitude`.

    Returns:
        The wrapped layer, the list, or the pruned model.

    Every argument is validated by `keras_prune.PruningSpec`.

    Raises:
        TypeError: `to_prune` is not a layer, list or model; or an unknown
            keyword (the message names the closest valid one). For a single
            layer, the keywords of `keras.layers.Layer` (`name`, `dtype`,
            `trainable`, ...) go to the wrapper.
        ValueError: a layer cannot be pruned, or a setting is impossible
            (the message says how to fix it): `max_sparsity` below
            `min_sparsity`; a `block_size` or `sparsity_m_by_n` that cannot
            prune any weight of a layer (a single block, or N:M groups
            whose zeros all fall in the padding: 0% sparsity), named in the
            message; leave that layer out with `layers=`. When the pattern
            fits only some weights of one layer (e.g. a recurrent cell's
            kernel but not its recurrent kernel), one warning names them.

    Example:

    ```python
    pruned = keras_prune.prune_low_magnitude(
        model,
        pruning_schedule=keras_prune.PolynomialDecay(0.0, 0.9, 0, 1000),
    )
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, y, epochs=2, callbacks=[keras_prune.UpdatePruningStep()])
    final = keras_prune.strip_pruning(pruned)
    ```
    """
    is_layer = isinstance(to_prune, keras.layers.Layer) and not isinstance(
        to_prune, keras.Model
    )
    # A single layer's extra keywords go to the wrapper (name, dtype, ...);
    # for models and lists there are none.
    own = set(inspect.signature(prune_low_magnitude).parameters)
    _spec.check_keywords(
        "prune_low_magnitude",
        kwargs,
        own | _spec.layer_keywords() if is_layer else own - {"kwargs"},
    )
    spec = _spec.PruningSpec(
        pruning_schedule=pruning_schedule,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        pattern=pattern,
        skip_unsupported=skip_unsupported,
        allocation=allocation,
        max_sparsity=max_sparsity,
        min_sparsity=min_sparsity,
        layers=layers,
        pruning_policy=pruning_policy,
    )
    schedule_for = spec.schedule_for
    select = spec.selects
    allow = (
        pruning_policy.allow_pruning if pruning_policy is not None else None
    )
    group_id = None
    if allocation != "layer":
        if is_layer:
            raise ValueError(
                f"allocation={allocation!r} shares one budget across layers: "
                "pass a model or a list of layers, not a single layer."
            )
        group_id = uuid.uuid4().hex
    counter = iter(range(1 << 31))

    def wrap_params(layer):
        params = spec.for_layer(layer)
        if params is None:  # no schedule for this layer
            return {"pruning_schedule": None}
        if group_id is not None:
            params.update(
                pruning_group={
                    "id": group_id,
                    "size": None,
                    "index": next(counter),
                    "allocation": allocation,
                },
            )
        return params

    try:
        return _prune(
            to_prune, wrap_params, select, schedule_for, allow,
            pruning_policy, skip_unsupported, kwargs,
        )
    finally:
        if group_id is not None:
            groups.PruningGroup.seal(group_id)


def _prune(
    to_prune, wrap_params, select, schedule_for, allow, pruning_policy,
    skip_unsupported, kwargs,
):
    def wants(layer):
        if isinstance(layer, PruneLowMagnitude):
            return False
        if isinstance(layer, keras.layers.InputLayer):
            return False
        if not select(layer) or schedule_for(layer) is None:
            return False
        if allow is not None and not allow(layer):
            return False
        return registry.has_prunable_weights(layer, skip_unsupported)

    if isinstance(to_prune, keras.Model):
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        if is_graph_model(to_prune):
            return _prune_graph_model(to_prune, wants, wrap_params)
        return _prune_in_place(to_prune, wants, wrap_params)
    if isinstance(to_prune, (list, tuple)):
        return [
            PruneLowMagnitude(layer, **wrap_params(layer))
            if isinstance(layer, keras.layers.Layer) and wants(layer)
            else layer
            for layer in to_prune
        ]
    if isinstance(to_prune, keras.layers.Layer):
        if isinstance(to_prune, PruneLowMagnitude):
            return to_prune
        params = wrap_params(to_prune)
        if params["pruning_schedule"] is None:
            raise ValueError(
                f"No schedule in `pruning_schedule` matches layer "
                f"{to_prune.name!r}."
            )
        return PruneLowMagnitude(to_prune, **params, **kwargs)
    raise TypeError(
        "`prune_low_magnitude` can only prune a keras.layers.Layer, a list "
        "of layers, or a keras.Model (Sequential, Functional or subclassed). "
        f"You passed an object of type: {type(to_prune).__name__}."
    )


def _clone_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _prune_graph_model(model, wants, wrap_params):
    pairs = []

    def clone(layer):
        if isinstance(layer, PruneLowMagnitude):
            new = PruneLowMagnitude.from_config(layer.get_config())
            pairs.append((layer, new))
            return new
        new = _clone_layer(layer)
        pairs.append((layer, new))
        if wants(layer):
            return PruneLowMagnitude(new, **wrap_params(layer))
        return new

    pruned = keras.models.clone_model(
        model, clone_function=clone, recursive=True
    )
    for old, new in pairs:
        if getattr(old, "built", False) and getattr(new, "built", False):
            new.set_weights(old.get_weights())
    return pruned


def _prune_in_place(model, wants, wrap_params):
    if not model.built:
        raise ValueError(
            f"Subclassed model {model.name!r} is not built. Call it once on "
            "data (or `model.build(input_shape)`) before pruning, so that its "
            "weights exist."
        )

    def wrap(layer):
        if isinstance(layer, keras.Model) and layer._flatten_layers(
            include_self=False
        ):
            return None  # a nested model: look inside it
        if not wants(layer):
            return None
        wrapper = PruneLowMagnitude(layer, **wrap_params(layer))
        wrapper.build(None)
        return wrapper

    replace_sublayers(model, wrap)
    return model


def replace_sublayers(parent, fn, _seen=None):
    """Replaces, in place, the sublayers a layer holds in attributes.

    Walks public attributes holding layers, lists of layers and dicts of
    layers, recursively. `fn(layer)` returns the replacement, or None to keep
    the layer and look inside it. Keras' layer tracking is updated.

    Args:
        parent: A layer or subclassed model.
        fn: Callable `layer -> layer or None`.
    """
    seen = set() if _seen is None else _seen
    if id(parent) in seen:
        return
    seen.add(id(parent))
    attributes = dict(vars(parent))
    # On torch, layers held in attributes live in `nn.Module._modules`.
    attributes.update(getattr(parent, "_modules", None) or {})
    with _unlocked(getattr(parent, "_tracker", None)):
        for attr, value in attributes.items():
            if attr.startswith("_"):
                continue
            if isinstance(value, list):
                items = list(enumerate(value))
            elif isinstance(value, dict):
                items = list(value.items())
            else:
                items = [(None, value)]
            for key, item in items:
                if not isinstance(item, keras.layers.Layer):
                    continue
                new = fn(item)
                if new is None or new is item:
                    replace_sublayers(item, fn, seen)
                    continue
                if key is None:
                    setattr(parent, attr, new)
                else:
                    value[key] = new
                    if new not in parent._layers:
                        parent._layers.append(new)
                for i, tracked in enumerate(list(parent._layers)):
                    if tracked is item:
                        del parent._layers[i]
                        break


@contextlib.contextmanager
def _unlocked(tracker):
    if tracker is None:
        yield
        return
    was_locked = tracker.locked
    tracker.unlock()
    try:
        yield
    finally:
        if was_locked:
            tracker.lock()


def prune_scope():
    """tfmot compatibility: a scope in which pruned models can be loaded.

    Everything keras-prune saves is registered with Keras, so importing
    `keras_prune` is enough; this returns a `CustomObjectScope` for code
    written for tfmot.

    Returns:
        A `keras.saving.CustomObjectScope`.

    Example:

    ```python
    with keras_prune.prune_scope():
        model = keras.saving.load_model("pruned.keras")
    ```
    """
    return keras.saving.CustomObjectScope(
        {"PruneLowMagnitude": PruneLowMagnitude}
    )
