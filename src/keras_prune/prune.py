"""`prune_low_magnitude`: add pruning to a layer, a list or any Keras model."""

import contextlib
import re
import uuid

import keras
from keras.src.models.functional import Functional

from keras_prune import groups
from keras_prune import registry
from keras_prune import schedules
from keras_prune.wrapper import NotPrunableError
from keras_prune.wrapper import PruneLowMagnitude


def _selector(layers):
    """Turns `layers=` (names, regexes, predicate or None) into a predicate."""
    if layers is None:
        return lambda layer: True
    if callable(layers):
        return layers
    patterns = [layers] if isinstance(layers, str) else list(layers)
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(
                "`layers` must be a layer name or regex, a list of them, or a "
                f"callable layer -> bool; got an item {p!r}."
            )
    compiled = [re.compile(p) for p in patterns]
    return lambda layer: any(c.fullmatch(layer.name) for c in compiled)


def _schedule_for(pruning_schedule):
    """Turns a schedule or a `{name/regex: schedule}` mapping into a lookup.

    Returns a function `layer -> schedule or None` (None: do not prune).
    """
    if _is_mapping(pruning_schedule):
        table = _per_layer(pruning_schedule, _schedule_or_target)
        return lambda layer: _lookup(table, layer)
    schedule = schedules.get(pruning_schedule)
    return lambda layer: schedule


def _is_mapping(value):
    return isinstance(value, dict) and not (
        "class_name" in value and "config" in value
    )


def _schedule_or_target(value):
    """A schedule, or a float target: `ConstantSparsity(value, 0)`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return schedules.ConstantSparsity(float(value), 0)
    return schedules.get(value)


def _per_layer(mapping, convert):
    return [(re.compile(k), convert(v)) for k, v in mapping.items()]


def _lookup(table, layer, default=None):
    """The value of the first key (regex, full match) naming the layer."""
    for pattern, value in table:
        if pattern.fullmatch(layer.name):
            return value
    return default


def _bound_for(value, name):
    """Turns a float, None or `{name/regex: float}` into `layer -> float`."""
    if _is_mapping(value):
        table = _per_layer(value, float)
        return lambda layer: _lookup(table, layer)
    if value is not None and not isinstance(value, (int, float)):
        raise TypeError(
            f"`{name}` must be a float, None or a dict mapping layer names "
            f"or regexes to floats, got {value!r}."
        )
    return lambda layer: value


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

    Raises:
        TypeError: `to_prune` is not a layer, list or model.
        ValueError: a layer cannot be pruned (the message says how to fix it).

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
    if pruning_schedule is None:
        pruning_schedule = schedules.ConstantSparsity(0.5, 0)
    schedule_for = _schedule_for(pruning_schedule)
    select = _selector(layers)
    allow = (
        pruning_policy.allow_pruning if pruning_policy is not None else None
    )
    max_for = _bound_for(max_sparsity, "max_sparsity")
    min_for = _bound_for(min_sparsity, "min_sparsity")
    group_id = None
    if allocation != "layer":
        if allocation not in groups.ALLOCATIONS:
            raise ValueError(
                f"Unknown allocation {allocation!r}: use 'layer', 'global' "
                "or 'erk'."
            )
        if _is_mapping(pruning_schedule):
            raise ValueError(
                f"allocation={allocation!r} shares one budget across layers, "
                "so it needs one schedule, not a per-layer mapping. Use "
                "max_sparsity/min_sparsity for per-layer limits."
            )
        if isinstance(to_prune, keras.layers.Layer) and not isinstance(
            to_prune, keras.Model
        ):
            raise ValueError(
                f"allocation={allocation!r} shares one budget across layers: "
                "pass a model or a list of layers, not a single layer."
            )
        group_id = uuid.uuid4().hex
    elif max_sparsity is not None or min_sparsity is not None:
        raise ValueError(
            "max_sparsity/min_sparsity limit layers under a shared budget; "
            "with allocation='layer' give each layer its own schedule "
            "instead (pruning_schedule={name: schedule})."
        )
    counter = iter(range(1 << 31))

    def wrap_params(layer):
        params = dict(
            pruning_schedule=schedule_for(layer),
            block_size=block_size,
            block_pooling_type=block_pooling_type,
            sparsity_m_by_n=sparsity_m_by_n,
            pattern=pattern,
            skip_unsupported=skip_unsupported,
        )
        if group_id is not None:
            params.update(
                allocation=allocation,
                pruning_group={
                    "id": group_id,
                    "size": None,
                    "index": next(counter),
                    "allocation": allocation,
                },
                max_sparsity=max_for(layer),
                min_sparsity=min_for(layer),
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
    raise NotPrunableError(
        "`prune_low_magnitude` can only prune an object of the following "
        "types: keras.models.Sequential, keras functional model, "
        "keras.layers.Layer, list of keras.layers.Layer. You passed an "
        f"object of type: {type(to_prune).__name__}. (keras-prune also "
        "prunes subclassed keras.Model instances.)"
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
