"""Model rewriting: copy a model and swap layer objects in place.

`prune_low_magnitude` and `strip_pruning` change which layer object sits at
each place of a model, and nothing else. No layer is rebuilt from its config
and the model keeps its class (a Keras-Hub `GPT2CausalLM` stays one, with
`generate()`), whatever the model type:

- In a Sequential or Functional graph (nested ones included), every node the
  old layer was called at is handed to the new layer, with the same call
  arguments (keywords, masks, `training`, several calls of a shared layer).
- Every attribute, list or dict of a layer or model that holds the old layer
  (Keras-Hub's `backbone.transformer_layers`, a subclassed model's
  `self.dense`) then holds the new one, at the same place in Keras' layer
  tracking, so weights keep their order.

`copy_model` gives the independent copy that `prune_low_magnitude` works on:
the model's own serialization round trip (what `keras.saving` and
`copy.deepcopy` do), without its compile state.
"""

import collections.abc
import tempfile
import warnings

import keras
from keras.src.models.functional import Functional
from keras.src.ops.function import make_node_key
from keras.src.ops.node import KerasHistory
from keras.src.saving import saving_lib
from keras.src.saving.serialization_lib import SafeModeScope
from keras.src.utils import tracking

from keras_prune import _backend


def is_graph_model(model):
    """Whether `model` is Sequential or Functional (not subclassed)."""
    return isinstance(model, (keras.Sequential, Functional))


def graph_layers(model):
    """The layers of a graph model, looking inside nested graph models.

    Args:
        model: A Sequential or Functional model.

    Returns:
        List of layers (not InputLayers, not graph models), each once, in
        graph order.
    """
    out, seen = [], set()

    def visit(m):
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if is_graph_model(layer):
                visit(layer)
            elif isinstance(layer, keras.layers.Layer) and not isinstance(
                layer, keras.layers.InputLayer
            ):
                out.append(layer)

    visit(model)
    return out


def copy_model(model):
    """An independent, uncompiled copy of a Sequential or Functional model.

    The copy is made by the model's own serialization (as `keras.saving` and
    `copy.deepcopy` do): a Keras-Hub model through its backbone's
    arguments, a Functional model layer by layer. Its weights are then set
    from the model's. Compile state and optimizer are not copied.

    Args:
        model: A Sequential or Functional model.

    Returns:
        A model of the same class with equal weights; when the model's
        config does not round trip, a plain Functional copy made layer by
        layer (Keras' `clone_model`), with a warning.
    """
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    # The classes at hand resolve by name: a custom layer need not be
    # registered to be copied (it must be to be loaded from a file).
    classes = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        cls = type(layer)
        classes.setdefault(cls.__name__, cls)
        classes.setdefault(keras.saving.get_registered_name(cls), cls)
    try:
        # Our own config of an object in memory: nothing untrusted to load
        # (a Lambda layer's code is copied as it is).
        with keras.saving.CustomObjectScope(classes), SafeModeScope(False):
            new = keras.saving.deserialize_keras_object(config)
        new = _share_as_in(model, new)
        if len(new.weights) != len(model.weights):
            raise ValueError(
                f"{len(new.weights)} weights instead of {len(model.weights)}"
            )
    except Exception as e:  # noqa: BLE001 - any config failure: fall back
        if type(model) in (Functional, keras.Sequential):
            # Plain graph models lose nothing (Keras' ops in the graph, e.g.
            # `keras.ops.add(x, x)`, are not always serializable).
            return _copy_layer_by_layer(model)
        warnings.warn(
            f"Model {model.name!r} ({type(model).__name__}) could not be "
            f"copied from its own config ({type(e).__name__}: {e}); it is "
            "copied layer by layer into a plain Functional model instead, "
            "which loses its class and methods. Fix its get_config() / "
            "from_config() to keep them.",
            stacklevel=3,
        )
        try:
            return _copy_layer_by_layer(model)
        except LayerCopyError as fallback:
            # Say both: the first failure is the one to fix (keras-hub
            # 0.32's LlamaBackbone drops `tie_word_embeddings` from its
            # config, so a tied Llama rebuilds untied, 12 weights instead
            # of 11; its decoder layers' get_config() then fails too).
            raise LayerCopyError(
                f"Model {model.name!r} ({type(model).__name__}) could not "
                "be copied from its own config "
                f"({type(e).__name__}: {e}), which is the first thing to "
                f"fix; nor layer by layer: {fallback}"
            ) from fallback
    _copy_weights(model, new)
    _copy_assets(model, new)
    _keep_paths(model, new)
    uncompile(new)
    return new


