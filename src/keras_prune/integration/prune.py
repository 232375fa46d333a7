"""`prune_low_magnitude`: add pruning to a layer, a list or any Keras model."""

import inspect
import uuid
import warnings

import keras

from keras_prune._keywords import keywords_checked
from keras_prune.integration import groups
from keras_prune.integration import inplace
from keras_prune.integration import registry
from keras_prune.integration import rewrite
from keras_prune.integration import spec as _spec
from keras_prune.integration import state
from keras_prune.integration.wrapper import NotPrunableError
from keras_prune.integration.wrapper import PruneLowMagnitude

is_graph_model = rewrite.is_graph_model


@keywords_checked
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
    score=None,
    **kwargs,
):
    """Adds magnitude pruning to a layer, a list of layers or a model.

    Same name and arguments as `tfmot.sparsity.keras.prune_low_magnitude`.

    - A **layer** is wrapped in `PruneLowMagnitude` (usable in
      `Sequential.add`); `**kwargs` go to the wrapper.
    - A **list** of layers gives a list: layers with prunable weights are
      wrapped, others returned as they are.
    - A **Sequential or Functional** model (nested models included, and
      their subclasses such as Keras-Hub tasks and backbones) is copied by
      its own config, as `keras.saving` would (custom layer classes need not
      be registered), with its weights. In the copy every layer with
      prunable weights is swapped for a wrapper in place: the graph calls
      it with the same arguments (keywords, masks, shared layers), the
      attributes that held the layer hold the wrapper, and the model keeps
      its class and methods (a `GPT2CausalLM` still has `generate()` and its
      `compile()` defaults). Other layers are never rebuilt or changed. The
      model you pass is not changed; the copy is **not compiled** (it has
      no `optimizer`, as a Keras 3 model never compiled): compile it before
      training.
    - A **subclassed** model is pruned **in place**: its sublayers held in
      attributes, lists and dicts (also inside custom layers) are replaced
      by wrappers, and the same model is returned.
    - A pruned model that is not a plain Sequential or Functional (a
      subclassed model, a Keras-Hub task or backbone) gets a subclass of its
      own class (same name, same methods: `isinstance` holds) whose config
      also records the wrappers, so that `model.save` then
      `keras.saving.load_model` gives it back pruned, with its masks and
      steps (`keras_prune` must be imported where it is loaded).
      `strip_pruning` gives it its own class back.
    - A model or list that is already pruned (every prunable layer
      wrapped), or a `PruneLowMagnitude` wrapper itself, raises
      `ValueError`: strip it first to prune it again with new settings. In a
      model or list mixing wrapped and plain layers (tfmot's idiom), the
      wrapped ones keep their own settings, with a warning.

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
            units, Conv filters) with the smallest L2 norms. Or a
            `keras_prune.Pattern`: `Block((r, c))`, `NM(m, n)`, `Channel()`,
            or your own (docs/extending.md).
        score: A `keras_prune.Score` ranking the weights; default
            `Magnitude()` (`|w|`). Your own: docs/extending.md.
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
        score=score,
    )
    spec.check_keys_used(to_prune)
    schedule_for = spec.schedule_for
    select = spec.selects
    allow = pruning_policy.allow_pruning if pruning_policy is not None else None
    group_id = None
    allocation = spec.allocation  # a built-in's name, or a user's part
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
                    "allocation": allocation
                    if isinstance(allocation, str)
                    else keras.saving.serialize_keras_object(allocation),
                },
            )
        return params

    try:
        return _prune(
            to_prune,
            wrap_params,
            select,
            schedule_for,
            allow,
            pruning_policy,
            skip_unsupported,
            kwargs,
        )
    finally:
        if group_id is not None:
            groups.PruningGroup.seal(group_id)


def _prune(
    to_prune,
    wrap_params,
    select,
    schedule_for,
    allow,
    pruning_policy,
    skip_unsupported,
    kwargs,
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
        if not to_prune.built:
            raise ValueError(
                f"Subclassed model {to_prune.name!r} is not built. Call it "
                "once on data (or `model.build(input_shape)`) before pruning, "
                "so that its weights exist."
            )
        pruned = _wrap_in_place(
            to_prune,
            _sublayer_candidates(to_prune, wants),
            wants,
            wrap_params,
        )
        if not state.takes_training(pruned) and state.pruning_wrappers(pruned):
            # `fit` then never trains its layers: say so now (UpdatePruningStep
            # raises after the first batch, host mode on JAX at the first).
            warnings.warn(
                state.training_message(pruned),
                state.TrainingNotPassedWarning,
                stacklevel=4,
            )
        return pruned
    if isinstance(to_prune, (list, tuple)):
        out = [
            PruneLowMagnitude(layer, **wrap_params(layer))
            if isinstance(layer, keras.layers.Layer) and wants(layer)
            else layer
            for layer in to_prune
        ]
        already = [l for l in to_prune if isinstance(l, PruneLowMagnitude)]
        if already:
            given = {id(l) for l in to_prune}
            swaps = [l for l in out if id(l) not in given]
            _check_not_pruned_twice(
                "The list of layers", already, swaps, stacklevel=3
            )
        return out
    if isinstance(to_prune, keras.layers.Layer):
        if isinstance(to_prune, PruneLowMagnitude):
            # tfmot raises too (its wrapper refuses a wrapper).
            raise ValueError(
                f"Layer {to_prune.name!r} is already a PruneLowMagnitude "
                f"wrapper (of {to_prune.layer.name!r}): it would keep its "
                "old schedule and settings. To prune with new settings, "
                "pass the wrapped layer itself (`wrapper.layer`)."
            )
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


def _prune_graph_model(model, wants, wrap_params):
    # A quantized layer, or one with LoRA enabled, is refused before the
    # copy with the error of `build`: the copy cannot rebuild some
    # quantized layers (float8's scales), and a LoRA layer's config has no
    # LoRA, so copying its weights failed with a bare `set_weights` length
    # error ("expecting 16 weights").
    for layer in rewrite.graph_layers(model):
        if any(
            getattr(sub, "quantization_mode", None) is not None
            or getattr(sub, "lora_enabled", False)
            for sub in layer._flatten_layers()
        ) and wants(layer):
            weights = registry.prunable_weights(layer, skip_unsupported=True)
            registry.check_masks_apply(
                layer.name,
                weights,
                [registry.owner_of(layer, w) for w in weights],
            )
    pruned = rewrite.copy_model(model)
    candidates = rewrite.graph_layers(pruned)
    if inplace.needs_pruned_class(pruned):
        candidates = _unshared(pruned, candidates, wants)
    return _wrap_in_place(pruned, candidates, wants, wrap_params)


def _unshared(model, layers, wants):
    """`layers` (graph candidates), each one that another layer also holds
    replaced by its sublayers, when they hold all of its prunable weights.

    A layer that another layer holds as an attribute may be used by it
    beyond a call: Keras-Hub's `Gemma3nMultimodalEmbeddingProcessor` holds
    the `Gemma3nTextModel` that the backbone calls, and calls its
    `embed_tokens` and its methods (`get_per_layer_inputs`). Wrapped whole,
    that layer becomes a `PruneLowMagnitude` there, which has none of those
    attributes (an `AttributeError` when pruned); left unwrapped for that
    holder, its weights would be used without their masks. Its sublayers
    are wrapped instead (looked into as in a subclassed model), so every
    use of them, through either holder, applies the masks. Only for models
    that save where their wrappers are (`inplace`); a layer with prunable
    weights of its own is still wrapped whole.
    """
    held = {
        id(sub)
        for parent in model._flatten_layers(include_self=False, recursive=True)
        if not isinstance(parent, keras.Model)  # a graph calls its layers
        for sub in parent._flatten_layers(include_self=False, recursive=False)
    }
    out = []
    for layer in layers:
        if (
            id(layer) in held
            and not isinstance(layer, PruneLowMagnitude)
            and wants(layer)
            and not _own_prunable_weights(layer)
        ):
            out.extend(_sublayer_candidates(layer, wants))
        else:
            out.append(layer)
    return out


def _own_prunable_weights(layer):
    """Prunable weights of `layer` that it creates itself (not a sublayer)."""
    return [
        w
        for w in registry.prunable_weights(layer, True)
        if registry.owner_of(layer, w) is layer
    ]


def _sublayer_candidates(model, wants):
    """Layers of a subclassed model to consider wrapping, outermost first.

    A layer `wants` accepts is a candidate (not looked into); nested models
    and other layers are looked into. Wrappers are candidates too (found to
    detect pruning twice).
    """
    out, seen = [], set()

    def visit(parent):
        for layer in parent._flatten_layers(
            include_self=False, recursive=False
        ):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, PruneLowMagnitude):
                out.append(layer)
            elif isinstance(layer, keras.Model) and layer._flatten_layers(
                include_self=False
            ):
                visit(layer)  # a nested model: look inside it
            elif wants(layer):
                out.append(layer)
            else:
                visit(layer)

    visit(model)
    return out


def _wrap_in_place(model, candidates, wants, wrap_params):
    """Wraps, in place, every candidate layer `wants` accepts."""
    already = [l for l in candidates if isinstance(l, PruneLowMagnitude)]
    chosen = [
        l
        for l in candidates
        if not isinstance(l, PruneLowMagnitude) and wants(l)
    ]
    chosen += _shared_sublayers(chosen, wants)
    chosen_ids = {id(l) for l in chosen}
    swaps = {}
    for layer in chosen:
        if _covered_by_sublayers(layer, chosen_ids):
            continue
        swaps[id(layer)] = PruneLowMagnitude(layer, **wrap_params(layer))
    if already:
        _check_not_pruned_twice(f"Model {model.name!r}", already, swaps)
    inplace.put_in_place(model, swaps)
    # A class whose own config cannot describe the wrappers (a subclassed
    # or Keras-Hub model) gets one that can: it saves and reloads pruned.
    return inplace.mark(model)


def _shared_sublayers(chosen, wants):
    """Sublayers with prunable weights that two or more `chosen` layers
    hold, outermost first: each is wrapped on its own.

    Keras-Hub's `RobertaMaskedLM` (DistilBERT's, XLM-RoBERTa's) gives its
    `MaskedLMHead` the backbone's token embedding, which the backbone's
    `TokenAndPositionEmbedding` holds too: wrapped with both holders, the
    one table had two masks, counted twice by an `allocation='global'`
    budget. Wrapped on its own, both holders call its wrapper (one mask);
    a holder left with nothing else to prune is not wrapped
    (`_covered_by_sublayers`), one with more leaves the table to the
    sublayer's wrapper (`registry.weights_to_wrap`). The same in a plain
    Functional or Sequential model whose custom layers share a sublayer
    (the copy shares it as the original does: `rewrite._share_as_in`).
    """
    chosen_ids = {id(l) for l in chosen}
    holders, subs = {}, {}
    for layer in chosen:
        # Not into a chosen layer it holds (BLIP-2's container and the
        # embedding in it): that one's sublayers are its own.
        stack = [layer]
        while stack:
            parent = stack.pop()
            for sub in parent._flatten_layers(
                include_self=False, recursive=False
            ):
                if id(sub) in chosen_ids or isinstance(sub, PruneLowMagnitude):
                    continue
                if id(layer) in holders.setdefault(id(sub), set()):
                    continue
                holders[id(sub)].add(id(layer))
                subs[id(sub)] = sub
                stack.append(sub)
    shared = [
        subs[i]
        for i, owners in holders.items()
        if len(owners) > 1 and wants(subs[i])
    ]
    inner = {
        id(sub)
        for layer in shared
        for sub in layer._flatten_layers(include_self=False, recursive=True)
    }
    return [layer for layer in shared if id(layer) not in inner]


def _covered_by_sublayers(layer, chosen_ids):
    """Whether every weight `layer` would prune belongs to a sublayer that is
    wrapped on its own.

    A layer that is both inside a wrapped container and called directly
    (Keras-Hub's OPT: `TokenAndPositionEmbedding` holds the
    `ReversibleEmbedding` the task also calls for its output projection)
    must get one mask, not two: two masks on one weight counted it twice
    in an `allocation='global'` budget. The sublayer is wrapped (the
    container then calls its wrapper); the container is not.
    """
    inner = [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if id(sub) in chosen_ids
    ]
    if not inner:
        return False
    covered = {
        id(v) for sub in inner for v in registry.prunable_weights(sub, True)
    }
    own = {id(v) for v in registry.prunable_weights(layer, True)}
    return own <= covered


def _check_not_pruned_twice(what, already, swaps, stacklevel=4):
    """Pruning a pruned model, list or layer again: raise, never keep
    schedules silently.

    A model or list whose layers are all wrapped already, or a wrapper
    itself, raises. A model or list mixing wrapped and plain layers
    (tfmot's idiom: some layers wrapped by hand with their own schedule)
    gets the plain ones wrapped; the wrapped ones keep their settings, with
    a warning that names them.

    Args:
        what: How the error names what was passed ("Model 'm'").
        already: The wrappers found in it.
        swaps: The layers being wrapped now (empty: nothing new to prune).
        stacklevel: The warning's, to point at the user's call.
    """
    names = [w.layer.name for w in already]
    shown = f"{names[:5]}{' ...' if len(names) > 5 else ''}"
    if not swaps:
        raise ValueError(
            f"{what} is already pruned: its layers {shown} are "
            "wrapped in PruneLowMagnitude and would keep their old schedule. "
            "To prune it again with new settings, call "
            "keras_prune.strip_pruning(model) first and prune the stripped "
            "model."
        )
    warnings.warn(
        f"{what}: layers {shown} are already wrapped in "
        "PruneLowMagnitude; they keep their own schedule and settings, and "
        "only the other layers get the ones given here.",
        stacklevel=stacklevel,
    )


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
