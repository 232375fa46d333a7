"""`PruningSpec`: every pruning argument, validated and serialised once.

`prune_low_magnitude`, `prune_once` and the `PruneLowMagnitude` wrapper take
the same arguments. They all build a `PruningSpec`, which checks each value
(types, ranges, combinations) and raises an error naming the argument and
the fix, and which gives the wrapper its config. Unknown keywords raise a
`TypeError` naming the closest valid one.

A spec for a model may hold per-layer values (`{name or regex: value}`
mappings for `pruning_schedule`, `max_sparsity` and `min_sparsity`) and the
model-level arguments `layers` and `pruning_policy`; `for_layer(layer)`
resolves it to the spec of one layer, which the wrapper holds.

The feasibility of a structured pattern depends on the weights, so it is
checked when a wrapper is built (`check_fits`): a block or N:M pattern that
cannot prune a single weight of a layer (0% sparsity whatever the
schedule) raises a `ValueError` naming the layer; when it fits some weights
of the layer but not others, one warning names those weights.
"""

import inspect
import re
import warnings

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune._keywords import unknown_keyword_error
from keras_prune.core import allocation as _allocation
from keras_prune.core import schedules
from keras_prune.core import scores as _scores
from keras_prune.core import sparsity_patterns
from keras_prune.integration.groups import ALLOCATIONS

POOLING_TYPES = ("AVG", "MAX")
PATTERNS = (None, "channel")

# The arguments a wrapper holds, in `get_config` order (the keys stay those
# of files saved by earlier versions).
LAYER_FIELDS = (
    "pruning_schedule",
    "block_size",
    "block_pooling_type",
    "sparsity_m_by_n",
    "pattern",
    "skip_unsupported",
    "allocation",
    "max_sparsity",
    "min_sparsity",
    "score",
)
# The arguments that only apply to a model or a list of layers.
MODEL_FIELDS = ("layers", "pruning_policy")


def check_keywords(function, given, valid):
    """Raises `TypeError` for the first keyword of `given` not in `valid`.

    Args:
        function: Name of the function or class, for the message.
        given: The keyword names passed.
        valid: The keyword names accepted.

    Raises:
        TypeError: naming the unknown keyword and the closest valid one.
    """
    valid = set(valid)
    for name in given:
        if name not in valid:
            raise unknown_keyword_error(function, name, valid)


class NotPrunableError(ValueError, TypeError):
    """Raised when what is given to prune is not a layer or a model.

    A `ValueError`, as in tfmot, and a `TypeError` (keras-prune's earlier
    type), so that either `except` clause catches it.
    """


def _refuse_layer_settings(layer, kwargs, valid):
    """Raises `TypeError` for a setting of the wrapped layer given to its
    wrapper: what a layer that rebuilds its sublayer from a changed config
    does (`Bidirectional(prune_low_magnitude(LSTM(8)))` sets
    `go_backwards` on the wrapper's config)."""
    unknown = [k for k in kwargs if k not in valid]
    if not unknown:
        return
    try:
        settings = set(layer.get_config())
    except Exception:  # a layer without a working config
        return
    own = sorted(k for k in unknown if k in settings)
    if own:
        raise TypeError(
            f"PruneLowMagnitude got {own}, settings of its layer "
            f"{layer.name!r}, not of the wrapper: set them on the layer "
            "before wrapping it. A layer that rebuilds the layer it holds "
            "with other settings (Bidirectional) cannot hold a pruned "
            "layer: prune the outer layer instead, e.g. "
            "`prune_low_magnitude(Bidirectional(LSTM(8)))`."
        )