def _copy_weights(model, new):
    """`new.set_weights(model.get_weights())` without the NumPy round trip.

    Each variable takes a copy of the original's backend value
    (`_backend.copy_value`): on JAX, assigning NumPy arrays compiled one
    program per weight shape.
    """
    for old, var in zip(model.weights, new.weights):
        if tuple(old.shape) != tuple(var.shape):
            raise ValueError(
                f"Copying model {model.name!r}: weight {var.path!r} of the "
                f"copy has shape {tuple(var.shape)}, the original's "
                f"{old.path!r} has {tuple(old.shape)}. Check the model's "
                "get_config() / from_config()."
            )
        var.assign(_backend.copy_value(old))


def _copy_assets(model, new):
    """Copies the assets of the layers that keep state outside variables.

    A layer's assets are what `keras.saving` writes beside its weights
    through `save_assets` / `load_assets`: the vocabulary of an adapted
    `StringLookup` or `TextVectorization`, of a Keras-Hub tokenizer (given
    as a dict, or loaded from a preset). They are in no config, so a copy
    made from configs had none: the pruned copy of a Keras-Hub task with
    its preprocessor could not `fit` on strings, `generate`, `predict` or
    `summary` ("No vocabulary has been set"), and an adapted `StringLookup`
    raised "Table not initialized". The assets are written and read back
    as a `.keras` save and load do (Keras' walk of the model's attributes,
    which finds a task's preprocessor on every backend), in a temporary
    directory.

    Args:
        model: The original model (or layer).
        new: Its copy.
    """
    save = getattr(saving_lib, "_save_assets_to_dict", None)
    load = getattr(saving_lib, "_load_assets_from_dict", None)
    if save is not None and load is not None:
        assets = save(model)
        if assets:
            load(new, assets)
        return
    # Keras without those helpers: the layers paired in the order Keras
    # walks them, by class and name.
    pairs = zip(
        model._flatten_layers(include_self=True, recursive=True),
        new._flatten_layers(include_self=True, recursive=True),
    )
    for old, layer in pairs:
        if (
            type(old) is not type(layer)
            or old.name != layer.name
            or not hasattr(old, "save_assets")
            or not hasattr(layer, "load_assets")
        ):
            continue
        with tempfile.TemporaryDirectory() as directory:
            old.save_assets(directory)
            layer.load_assets(directory)


def _keep_paths(model, new):
    """Gives the copy's variables the original's paths.

    A variable's path depends on the name scopes open when its layer was
    built, which differ between building a model and deserializing it
    (`big/kernel` vs `sequential/big/kernel`). Distribution `LayoutMap`
    keys, reports and summaries name variables by path, so the copy keeps
    the original's. Keras has no public setter for a variable's path.
    """
    for old, var in zip(model.weights, new.weights):
        if old.name == var.name and old.path != var.path:
            var._path = old.path
    # Layers built later (the wrappers swapped in) take their place's scope.
    pairs = zip(
        model._flatten_layers(include_self=False, recursive=True),
        new._flatten_layers(include_self=False, recursive=True),
    )
    for old, layer in pairs:
        if old.name == layer.name:
            layer._parent_path = old._parent_path


class LayerCopyError(ValueError, TypeError):
    """A layer of a model being copied cannot be re-created from its config.

    A `ValueError` (tfmot raises one for a model it cannot prune) and a
    `TypeError` (what Keras raises for a config that `__init__` refuses).
    """


def _copy_layer_by_layer(model):
    """Keras' `clone_model`, each layer from its config, weights copied."""
    pairs = []

    def clone(layer):
        try:
            new = layer.__class__.from_config(layer.get_config())
        except Exception as e:  # noqa: BLE001 - any failure: say which layer
            cls = type(layer).__name__
            raise LayerCopyError(
                f"Model {model.name!r} is pruned on a copy (the original "
                "stays as it is), made by re-creating each layer from its "
                f"config, and layer {layer.name!r} ({cls}) could not be "
                f"re-created: {type(e).__name__}: {e} Fix: give {cls} a "
                "get_config() returning its constructor arguments and an "
                "__init__ accepting them (pass **kwargs such as name, "
                "trainable and dtype on to super().__init__), or wrap its "
                "layers with keras_prune.prune_low_magnitude yourself."
            ) from e
        pairs.append((layer, new))
        return new

    with SafeModeScope(False):
        new = keras.models.clone_model(
            model, clone_function=clone, recursive=True
        )
    new = _share_as_in(model, new)
    if len(new.weights) != len(model.weights):
        raise LayerCopyError(
            f"Model {model.name!r} is pruned on a copy (the original stays "
            "as it is), made by re-creating each layer from its config, and "
            f"the copy has {len(new.weights)} weights instead of "
            f"{len(model.weights)}: a layer's config does not describe the "
            "weights it holds. Fix the get_config() / from_config() of the "
            "layers that hold other layers, or wrap its layers with "
            "keras_prune.prune_low_magnitude yourself."
        )
    for old, copy in pairs:
        if getattr(old, "built", False) and getattr(copy, "built", False):
            copy.set_weights(old.get_weights())
        _copy_assets(old, copy)
    uncompile(new)
    return new


