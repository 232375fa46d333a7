"""`prune_low_magnitude`: add pruning to a layer, a list or any Keras model."""

import contextlib
import re

import keras
from keras.src.models.functional import Functional

from keras_prune import registry
from keras_prune import schedules
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
    if isinstance(pruning_schedule, dict) and not (
        "class_name" in pruning_schedule and "config" in pruning_schedule
    ):
        table = [
            (re.compile(k), schedules.get(v))
            for k, v in pruning_schedule.items()
        ]

        def lookup(layer):
            for pattern, schedule in table:
                if pattern.fullmatch(layer.name):
                    return schedule
            return None

        return lookup
    schedule = schedules.get(pruning_schedule)
    return lambda layer: schedule


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
    NaN weights right after the step and adds `sparsity` to the logs).

    Args:
        to_prune: Layer, list of layers, or `keras.Model`.
        pruning_schedule: A `PruningSchedule`, or a dict mapping layer names
            or regexes (full match) to schedules; layers matching no key are
            not pruned. Default `ConstantSparsity(0.5, 0)`.
        block_size: `(1, 1)`; block sparsity is not implemented yet.
        block_pooling_type: `'AVG'` or `'MAX'`.
        pruning_policy: Optional `PruningPolicy`-like object with
            `allow_pruning(layer)` and `ensure_model_supports_pruning(model)`.
        sparsity_m_by_n: `None`; N:M sparsity is not implemented yet.
        layers: For models: which layers to prune: a name or regex, a list of
            them, or a callable `layer -> bool`. Default: all prunable.
        skip_unsupported: For models: leave layers whose weights keras-prune
            does not know dense, instead of raising.
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

    def wrap_params(layer):
        return dict(
            pruning_schedule=schedule_for(layer),
            block_size=block_size,
            block_pooling_type=block_pooling_type,
            sparsity_m_by_n=sparsity_m_by_n,
            skip_unsupported=skip_unsupported,
        )

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
        if old.built and new.built:
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
    with _unlocked(getattr(parent, "_tracker", None)):
        for attr, value in list(vars(parent).items()):
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
