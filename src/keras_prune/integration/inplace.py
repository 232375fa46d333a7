"""Models pruned in place: a class that saves and reloads their wrappers.

`prune_low_magnitude` prunes a subclassed model (a user's `keras.Model`
subclass) and a model whose class describes itself by its own constructor
arguments (every Keras-Hub task and backbone: `GPT2CausalLM`,
`BertTextClassifier`, ...) by swapping wrappers into the model object
(`rewrite.swap_layers`). The model keeps its class and methods
(`generate()`, its preprocessor, its `compile()` defaults), but that class's
`get_config()` describes the dense model: Keras could rebuild the dense
model from it, but not the wrappers, so `load_model` found no layer for the
saved masks.

So a model pruned in place gets a subclass of its own class, made once per
class (`pruned_class`): `type(base.__name__, (PrunedInPlace, base), {})`.
`isinstance(model, GPT2CausalLM)` still holds, `type(model).__name__` is
still `"GPT2CausalLM"`, and every method is the base class's except
`get_config` / `from_config`. Every such class is registered with Keras
under ONE name, `"keras_prune>PrunedModel"`, which resolves to the mixin
`PrunedInPlace` itself (registered at import): a process that imported
`keras_prune` loads the file whatever classes it made before, and one that
did not fails with Keras' usual "could not locate class" error.

The saved config (`PrunedInPlace.get_config`) is:

- `base`: the original class (`module`, `class_name`, `registered_name`),
  its own `get_config()` (`config`) and `build_config`: Keras' record of the
  dense model;
- `wrappers`: for each wrapper, the path from the model to the place that
  holds it (attribute names, list indices, dict keys, found breadth first
  in a fixed order), the class of the layer it wraps, and the wrapper's own
  config without its layer (schedule, pattern, group, ...).

`PrunedInPlace.from_config` rebuilds the dense model with the base class's
`from_config` (Keras' `deserialize_keras_object` of the `base` record, which
also builds it from `build_config`), wraps the layer found at each path
with the recorded settings (`swap_layers`, as pruning did), links the
pruning groups of `allocation='global'` / `'erk'` (`groups.link`), and
gives the model its pruned class. The model's object tree is then the one
that was saved (the same attributes hold wrappers), so Keras' weight loading
fills the weights, masks, thresholds, pruning steps and optimizer state.

`strip_pruning` gives the model its original class back (`restore_class`):
the stripped model saves as the dense class and loads without keras-prune.
"""

import collections
import collections.abc
import types

import keras

from keras_prune.integration import groups
from keras_prune.integration import rewrite
from keras_prune.integration.state import pruning_wrappers
from keras_prune.integration.wrapper import PruneLowMagnitude
from keras_prune.integration.wrapper import saved_schedule

PACKAGE = "keras_prune"
NAME = "PrunedModel"
REGISTERED_NAME = f"{PACKAGE}>{NAME}"

# Containers nested deeper than this inside one attribute are not searched
# for wrappers (Keras' own tracking goes one level into lists and dicts).
_MAX_CONTAINER_DEPTH = 4