def _share_as_in(model, new):
    """Makes `new` (a copy of `model` made from configs) share the layers
    `model` shares.

    A layer that two layers hold (one `Dense` that two custom blocks call)
    is serialized in each holder's config, so a copy made from configs had
    two independent layers: twice the weights, pruned and trained apart,
    saved as two (a 2-weight model became a 4-weight one, silently). Each
    copy of a layer that the original holds more than once is replaced
    by the first copy of it, wherever the copy's layers hold it.

    Args:
        model: The original model.
        new: Its copy, made from configs (same classes and layer names).

    Returns:
        `new`, sharing as `model` does.
    """
    first, swaps = {}, {}
    stack = [(model, new)]
    while stack:
        old, copy = stack.pop()
        subs = old._flatten_layers(include_self=False, recursive=False)
        copies = copy._flatten_layers(include_self=False, recursive=False)
        if len(subs) != len(copies):
            continue  # not a copy of it: leave it to the weight check
        for sub, sub_copy in zip(subs, copies):
            if type(sub) is not type(sub_copy):
                continue
            if id(sub) in first:
                if first[id(sub)] is not sub_copy:
                    swaps[id(sub_copy)] = first[id(sub)]
                continue
            first[id(sub)] = sub_copy
            stack.append((sub, sub_copy))
    return swap_layers(new, swaps)


def uncompile(model):
    """Removes a model's compile state and optimizer, in place.

    The model is left as Keras leaves one never compiled: it has no
    `optimizer` attribute (Keras' `.h5` writer saves `model.optimizer`
    whenever the attribute exists, so a None there made `save("x.h5")`
    fail), and its compile attributes are None.

    Args:
        model: A `keras.Model`.
    """
    with tracking.DotNotTrackScope():
        for name in (
            "optimizer",
            "_compile_config",
            "_compiled_trainable_state",
        ):
            if name in vars(model):  # absent on a model never compiled
                delattr(model, name)
        for name in (
            "loss",
            "_compile_loss",
            "_compile_metrics",
            "_loss_tracker",
            "train_function",
            "test_function",
            "predict_function",
            "generate_function",  # Keras-Hub's CausalLM
        ):
            setattr(model, name, None)
        model.compiled = False
        model.steps_per_execution = 1
        model._run_eagerly = False
        model._jit_compile = None


def _functions_under(root):
    """Every graph (`Function`) in `root`: Functional models and the graphs
    Sequential models run."""
    out, seen = [], set()
    for layer in root._flatten_layers(include_self=True, recursive=True):
        for graph in (layer, getattr(layer, "_functional", None)):
            if isinstance(graph, keras.Function) and id(graph) not in seen:
                seen.add(id(graph))
                out.append(graph)
    return out


def _move_nodes(old, new):
    """Hands every graph node of `old` to `new`."""
    inbound, outbound = old._inbound_nodes, old._outbound_nodes
    with tracking.DotNotTrackScope():
        old._inbound_nodes, old._outbound_nodes = [], []
        new._inbound_nodes, new._outbound_nodes = inbound, outbound
    for index, node in enumerate(inbound):
        node.operation = new
        for i, tensor in enumerate(node.outputs):
            if tensor._keras_history.operation is old:
                tensor._keras_history = KerasHistory(new, index, i)


def _swap_items(items, swaps):
    """Swaps list items in place (TensorFlow wraps lists: no `list.` calls)."""
    with tracking.DotNotTrackScope():
        for i, item in enumerate(list(items)):
            if id(item) in swaps:
                items[i] = swaps[id(item)]
                _backend.items_replaced(items)


def _swap_in_function(graph, swaps):
    _swap_items(graph._operations, swaps)
    for ops_at_depth in graph._operations_by_depth.values():
        _swap_items(ops_at_depth, swaps)
    graph._nodes = {
        make_node_key(node.operation, node.operation._inbound_nodes.index(node))
        for nodes in graph._nodes_by_depth.values()
        for node in nodes
        if node.operation is not None and node in node.operation._inbound_nodes
    }
    if hasattr(graph, "_nnx_op_mapping"):
        graph._setup_nnx_op_mapping()