def wrapper_keywords(layer, kwargs, signature):
    """Checks what `PruneLowMagnitude(layer, ..., **kwargs)` is given.

    Args:
        layer: The layer to wrap.
        kwargs: The wrapper's `**kwargs` (Keras layer keywords).
        signature: `inspect.signature` of the wrapper's `__init__`.

    Returns:
        The keywords for `keras.layers.Wrapper`: `name` defaults to
        `prune_low_magnitude_<layer name>`, `dtype` to the layer's dtype
        policy (the wrapper's `__call__` casts the inputs the layer then
        sees: a float16 layer in a float32 model computed in float32 when
        pruned, in float16 once stripped), `autocast` to the layer's, and
        `activity_regularizer` (the wrapped layer's, in its config) is
        dropped. `trainable` is True only if the layer is trainable (and
        `trainable=False` was not given): a wrapper of a frozen layer is
        frozen.

    Raises:
        NotPrunableError: `layer` is not a Keras layer.
        ValueError: `layer` is a `PruneLowMagnitude` wrapper.
        TypeError: an unknown keyword (naming the closest valid one).
    """
    if not isinstance(layer, keras.layers.Layer):
        raise NotPrunableError(
            "PruneLowMagnitude wraps a keras.layers.Layer, got "
            f"{layer!r} of type {type(layer).__name__}. Pass a layer or "
            "a model to keras_prune.prune_low_magnitude."
        )
    if getattr(layer, "_is_prune_wrapper", False):
        # tfmot refuses it too; here it would mask nothing (its layer's
        # weights are its wrapper's) and fail when built.
        raise ValueError(
            f"Layer {layer.name!r} is already a PruneLowMagnitude wrapper "
            f"(of {layer.layer.name!r}): wrap the layer itself "
            "(`wrapper.layer`), once."
        )
    valid = layer_keywords() | set(signature.parameters)
    _refuse_layer_settings(layer, kwargs, valid)
    check_keywords("PruneLowMagnitude", kwargs, valid)
    kwargs = dict(kwargs)
    kwargs["name"] = kwargs.get("name") or f"prune_low_magnitude_{layer.name}"
    policy = layer.dtype_policy
    if kwargs.get("dtype") is None and policy.quantization_mode is None:
        kwargs["dtype"] = policy  # (a quantized layer is refused at build)
    # And its `autocast`: an Embedding, LayerNormalization or
    # GroupNormalization (`autocast = False`) reads its float32 variables as
    # float32 under a mixed policy; a wrapper that autocast read them in
    # bfloat16 (a tied `ReversibleEmbedding(reverse=True)` LM head's logits
    # differed from the stripped model's).
    kwargs.setdefault("autocast", getattr(layer, "autocast", True))
    kwargs.pop("activity_regularizer", None)
    # A wrapper around a frozen layer (`base.trainable = False` before
    # pruning) is frozen too. A wrapper marked trainable over a frozen layer
    # could not be unfrozen on TensorFlow: its `trainable = True` is
    # skipped there when the flag already reads True (TensorFlow's
    # `AutoTrackable.__setattr__` ignores `self.x = self.x`), so
    # `base.trainable = True` left the pruned layers frozen while every
    # other layer of the base trained.
    # An explicit `trainable=True` over a frozen layer keeps it frozen: a
    # pruned file saved before this rule holds `trainable: true` for
    # every wrapper, and loading it must not unfreeze its frozen layers.
    kwargs["trainable"] = bool(kwargs.get("trainable", True)) and bool(
        layer.trainable
    )
    return kwargs


def layer_keywords():
    """The keyword arguments of `keras.layers.Layer` (name, dtype, ...)."""
    params = inspect.signature(keras.layers.Layer.__init__).parameters
    names = {
        n
        for n, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"
    }
    # Keras pops these from `**kwargs` (legacy `Sequential` inputs).
    return names | {"input_dim", "input_shape"}


def _pair(value, name):
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if (
        items is None
        or len(items) != 2
        or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool)
            for i in items
        )
    ):
        raise ValueError(
            f"`{name}` must be a pair of two integers, got {value!r}."
        )
    return tuple(int(i) for i in items)


def fraction(value, name, optional=True):
    """`value` as a float in [0, 1] (NaN refused), or None if `optional`."""
    if value is None and optional:
        return None
    what = "None or a number" if optional else "a number"
    if not schedules._is_real_scalar(value):
        raise ValueError(
            f"`{name}` must be {what} in [0, 1], got {value!r} of "
            f"type {type(value).__name__}."
        )
    value = float(np.asarray(keras.ops.convert_to_numpy(value)))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be {what} in [0, 1], got {value!r}.")
    return value


def is_mapping(value):
    """Whether `value` is a `{name or regex: value}` mapping (not a config)."""
    return isinstance(value, dict) and not (
        "class_name" in value and "config" in value
    )