def _unwrapped_configs(config):
    """`config` with each serialized wrapper replaced by its layer's config.

    A model whose config holds layers (Keras-Hub's
    `SAM3PromptableConceptBackbone` serializes its `text_encoder`, a layer
    that is pruned whole) serializes the wrappers that stand in their
    place; the dense record must rebuild the dense layers (loading wrapped
    the `SAM3TextEncoder` twice and failed).
    """
    if isinstance(config, dict):
        inner = config.get("config")
        if (
            config.get("class_name") == PruneLowMagnitude.__name__
            and isinstance(inner, dict)
            and isinstance(inner.get("layer"), dict)
        ):
            return _unwrapped_configs(inner["layer"])
        return {k: _unwrapped_configs(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return type(config)(_unwrapped_configs(v) for v in config)
    return config


class PrunedInPlace:
    """Mixin of the class given to a model pruned in place.

    Not used directly: `prune_low_magnitude` gives a pruned subclassed or
    Keras-Hub model the class `pruned_class(type(model))`, a subclass of
    this mixin and of the model's own class. Its `get_config` records the
    dense model (the original class's config) and the wrappers (where they
    are and their settings); its `from_config` rebuilds the dense model and
    wraps the same layers again, so that `keras.saving.load_model` gives
    back the pruned model, of its original class, with its masks, steps and
    weights.

    Example:

    ```python
    pruned = keras_prune.prune_low_magnitude(gpt2_causal_lm)
    isinstance(pruned, keras_hub.models.GPT2CausalLM)  # True
    pruned.save("pruned.keras")
    again = keras.saving.load_model("pruned.keras")  # still pruned
    ```
    """

    def get_config(self):
        """The dense model's record and the wrappers' places and settings.

        Returns:
            Dict with `base` (the original class and its config) and
            `wrappers` (one dict per wrapper: `path`, `layer_class`,
            `layer_name`, `config`).
        """
        base = base_class(type(self))
        with _as_class(self, base):
            dense = _unwrapped_configs(base.get_config(self))
            build_config = self.get_build_config()
        record = {
            "module": base.__module__,
            "class_name": base.__name__,
            "registered_name": keras.saving.get_registered_name(base),
            "config": dense,
        }
        if build_config is not None:
            record["build_config"] = build_config
        wrappers = []
        for wrapper, path in wrapper_paths(self):
            config = wrapper.settings_config()
            wrappers.append(
                {
                    "path": [list(step) for step in path],
                    "layer_class": type(wrapper.layer).__name__,
                    "layer_name": wrapper.layer.name,
                    "config": config,
                }
            )
        return {"base": record, "wrappers": wrappers}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuilds the dense model, then wraps the recorded layers.

        Args:
            config: What `get_config` returned.
            custom_objects: Passed to Keras' deserialization of the dense
                model (Keras also passes them through its scope).

        Returns:
            The model, of its pruned class, with wrappers in place.

        Raises:
            ValueError: the config is not a pruned model's, or the rebuilt
                model has no layer of the recorded class at a wrapper's
                path (the class now builds a different model).
        """
        if not isinstance(config, dict) or "base" not in config:
            raise ValueError(
                f"{REGISTERED_NAME} expects the config of a model pruned in "
                "place ({'base': ..., 'wrappers': [...]}); got "
                f"{str(config)[:200]}."
            )
        record = config["base"]
        model = keras.saving.deserialize_keras_object(
            dict(record), custom_objects=custom_objects
        )
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"{REGISTERED_NAME}: the saved base class "
                f"{record.get('class_name')!r} rebuilt a "
                f"{type(model).__name__}, not a keras.Model."
            )
        swaps = {}
        entries = config.get("wrappers", [])
        if not isinstance(entries, list):
            entries = [entries]  # refused by `_check_entry`
        seen = set()
        for entry in entries:
            _check_entry(model, entry)
            layer = _resolve(model, entry)
            if id(layer) in seen:
                raise ValueError(
                    f"Loading pruned model {model.name!r} "
                    f"({type(model).__name__}): two saved pruning wrapper "
                    f"records name layer {layer.name!r} (path "
                    f"{entry['path']}); only one setting can hold. The file "
                    "was not written by keras-prune or was edited: load the "
                    "original file."
                )
            seen.add(id(layer))
            if isinstance(layer, PruneLowMagnitude):
                continue  # the class's own config rebuilt the wrapper
            settings = dict(entry["config"])
            settings.pop("layer", None)
            if settings.get("name") == (
                f"prune_low_magnitude_{entry.get('layer_name')}"
            ):
                # The default name follows the rebuilt layer's name (a
                # subclassed model's layer names depend on the process).
                settings.pop("name")
            settings["pruning_schedule"] = saved_schedule(
                settings, custom_objects
            )
            swaps[id(layer)] = PruneLowMagnitude(layer, **settings)
        put_in_place(model, swaps)
        groups.link(model)
        mark(model)
        return model

    def __reduce__(self):
        # Keras pickles a model as its `.keras` bytes, with its class's
        # `_unpickle_model` to load them; this class has no importable name,
        # so the function that loads them is this module's.
        _, args = super().__reduce__()
        return (_unpickle, args)


def put_in_place(model, swaps):
    """Builds new wrappers and swaps them into `model` for their layers.

    A layer wrapped together with one of its sublayers (a container whose
    sublayer the model also calls directly: BLIP-2's token embedding in
    `BLIP2OPTEmbeddings`) gets its wrapper built after the swap, when it
    holds the sublayer's wrapper: `registry.weights_to_wrap` then leaves
    those weights to the sublayer's wrapper, one mask per weight, the same
    when pruning and when loading.

    Args:
        model: The model (or layer) holding the layers.
        swaps: `{id(layer): PruneLowMagnitude(layer, ...)}`, unbuilt.

    Returns:
        What `rewrite.swap_layers` returns.
    """
    later = []
    for wrapper in swaps.values():
        inner = wrapper.layer._flatten_layers(
            include_self=False, recursive=True
        )
        if any(id(sub) in swaps for sub in inner):
            later.append(wrapper)
        elif wrapper.layer.built:
            wrapper.build(None)
    result = rewrite.swap_layers(model, swaps)
    for wrapper in later:
        if wrapper.layer.built:
            wrapper.build(None)
    if later:
        rewrite.track_variables(result)  # torch: the new masks
    return result


def _unpickle(buffer):
    return keras.Model._unpickle_model(buffer)


def _register(cls):
    keras.saving.register_keras_serializable(package=PACKAGE, name=NAME)(cls)


_register(PrunedInPlace)

# base class -> its pruned class. Keyed by class only: what a model saves
# does not depend on which models were pruned or loaded before.
_CLASSES = {}


def pruned_class(base):
    """The class of a model of class `base` pruned in place (cached).

    Args:
        base: The model's original class (a `keras.Model` subclass).

    Returns:
        A subclass of `PrunedInPlace` and `base`, with `base`'s name, saved
        under `"keras_prune>PrunedModel"`.
    """
    if issubclass(base, PrunedInPlace):
        return base
    cls = _CLASSES.get(base)
    if cls is None:

        def body(namespace):
            namespace["__module__"] = __name__
            namespace["__qualname__"] = base.__qualname__
            namespace["__doc__"] = base.__doc__
            namespace["_keras_prune_base"] = base

        cls = types.new_class(base.__name__, (PrunedInPlace, base), {}, body)
        _register(cls)  # its saved `registered_name`
        _register(PrunedInPlace)  # the name still resolves to the mixin
        _CLASSES[base] = cls
    return cls


def base_class(cls):
    """The original class of a pruned class (`cls` itself otherwise)."""
    return cls.__dict__.get("_keras_prune_base", cls)


def needs_pruned_class(model):
    """Whether `model`'s own config cannot describe its wrappers.

    Plain Sequential and Functional models save their layers (wrappers
    included) in their config; any other class (a subclassed model, a
    Keras-Hub task or backbone) describes itself its own way.
    """
    return type(model) not in (rewrite.Functional, keras.Sequential)


def mark(model):
    """Gives a model pruned in place its pruned class (when it needs one).

    Args:
        model: A `keras.Model` holding pruning wrappers.

    Returns:
        `model` (the same object).
    """
    if (
        isinstance(model, keras.Model)
        and not isinstance(model, PrunedInPlace)
        and needs_pruned_class(model)
        and pruning_wrappers(model)
    ):
        model.__class__ = pruned_class(type(model))
    return model


def restore_class(model):
    """Gives a stripped model its original class back.

    Args:
        model: A `keras.Model`.

    Returns:
        `model` (the same object).
    """
    if isinstance(model, PrunedInPlace):
        model.__class__ = base_class(type(model))
    return model


class _as_class:
    """Within the block, `model` has class `cls` (restored after)."""

    def __init__(self, model, cls):
        self.model, self.cls = model, cls

    def __enter__(self):
        self.old = type(self.model)
        self.model.__class__ = self.cls

    def __exit__(self, *exc):
        self.model.__class__ = self.old


# ------------------------------------------------------------------- paths


# Keras' own bookkeeping of graphs and tracking: searched only for wrappers
# no attribute of the model's own code holds (a subclassed Functional's
# graph layers), since attribute names set by the model's code are what
# stays the same from one Keras version to the next.
_BOOKKEEPING = frozenset(
    (
        "_layers",
        "_operations",
        "_operations_by_depth",
        "_nodes_by_depth",
        "_functional",
    )
)


# TensorFlow's own tracking of a layer's attributes (`AutoTrackable`): it
# mirrors other attributes, and only exists on one backend, so a path
# through it would not load on another.
_TF_TRACKING = (
    "_self_unconditional",
    "_self_tracked",
    "_self_saveable",
    "_self_name_based",
)


def _ordered_attributes(parent, bookkeeping):
    items = [
        (name, value)
        for name, value in rewrite._attribute_items(parent)
        if (name not in rewrite._NOT_REFERENCES or name == "_layers")
        and (bookkeeping or name not in _BOOKKEEPING)
        and not (name.startswith("__") and name.endswith("__"))
        and not name.startswith(_TF_TRACKING)
    ]
    # Public names first: a path reads `backbone.token_embedding` rather
    # than `_backbone._token_embedding`, when both are as short.
    return sorted(items, key=lambda kv: (kv[0].startswith("_"), kv[0]))


def _children(parent, bookkeeping):
    """`(steps, layer)` for every layer `parent` holds in an attribute,
    also inside (nested) lists, tuples and dicts."""
    out = []

    def visit(value, steps, depth, seen):
        if isinstance(value, keras.layers.Layer):
            out.append((steps, value))
            return
        if depth >= _MAX_CONTAINER_DEPTH or id(value) in seen:
            return
        if isinstance(value, collections.abc.Sequence) and not isinstance(
            value, (str, bytes)
        ):
            seen = seen | {id(value)}
            for i, item in enumerate(list(value)):
                visit(item, steps + (("item", i),), depth + 1, seen)
        elif isinstance(value, collections.abc.Mapping):
            seen = seen | {id(value)}
            for key, item in list(value.items()):
                if isinstance(key, (str, int)) and not isinstance(key, bool):
                    visit(item, steps + (("key", key),), depth + 1, seen)

    for name, value in _ordered_attributes(parent, bookkeeping):
        visit(value, (("attr", name),), 0, frozenset())
    return out


def wrapper_paths(model):
    """Where each wrapper of `model` is held: `(wrapper, path)` pairs.

    A path is a tuple of steps `("attr", name)`, `("item", index)` or
    `("key", key)` from `model` to the wrapper: the first found breadth
    first, attributes in a fixed order (public names first). Keras' graph
    bookkeeping (`_operations`, `_layers`) is searched only for wrappers
    no other attribute holds, and wrapped layers only for wrappers held
    nowhere else (a table two wrapped layers hold, which a model pruned
    in place wraps on its own): there the path is the dense model's
    (`embeddings.token_embedding`), the wrapper standing where its layer
    stood.
    Rebuilding the dense model from its class gives the same structure, so
    each path leads to the layer to wrap again.

    Args:
        model: A model holding pruning wrappers.

    Returns:
        List of `(wrapper, path)` in `pruning_wrappers` order.

    Raises:
        ValueError: a wrapper is held nowhere a path can name.
    """
    wrappers = pruning_wrappers(model)
    wanted = {id(w) for w in wrappers}
    found = {}
    for bookkeeping, inside in ((False, False), (True, False), (True, True)):
        seen = {id(model)}
        queue = collections.deque([(model, ())])
        while queue and len(found) < len(wanted):
            parent, path = queue.popleft()
            for steps, layer in _children(parent, bookkeeping):
                if id(layer) in seen:
                    continue
                seen.add(id(layer))
                if id(layer) in wanted:
                    found.setdefault(id(layer), path + steps)
                    if inside:
                        # The wrapped layer's attributes, where the dense
                        # model has them (the wrapper stands in its place).
                        queue.append((layer.layer, path + steps))
                else:
                    queue.append((layer, path + steps))
    missing = [w.layer.name for w in wrappers if id(w) not in found]
    if missing:
        raise ValueError(
            f"Model {model.name!r}: the pruning wrappers of layers {missing} "
            "are not held in an attribute (or a list or dict attribute) of "
            "the model or of one of its layers, so the saved config cannot "
            "say where they are. Keep every layer in an attribute, or "
            "strip_pruning the model before saving."
        )
    return [(w, found[id(w)]) for w in wrappers]


def format_path(path):
    """`backbone.transformer_layers[0]._query_dense` for a path."""
    text = ""
    for kind, key in path:
        text += f".{key}" if kind == "attr" else f"[{key!r}]"
    return text.lstrip(".")


def _check_entry(model, entry):
    """Refuses a saved wrapper record of the wrong form, naming it."""
    path = entry.get("path") if isinstance(entry, dict) else None
    ok = (
        isinstance(path, list)
        and all(
            isinstance(step, (list, tuple))
            and len(step) == 2
            and step[0] in ("attr", "item", "key")
            and isinstance(step[1], (str, int))
            and not isinstance(step[1], bool)
            for step in path
        )
        and isinstance(entry.get("layer_class"), str)
        and isinstance(entry.get("config"), dict)
    )
    if not ok:
        raise ValueError(
            f"Loading pruned model {model.name!r} "
            f"({type(model).__name__}): a saved pruning wrapper record is "
            "malformed (expected {'path': [[kind, key], ...], "
            "'layer_class': str, 'config': {...}}); got "
            f"{str(entry)[:200]}. The file was not written by keras-prune "
            "or was edited: load the original file."
        )


def _resolve(model, entry):
    path = [tuple(step) for step in entry["path"]]
    node = model
    try:
        for kind, key in path:
            if kind == "attr":
                node = getattr(node, key)
            elif kind in ("item", "key"):
                node = node[key]
            else:
                raise ValueError(f"unknown step {kind!r}")
    except (AttributeError, IndexError, KeyError, TypeError) as e:
        raise ValueError(
            f"Loading pruned model {model.name!r} "
            f"({type(model).__name__}): the rebuilt model has nothing at "
            f"{format_path(path)!r}, where a pruning wrapper was saved "
            f"({type(e).__name__}: {e}). The class now builds a different "
            "model than when it was saved: load the file with the code that "
            "saved it, or save the stripped model (strip_pruning)."
        ) from None
    layer = node.layer if isinstance(node, PruneLowMagnitude) else node
    if type(layer).__name__ != entry["layer_class"]:
        raise ValueError(
            f"Loading pruned model {model.name!r} "
            f"({type(model).__name__}): at {format_path(path)!r} the rebuilt "
            f"model holds a {type(layer).__name__}, but a pruned "
            f"{entry['layer_class']} was saved there. The class now builds "
            "a different model than when it was saved: load the file with "
            "the code that saved it, or save the stripped model "
            "(strip_pruning)."
        )
    return node