def _attribute_items(parent):
    # Private attributes too: Keras-Hub keeps `backbone._token_embedding`.
    attributes = dict(vars(parent))
    # On torch, layers held in attributes live in `nn.Module._modules`.
    attributes.update(getattr(parent, "_modules", None) or {})
    return attributes.items()


# Keras bookkeeping that holds no reference to swap (`_layers` is updated
# with the tracker below).
_NOT_REFERENCES = frozenset(
    ("_tracker", "_layers", "_inbound_nodes", "_outbound_nodes", "_modules")
)


def _swap_in_attributes(parent, swaps):
    """Replaces swapped layers held in `parent`'s attributes and tracking."""
    for attr, value in list(_attribute_items(parent)):
        if attr in _NOT_REFERENCES:
            continue
        if isinstance(value, keras.layers.Layer):
            if id(value) in swaps:
                with tracking.DotNotTrackScope():
                    setattr(parent, attr, swaps[id(value)])
        elif isinstance(value, (list, tuple)) or _is_sequence(value):
            if isinstance(value, tuple):
                if type(value) is tuple and any(
                    id(item) in swaps for item in value
                ):
                    with tracking.DotNotTrackScope():
                        setattr(
                            parent,
                            attr,
                            type(value)(
                                swaps.get(id(item), item) for item in value
                            ),
                        )
            else:
                _swap_items(value, swaps)
        elif isinstance(value, dict) or _is_mapping(value):
            with tracking.DotNotTrackScope():
                for key, item in list(value.items()):
                    if id(item) in swaps:
                        value[key] = swaps[id(item)]
    tracker = getattr(parent, "_tracker", None)
    layers = getattr(parent, "_layers", None)
    if layers is None:
        return
    for item in list(layers):
        if id(item) not in swaps:
            continue
        new = swaps[id(item)]
        index = next(j for j, x in enumerate(layers) if x is item)
        with tracking.DotNotTrackScope():
            if any(x is new for x in layers):
                del layers[index]  # a shared layer, tracked already
            else:
                layers[index] = new
            _backend.items_replaced(layers)
        if tracker is not None and "layers" in tracker.stored_ids:
            ids = tracker.stored_ids["layers"]
            ids.discard(id(item))
            ids.add(id(new))


def _is_sequence(value):
    return isinstance(value, collections.abc.MutableSequence)


def _is_mapping(value):
    return isinstance(value, collections.abc.MutableMapping)


def swap_layers(root, swaps):
    """Puts new layer objects in place of old ones, in place, in `root`.

    Args:
        root: A model (any type) or layer.
        swaps: Dict `id(old layer) -> new layer`. A new layer may hold its
            old layer (a wrapper), or be held by it (unwrapping).

    Returns:
        `root`, or its replacement when `root` itself is swapped.
    """
    if not swaps:
        return root
    olds = {}
    for layer in root._flatten_layers(include_self=True, recursive=True):
        if id(layer) in swaps:
            olds[id(layer)] = layer
    # Every layer's references are swapped, also those held by a swapped
    # layer (a container wrapped together with a sublayer, or unwrapped
    # with it), except the one link between a wrapper and its own layer.
    partner = {}
    for key, old in olds.items():
        partner[id(old)] = swaps[key]
        partner[id(swaps[key])] = old
    parents = [
        layer
        for layer in root._flatten_layers(include_self=True, recursive=True)
        if not _holds(layer, partner.get(id(layer)))
    ]
    graphs = _functions_under(root)
    for key, old in olds.items():
        new = swaps[key]
        if old._inbound_nodes:
            _move_nodes(old, new)
    for graph in graphs:
        _swap_in_function(graph, swaps)
    for parent in parents:
        _swap_in_attributes(parent, swaps)
    result = swaps.get(id(root), root)
    if isinstance(result, keras.Model):
        # Functions traced before the swap called the old layers.
        with tracking.DotNotTrackScope():
            for name in (
                "train_function",
                "test_function",
                "predict_function",
                "generate_function",
            ):
                if getattr(result, name, None) is not None:
                    setattr(result, name, None)
    track_variables(result)
    return result


def _holds(layer, other):
    return other is not None and any(
        sub is other
        for sub in layer._flatten_layers(include_self=False, recursive=False)
    )


def track_variables(root):
    """Makes torch's `parameters()` of `root` and its layers follow their
    variables again (after a swap, or variables added by a late `build`);
    nothing to do on the other backends."""
    for layer in root._flatten_layers(include_self=True, recursive=True):
        if "_torch_params" in vars(layer):
            layer._track_variables()