def _warn_if_unsaveable(schedule):
    """Warns, when pruning starts, that a schedule cannot be saved.

    A custom schedule without `get_config()` fails only inside `model.save`,
    after Keras has opened (truncated) the file: a checkpoint saved there
    before is lost. tfmot's abstract base class refused such a class when
    it was created; keras-prune lets it prune (nothing needs saving), and
    says so here, once per schedule class.
    """
    try:
        schedule.get_config()
    except Exception as error:  # noqa: BLE001 - any failure makes it unsaveable
        warnings.warn(
            f"The pruning schedule {type(schedule).__name__} cannot be "
            f"saved: its get_config() raises {type(error).__name__}: "
            f"{error} A model pruned with it cannot be saved either, and "
            "`model.save` fails only after Keras has opened the file, so a "
            "file at that path is lost. Implement get_config() returning "
            "{'class_name': ..., 'config': {...}} before training.",
            stacklevel=4,
        )


def _schedule_or_target(value):
    """A schedule, or a float target: `ConstantSparsity(value, 0)`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return schedules.ConstantSparsity(float(value), 0)
    return schedules.get(value)


def _table(mapping, name, convert):
    """`[(compiled regex, converted value)]` of a per-layer mapping."""
    table = []
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(
                f"The keys of `{name}` must be layer names or regexes, got "
                f"{key!r}."
            )
        try:
            pattern = re.compile(key)
        except re.error as e:
            raise ValueError(
                f"`{name}` key {key!r} is not a valid regex: {e}."
            ) from None
        table.append((pattern, convert(value)))
    return table


def _lookup(table, name):
    """The value of the first key (regex, full match) naming the layer."""
    for pattern, value in table:
        if pattern.fullmatch(name):
            return value
    return None


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningSpec:
    """The validated arguments of a pruning: schedule, pattern, allocation.

    Built by `prune_low_magnitude`, `prune_once` and `PruneLowMagnitude`
    from their arguments (same names and meanings; see
    `prune_low_magnitude`). Every check happens here, with an error naming
    the argument and the fix.

    Args:
        pruning_schedule: A `PruningSchedule` (or its config or string);
            for a model also a `{name or regex: schedule or float}` mapping.
            Default `ConstantSparsity(0.5, 0)`.
        block_size: `(rows, cols)` of positive integers.
        block_pooling_type: `'AVG'` or `'MAX'`.
        sparsity_m_by_n: `(m, n)` with `0 < m < n`, or None.
        pattern: None, `'channel'`, or a `keras_prune.Pattern` (the
            built-ins `Block`, `NM`, `Channel` map onto `block_size`,
            `sparsity_m_by_n` and `'channel'`; a user's pattern is kept).
        skip_unsupported: Leave unknown sublayers dense instead of raising.
        allocation: `'layer'`, `'global'`, `'erk'`, or a
            `keras_prune.Allocation` (`PerTensor`, `Global`, `ERK` map onto
            the strings).
        max_sparsity: With `'global'`/`'erk'`: a float in [0, 1], None, or
            (for a model) a `{name or regex: float}` mapping.
        min_sparsity: Same forms as `max_sparsity`; never above it.
        layers: For a model: names or regexes, a list of them, or a callable
            `layer -> bool`; None: all prunable layers.
        pruning_policy: For a model: an object with `allow_pruning(layer)`
            and `ensure_model_supports_pruning(model)`, or None.
        layer_name: The layer a wrapper's spec is for (for messages).
        score: A `keras_prune.Score`; None: `Magnitude()` (`|w|`).

    The parts of the mask update are `mask_pattern`, `score` and
    `allocator` (`keras_prune.Pattern`, `Score`, `Allocation` instances),
    whichever form the arguments took.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a value out of range or an impossible combination.

    Example:

    ```python
    spec = keras_prune.PruningSpec(block_size=(1, 4))
    spec.for_layer(keras.layers.Dense(8, name="d"))["block_size"]  # (1, 4)
    ```
    """

    @keywords_checked
    def __init__(
        self,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        pattern=None,
        skip_unsupported=False,
        allocation="layer",
        max_sparsity=None,
        min_sparsity=None,
        layers=None,
        pruning_policy=None,
        layer_name=None,
        score=None,
    ):
        where = f"Layer {layer_name!r}: " if layer_name else ""
        self.score = _scores.get(score)
        pattern, block_size, block_pooling_type, sparsity_m_by_n = (
            _pattern_arguments(
                pattern, block_size, block_pooling_type, sparsity_m_by_n
            )
        )
        if isinstance(allocation, (dict, _allocation.Allocation)):
            allocation = _allocation.get(allocation)
            if type(allocation) in _allocation.BUILTIN.values():
                allocation = allocation.name
        self.layer_name = layer_name
        if pruning_schedule is None:
            pruning_schedule = schedules.ConstantSparsity(0.5, 0)
        if is_mapping(pruning_schedule):
            self._schedule_table = _table(
                pruning_schedule, "pruning_schedule", _schedule_or_target
            )
            self.pruning_schedule = dict(
                zip(pruning_schedule, (v for _, v in self._schedule_table))
            )
            for _, schedule in self._schedule_table:
                _warn_if_unsaveable(schedule)
        else:
            self._schedule_table = None
            self.pruning_schedule = schedules.get(pruning_schedule)
            _warn_if_unsaveable(self.pruning_schedule)

        self.block_size = _pair(block_size, "block_size")
        if min(self.block_size) < 1:
            raise ValueError(
                f"`block_size` must be positive, got {self.block_size}."
            )
        if block_pooling_type not in POOLING_TYPES:
            raise ValueError(
                f"Unsupported pooling type '{block_pooling_type}'. Should be "
                "'AVG' or 'MAX'."
            )
        self.block_pooling_type = block_pooling_type
        if sparsity_m_by_n is not None:
            sparsity_m_by_n = _pair(sparsity_m_by_n, "sparsity_m_by_n")
            m, n = sparsity_m_by_n
            if not 0 < m < n:
                raise ValueError(
                    f"sparsity_m_by_n=(m, n) needs 0 < m < n, got "
                    f"{sparsity_m_by_n}: m is the number of zeros in every "
                    "n consecutive weights, e.g. (2, 4)."
                )
        self.sparsity_m_by_n = sparsity_m_by_n
        if pattern not in PATTERNS and not isinstance(
            pattern, sparsity_patterns.Pattern
        ):
            raise ValueError(
                f"Unknown pattern {pattern!r}: use None (single weights) or "
                "'channel' (whole output channels). Blocks and N:M are set "
                "with `block_size` and `sparsity_m_by_n`."
            )
        self.pattern = pattern
        structured = self.structured
        if len(structured) > 1:
            raise ValueError(
                f"{where}{' and '.join(structured)} cannot be combined; "
                "choose one structured pattern."
            )
        if not isinstance(skip_unsupported, (bool, np.bool_)):
            raise TypeError(
                f"`skip_unsupported` must be True or False, got "
                f"{skip_unsupported!r}."
            )
        self.skip_unsupported = bool(skip_unsupported)

        if allocation not in ALLOCATIONS and not isinstance(
            allocation, _allocation.Allocation
        ):
            raise ValueError(
                f"Unknown allocation {allocation!r}: use 'layer' (every "
                "weight to the schedule's sparsity), 'global' (one threshold "
                "across layers) or 'erk' (Erdős–Rényi-Kernel budgets)."
            )
        self.allocation = allocation
        if allocation != "layer":
            if structured:
                raise ValueError(
                    f"allocation={allocation!r} prunes single weights; it "
                    f"cannot be combined with {structured[0]}. Use "
                    "allocation='layer'."
                )
            if self._schedule_table is not None:
                raise ValueError(
                    f"allocation={allocation!r} shares one budget across "
                    "layers, so it needs one schedule, not a per-layer "
                    "mapping. Use max_sparsity/min_sparsity for per-layer "
                    "limits."
                )
        elif max_sparsity is not None or min_sparsity is not None:
            raise ValueError(
                "max_sparsity/min_sparsity limit layers under a shared "
                "budget; with allocation='layer' give each layer its own "
                "schedule instead (pruning_schedule={name: schedule})."
            )
        self.max_sparsity, self._max_table = self._bound(
            max_sparsity, "max_sparsity"
        )
        self.min_sparsity, self._min_table = self._bound(
            min_sparsity, "min_sparsity"
        )
        self._check_bounds(self.max_sparsity, self.min_sparsity, where)

        if layers is not None and not callable(layers):
            items = [layers] if isinstance(layers, str) else layers
            try:
                items = list(items)
            except TypeError:
                items = [items]
            for p in items:
                if not isinstance(p, str):
                    raise TypeError(
                        "`layers` must be a layer name or regex, a list of "
                        "them, or a callable layer -> bool; got an item "
                        f"{p!r}."
                    )
            _table(dict.fromkeys(items), "layers", lambda v: v)
            layers = items if not isinstance(layers, str) else layers
        self.layers = layers
        if pruning_policy is not None and not callable(
            getattr(pruning_policy, "allow_pruning", None)
        ):
            raise TypeError(
                "`pruning_policy` must have an `allow_pruning(layer)` method "
                "(and `ensure_model_supports_pruning(model)`), e.g. "
                f"keras_prune.PruneForLatencyOnXNNPack(); got "
                f"{pruning_policy!r}."
            )
        self.pruning_policy = pruning_policy

    # ------------------------------------------------------------ checking

    @property
    def structured(self):
        """Names of the structured-pattern arguments that are set."""
        return [
            name
            for name, on in (
                ("block_size", self.block_size != (1, 1)),
                ("sparsity_m_by_n", self.sparsity_m_by_n is not None),
                (
                    "pattern",
                    self.pattern is not None
                    and not getattr(self.pattern, "shares_budget", False),
                ),
            )
            if on
        ]

    @property
    def mask_pattern(self):
        """The `keras_prune.Pattern` these arguments select."""
        if self.block_size != (1, 1):
            return sparsity_patterns.Block(
                self.block_size, self.block_pooling_type
            )
        if self.sparsity_m_by_n is not None:
            return sparsity_patterns.NM(*self.sparsity_m_by_n)
        if self.pattern is None:
            return sparsity_patterns.Unstructured()
        return sparsity_patterns.get(self.pattern)

    @property
    def allocator(self):
        """The `keras_prune.Allocation` these arguments select."""
        return _allocation.get(self.allocation)

    @staticmethod
    def _bound(value, name):
        """`(scalar or None, table or None)` of a max/min sparsity."""
        if is_mapping(value):
            return None, _table(value, name, lambda v: fraction(v, name))
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
        ):
            raise TypeError(
                f"`{name}` must be a float, None or a dict mapping layer "
                f"names or regexes to floats, got {value!r}."
            )
        return fraction(value, name), None

    @staticmethod
    def _check_bounds(max_sparsity, min_sparsity, where=""):
        if (
            max_sparsity is not None
            and min_sparsity is not None
            and max_sparsity < min_sparsity
        ):
            raise ValueError(
                f"{where}max_sparsity={max_sparsity} is below "
                f"min_sparsity={min_sparsity}: no mask can satisfy both. "
                "Lower min_sparsity or raise max_sparsity."
            )

    @property
    def per_layer(self):
        """Whether some value depends on the layer (a mapping)."""
        return (
            self._schedule_table is not None
            or self._max_table is not None
            or self._min_table is not None
        )

    # ----------------------------------------------------------- resolving

    def selects(self, layer):
        """Whether `layers=` selects `layer` (always, when `layers` is None)."""
        if self.layers is None:
            return True
        if callable(self.layers):
            return bool(self.layers(layer))
        names = [self.layers] if isinstance(self.layers, str) else self.layers
        return any(re.fullmatch(p, layer.name) for p in names)

    def schedule_for(self, layer):
        """The layer's schedule, or None when no mapping key names it."""
        if self._schedule_table is None:
            return self.pruning_schedule
        return _lookup(self._schedule_table, layer.name)

    def check_keys_used(self, to_prune):
        """Raises if a key of a per-layer mapping names no layer of
        `to_prune` (a model, a layer or a list of layers): a misspelt
        layer name would otherwise leave that layer silently unpruned.

        Args:
            to_prune: What `prune_low_magnitude` was given.

        Raises:
            ValueError: naming the argument, the unused keys and some of
                the layer names.
        """
        tables = [
            (name, table)
            for name, table in (
                ("pruning_schedule", self._schedule_table),
                ("max_sparsity", self._max_table),
                ("min_sparsity", self._min_table),
            )
            if table is not None
        ]
        if self.layers is not None and not callable(self.layers):
            # A misspelt name in `layers=` left that layer unpruned too.
            names = (
                [self.layers] if isinstance(self.layers, str) else self.layers
            )
            if not names:
                raise ValueError(
                    "`layers` is an empty list, so no layer would be "
                    "pruned. Name the layers to prune, or pass layers=None "
                    "for all prunable layers."
                )
            tables.append(("layers", [(re.compile(n), None) for n in names]))
        if not tables:
            return
        if isinstance(to_prune, keras.Model):
            layers = list(to_prune._flatten_layers(include_self=False))
        elif isinstance(to_prune, (list, tuple)):
            layers = list(to_prune)
        else:
            layers = [to_prune]
        names = [getattr(layer, "name", "") for layer in layers]
        names += [
            getattr(getattr(layer, "layer", None), "name", "")
            for layer in layers
        ]
        for name, table in tables:
            unused = [
                p.pattern
                for p, _ in table
                if not any(p.fullmatch(n) for n in names if n)
            ]
            if unused:
                what = "entries" if name == "layers" else "key(s)"
                raise ValueError(
                    f"`{name}` {what} {unused} match no layer name (they "
                    "are layer names or regexes, full match); layers: "
                    f"{[n for n in names if n][:12]}. Fix the key."
                )

    def _bound_for(self, layer, scalar, table):
        return scalar if table is None else _lookup(table, layer.name)

    def for_layer(self, layer):
        """The wrapper arguments of `layer`, or None if it is not scheduled.

        Args:
            layer: A Keras layer of the model.

        Returns:
            A dict of the `LAYER_FIELDS`, with this layer's schedule and
            bounds (mappings resolved), or None.

        Raises:
            ValueError: the layer's `max_sparsity` is below its
                `min_sparsity`.
        """
        schedule = self.schedule_for(layer)
        if schedule is None:
            return None
        params = {name: getattr(self, name) for name in LAYER_FIELDS}
        params["pruning_schedule"] = schedule
        params["max_sparsity"] = self._bound_for(
            layer, self.max_sparsity, self._max_table
        )
        params["min_sparsity"] = self._bound_for(
            layer, self.min_sparsity, self._min_table
        )
        self._check_bounds(
            params["max_sparsity"],
            params["min_sparsity"],
            f"Layer {layer.name!r}: ",
        )
        return params

    def check_fits(self, layer_name, weights, owners):
        """Refuses a pattern that cannot prune a layer (`Pattern.misfit`).

        A pattern that leaves a weight a single block (or N:M groups with
        more padding than zeros) keeps it dense whatever the schedule says.

        Args:
            layer_name: The wrapped layer's name.
            weights: Its pruned weights (objects with `.shape`, `.name`).
            owners: For each weight, the layer that owns it.

        Raises:
            ValueError: the pattern cannot prune any of the weights.

        Warns:
            UserWarning: (once per layer) it cannot prune some of them.
        """
        pattern = self.mask_pattern
        misfits = []
        for w, owner in zip(weights, owners):
            why = pattern.misfit(owner, w)
            if why is not None:
                misfits.append(f"{w.name} {tuple(w.shape)}: {why}")
        if not misfits:
            return
        what = pattern.describe()
        if len(misfits) == len(weights):
            raise ValueError(
                f"Layer {layer_name!r}: {what} cannot prune any weight of "
                f"this layer ({'; '.join(misfits)}), so it would stay 0% "
                "sparse. Use a smaller pattern, or leave the layer out (e.g. "
                "prune_low_magnitude(model, layers=lambda l: l.name != "
                f"{layer_name!r}, ...))."
            )
        warnings.warn(
            f"Layer {layer_name!r}: {what} is larger than some of its "
            f"weights ({'; '.join(misfits)}); they stay dense.",
            stacklevel=3,
        )

    def _fits(self, shape, axis):
        """Whether the block or N:M pattern can prune a weight of `shape`
        (N:M groups along `axis`)."""
        return self.mask_pattern.fits(shape, axis)

    # -------------------------------------------------------------- config

    def get_config(self):
        """The config of the layer-level fields (the wrapper's keys).

        Mappings are saved as `{key: value}`; `layers` must be names or
        regexes and `pruning_policy` serialisable to be saved.
        """
        if self._schedule_table is None:
            schedule = keras.saving.serialize_keras_object(
                self.pruning_schedule
            )
        else:
            schedule = {
                k: keras.saving.serialize_keras_object(v)
                for k, v in self.pruning_schedule.items()
            }
        config = {
            "pruning_schedule": schedule,
            "block_size": self.block_size,
            "block_pooling_type": self.block_pooling_type,
            "sparsity_m_by_n": self.sparsity_m_by_n,
            "pattern": _saved_part(self.pattern),
            "skip_unsupported": self.skip_unsupported,
            "allocation": _saved_part(self.allocation),
            "max_sparsity": self._saved_bound(
                self.max_sparsity, self._max_table
            ),
            "min_sparsity": self._saved_bound(
                self.min_sparsity, self._min_table
            ),
        }
        if type(self.score) is not _scores.Magnitude:
            config["score"] = keras.saving.serialize_keras_object(self.score)
        if self.layers is not None:
            if callable(self.layers):
                raise ValueError(
                    "A PruningSpec whose `layers` is a callable cannot be "
                    "saved; give layer names or regexes instead."
                )
            config["layers"] = self.layers
        if self.pruning_policy is not None:
            config["pruning_policy"] = keras.saving.serialize_keras_object(
                self.pruning_policy
            )
        if self.layer_name is not None:
            config["layer_name"] = self.layer_name
        return config

    @staticmethod
    def _saved_bound(scalar, table):
        if table is None:
            return scalar
        return {p.pattern: v for p, v in table}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Builds a spec from `get_config()` (or a wrapper's config)."""
        config = {k: v for k, v in config.items() if k in cls.FIELDS}
        schedule = config.get("pruning_schedule")
        if is_mapping(schedule):
            config["pruning_schedule"] = {
                k: _deserialize_schedule(v, custom_objects)
                for k, v in schedule.items()
            }
        elif isinstance(schedule, dict):
            config["pruning_schedule"] = _deserialize_schedule(
                schedule, custom_objects
            )
        if isinstance(config.get("pruning_policy"), dict):
            config["pruning_policy"] = _deserialize(
                config["pruning_policy"], custom_objects
            )
        return cls(**config)

    FIELDS = LAYER_FIELDS + MODEL_FIELDS + ("layer_name",)

    def __repr__(self):
        inner = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in LAYER_FIELDS + MODEL_FIELDS
        )
        return f"PruningSpec({inner})"


def _saved_part(value):
    """A string or None as it is; a user's part as its Keras config."""
    if value is None or isinstance(value, str):
        return value
    return keras.saving.serialize_keras_object(value)


def _pattern_arguments(pattern, block_size, block_pooling_type, m_by_n):
    """`pattern=` mapped onto tfmot's arguments where it is a built-in.

    `Block`, `NM` and `Channel` instances become `block_size` /
    `block_pooling_type`, `sparsity_m_by_n` and `'channel'` (so saved
    configs keep their keys); `Unstructured` becomes None; a user's
    `Pattern` (or its saved config) is kept as an instance.

    Returns:
        `(pattern, block_size, block_pooling_type, sparsity_m_by_n)`.
    """
    if isinstance(pattern, dict) and "class_name" in pattern:
        pattern = keras.saving.deserialize_keras_object(pattern)
    if isinstance(pattern, str) and pattern not in PATTERNS:
        pattern = sparsity_patterns.get(pattern)  # another registered name
    if not isinstance(pattern, sparsity_patterns.Pattern):
        return pattern, block_size, block_pooling_type, m_by_n
    if tuple(block_size) != (1, 1) or m_by_n is not None:
        raise ValueError(
            f"pattern={pattern!r} cannot be combined with `block_size` or "
            "`sparsity_m_by_n`; choose one structured pattern."
        )
    kind = type(pattern)
    if kind is sparsity_patterns.Unstructured:
        return None, block_size, block_pooling_type, m_by_n
    if kind is sparsity_patterns.Block:
        return None, pattern.block_size, pattern.pooling, m_by_n
    if kind is sparsity_patterns.NM:
        return None, block_size, block_pooling_type, (pattern.m, pattern.n)
    if kind is sparsity_patterns.Channel:
        return "channel", block_size, block_pooling_type, m_by_n
    return pattern, block_size, block_pooling_type, m_by_n


def _deserialize(config, custom_objects):
    return keras.saving.deserialize_keras_object(
        config, custom_objects=custom_objects
    )


def _deserialize_schedule(config, custom_objects):
    """A schedule from Keras 3's serialized form, as tfmot would build it.

    A schedule's `get_config()` is tfmot's `{'class_name': ..., 'config':
    {...}}`, so Keras' form nests it: `{'module': ..., 'class_name': ...,
    'config': {'class_name': ..., 'config': {...}}}`, and Keras would pass
    the nested pair to `from_config`. tfmot passes the inner arguments, and
    so does this: a user's schedule whose own `from_config` is tfmot's
    `cls(**config)` loads instead of failing with a `TypeError`. The class
    named inside must be the loaded class or one of its bases (as
    `PruningSchedule.from_config` checks).

    Args:
        config: A schedule's serialized config (any form).
        custom_objects: As for `keras.saving.deserialize_keras_object`.

    Returns:
        The schedule.

    Raises:
        ValueError: the inner class name is not the loaded class's.
    """
    inner = config.get("config") if isinstance(config, dict) else None
    if not (
        isinstance(inner, dict)
        and ("module" in config or "registered_name" in config)
        and set(inner) == {"class_name", "config"}
        and isinstance(inner["config"], dict)
    ):
        return _deserialize(config, custom_objects)
    schedule = _deserialize(
        {**config, "config": inner["config"]}, custom_objects
    )
    named = inner["class_name"]
    if named not in {c.__name__ for c in type(schedule).__mro__}:
        raise ValueError(
            f"Cannot load a {type(schedule).__name__} from a config that "
            f"names class {named!r}: the saved schedule was changed or "
            "damaged. Fix its 'class_name' or save the model again."
        )
    return schedule


def schedule_from_config(config, custom_objects=None):
    """The `pruning_schedule` of a saved wrapper config, as a schedule.

    Takes Keras 3's serialized form (what `get_config()` writes: it names
    the registered class, so custom schedules load without a scope) and
    tfmot's, `schedule.get_config()` (`{'class_name': 'ConstantSparsity',
    'config': {...}}`, as in a config written by tfmot or by hand): the
    built-ins resolve by name, other classes through `custom_objects` or a
    custom object scope (tfmot's `prune_scope`), as in tfmot.

    Args:
        config: The config entry (or `None`, or a schedule already).
        custom_objects: As for `keras.saving.deserialize_keras_object`.

    Returns:
        The schedule (or `None`).
    """
    if (
        isinstance(config, dict)
        and "module" not in config
        and "registered_name" not in config
        and config.get("class_name") not in (custom_objects or {})
        and set(config) <= {"class_name", "config"}
    ):
        try:
            return schedules.get(config)  # tfmot's form of a built-in
        except ValueError:
            pass  # not a built-in: Keras looks in its scopes
    return _deserialize_schedule(config, custom_objects)


def for_wrapper(layer, pruning_group=None, **arguments):
    """The spec a `PruneLowMagnitude` of `layer` holds.

    Args:
        layer: The wrapped layer.
        pruning_group: The wrapper's `pruning_group` argument.
        **arguments: The wrapper's pruning arguments (`LAYER_FIELDS`);
            `pruning_schedule` may be a `{name or regex: schedule}` mapping.

    Returns:
        A `PruningSpec` for this one layer (mappings resolved).

    Raises:
        ValueError: no schedule of a mapping names the layer, or a shared
            allocation on a single layer (or a group with `'layer'`).
    """
    spec = PruningSpec(**arguments, layer_name=layer.name)
    if spec.per_layer:  # a `{name or regex: value}` mapping
        params = spec.for_layer(layer)
        if params is None:
            raise ValueError(
                "No schedule in `pruning_schedule` matches layer "
                f"{layer.name!r}."
            )
        spec = PruningSpec(**params, layer_name=layer.name)
    if (spec.allocation == "layer") != (pruning_group is None):
        allocation = arguments.get("allocation")
        raise ValueError(
            f"allocation={allocation!r} on a single layer: global and ERK "
            "budgets are shared by the layers of a model, so pass the "
            "model to keras_prune.prune_low_magnitude(model, "
            f"allocation={allocation!r})."
        )
    return spec


def wrapper_config(spec, group_config):
    """The pruning part of a `PruneLowMagnitude`'s config.

    Args:
        spec: The wrapper's `PruningSpec`.
        group_config: Its `pruning_group` (`{'id', 'size', 'index',
            'allocation'}`), or None.

    Returns:
        A dict of the wrapper's constructor arguments, in the saved order.
    """
    own = spec.get_config()
    own.pop("layer_name", None)
    own["pruning_group"] = None if group_config is None else dict(group_config)
    # Saved-config key order: pruning_group before max/min_sparsity.
    for key in ("max_sparsity", "min_sparsity"):
        own[key] = own.pop(key)
    return own
