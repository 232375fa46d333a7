"""Pruning schedules: when to recompute masks, and to which sparsity.

A schedule is a small pure function of the training step. Calling it returns
`(should_prune, sparsity)`:

- `should_prune`: whether masks are recomputed at this step;
- `sparsity`: the fraction of each pruned tensor (of the *whole* tensor) that
  is zero after that recomputation.

The built-in schedules give tfmot 0.8.1's values (float32 arithmetic; equal
to tfmot's within 1.2e-7, and bit-identical on JAX, TensorFlow and torch),
accept the same arguments and raise the same validation errors.
They are evaluated inside the compiled train step on every backend.

Any other `PruningSchedule` subclass, for example one written for tfmot with
`tf.math`, or one written with plain Python and NumPy, is evaluated on the
host (CPU Python) from inside the compiled step, once per training step, and
may return Python, NumPy or any backend's scalar tensors.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_prune._keywords import keywords_checked

_PACKAGE = "keras_prune"


def _is_host_value(x):
    return isinstance(x, (int, float, bool, np.generic, np.ndarray))


def _math(step):
    """Returns `(xp, cast)` for host (NumPy) or in-graph (`keras.ops`) math."""
    if _is_host_value(step):
        return np, lambda x, dtype: np.asarray(x).astype(dtype)
    return ops, ops.cast


def _opaque(xp, value, guard):
    """`value`, hidden from compiler rewrites that change float32 rounding.

    XLA (JAX, TensorFlow) rewrites `x / constant` as `x * (1 / constant)` and
    contracts `a * b + c` into one fused multiply-add. Both can change the
    last bit, so compiled values would differ from host (NumPy) and eager
    torch values. `where(isfinite(guard), value, 0)`, with a finite `guard`
    computed from the step, is `value`, but the compiler cannot prove it.
    """
    if xp is np:
        return value
    return ops.where(ops.isfinite(guard), value, ops.zeros_like(value))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PruningSchedule:
    """Base class of pruning schedules (tfmot's contract).

    Subclasses implement `__call__(step) -> (should_prune, sparsity)` and
    `get_config()`. The helpers `_validate_step`, `_validate_sparsity` and
    `_should_prune_in_step` behave as tfmot's, so a schedule written for
    `tfmot.sparsity.keras.PruningSchedule` runs unchanged after changing the
    import.

    Class attribute `in_graph`: `True` when `__call__` only uses `keras.ops`
    (or plain arithmetic that works on backend tensors), so it can run inside
    the compiled train step. The default `False` evaluates the schedule on the
    host with a NumPy integer step, which works for schedules written with
    `math`, NumPy, or TensorFlow ops on any backend.

    Example:

    ```python
    class EveryOtherStep(keras_prune.PruningSchedule):
        def __init__(self, sparsity, begin_step, end_step):
            self.sparsity = sparsity
            self.begin_step = begin_step
            self.end_step = end_step

        def __call__(self, step):
            prune = self._should_prune_in_step(
                step, self.begin_step, self.end_step, 2)
            return prune, self.sparsity

        def get_config(self):
            return {"class_name": "EveryOtherStep",
                    "config": {"sparsity": self.sparsity,
                               "begin_step": self.begin_step,
                               "end_step": self.end_step}}
    ```
    """

    in_graph = False

    def __setattr__(self, name, value):
        # A built-in schedule's settings are fixed once it is created.
        # Changed later, they were not checked (`final_sparsity = 1.5`
        # pruned 99% silently, `frequency = 0` divided by zero), and a
        # compiled train step (JAX, TensorFlow) kept the old values as
        # constants while `UpdatePruningStep` and torch used the new ones:
        # two different masks. Users' subclasses keep plain attributes.
        if (
            type(self) in _VECTORIZED
            and self.__dict__.get("_settled", False)
            and name in self.get_config()["config"]
        ):
            config = dict(self.get_config()["config"])
            config[name] = value
            args = ", ".join(f"{k}={v!r}" for k, v in config.items())
            raise AttributeError(
                f"{type(self).__name__}.{name} cannot be changed once the "
                "schedule is created: compiled train steps hold its "
                "settings as constants, so a change would apply in some "
                "modes and not others. Create a new schedule, "
                f"{type(self).__name__}({args}), and prune with it (strip "
                "the pruned model first, or prune the original again)."
            )
        object.__setattr__(self, name, value)

    def __call__(self, step):
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "`__call__(step) -> (should_prune, sparsity)`."
        )

    def get_config(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `get_config()` returning "
            "{'class_name': ..., 'config': {...}} to be saved."
        )

    @classmethod
    def from_config(cls, config):
        if "config" in config and "class_name" in config:
            named = config["class_name"]
            # A file that names one class outside and another inside is
            # refused, not loaded as the outer one (a subclass that keeps
            # a base class's `get_config` names the base: accepted).
            if named not in {c.__name__ for c in cls.__mro__}:
                raise ValueError(
                    f"Cannot load a {cls.__name__} from a config that names "
                    f"class {named!r}: the saved schedule was changed or "
                    "damaged. Fix its 'class_name' or save the model again."
                )
            config = config["config"]
        return cls(**config)

    @staticmethod
    def _should_prune_in_step(step, begin_step, end_step, frequency):
        """Whether `step` is an update step of `[begin, end]` every `frequency`.

        Both ends are inclusive, `end_step=-1` means forever, and the frequency
        counts from `begin_step` (tfmot's rule).
        """
        xp, _ = _math(step)
        is_in_range = xp.greater_equal(step, begin_step)
        if end_step >= 0:
            is_in_range = xp.logical_and(
                is_in_range, xp.less_equal(step, end_step)
            )
        on_frequency = xp.equal(xp.mod(step - begin_step, frequency), 0)
        return xp.logical_and(is_in_range, on_frequency)

    @staticmethod
    def _validate_step(begin_step, end_step, frequency, allow_negative_1):
        for name, value in (
            ("begin_step", begin_step),
            ("end_step", end_step),
            ("frequency", frequency),
        ):
            if value > MAX_STEP:
                hint = (
                    " Use end_step=-1 for 'until training ends'."
                    if name == "end_step"
                    else ""
                )
                raise ValueError(
                    f"{name} must be at most {MAX_STEP} (2**31 - 1: the "
                    f"pruning step is an int32 counter), got {value}.{hint}"
                )
        if begin_step < 0:
            raise ValueError("begin_step should be >= 0")
        if not allow_negative_1 and end_step == -1:
            raise ValueError("end_step cannot be -1.")
        if end_step != -1:
            if end_step < 0:
                raise ValueError("end_step can be -1 or >= 0")
            if end_step < begin_step:
                raise ValueError(
                    "begin_step should be <= end_step if end_step != -1"
                )
        if frequency <= 0:
            raise ValueError("frequency should be > 0")

    @staticmethod
    def _validate_sparsity(sparsity, variable_name):
        if not _is_real_scalar(sparsity):
            raise TypeError(
                f"{variable_name} must be a number in [0, 1), got "
                f"{sparsity!r} of type {type(sparsity).__name__}."
            )
        if not 0.0 <= sparsity < 1.0:
            raise ValueError("{} must be in range [0,1)".format(variable_name))
        if not np.float32(float(sparsity)) < 1.0:
            # The schedules compute in float32, as tfmot's do: a value this
            # close to 1 would become 1.0 and prune every weight but one.
            raise ValueError(
                f"{variable_name} must be in range [0,1) also once rounded "
                f"to float32, the precision schedules compute in: "
                f"{sparsity!r} rounds to 1.0. The largest sparsity below 1 "
                f"is {float(np.nextafter(np.float32(1), np.float32(0)))!r}."
            )

    def _config(self, **config):
        return {"class_name": type(self).__name__, "config": config}

    def __repr__(self):
        try:
            args = self.get_config()["config"]
        except Exception:
            return f"{type(self).__name__}()"
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{type(self).__name__}({inner})"


# Largest step a schedule may name: the pruning step is an int32 counter
# (and JAX refuses larger Python ints next to it in the compiled step).
MAX_STEP = (1 << 31) - 1


def _is_real_scalar(value):
    """A real number (Python, NumPy, or a 0-d array/tensor), not a bool."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    dtype = getattr(value, "dtype", None)
    if getattr(value, "shape", None) != () or dtype is None:
        return False
    try:
        return keras.backend.standardize_dtype(dtype).startswith(
            ("float", "int", "uint", "bfloat")
        )
    except Exception:  # noqa: BLE001 - an unknown dtype object
        return False


def _float32_in(value, lo, hi, lo_open=True):
    """Whether `value` is finite and in `(lo, hi)` (or `[lo, hi)`) once
    rounded to float32, as the schedule computes with it."""
    with np.errstate(over="ignore"):
        try:
            v = np.float32(float(value))
        except (OverflowError, TypeError, ValueError):
            return False
    if not np.isfinite(v):
        return False
    return (lo < v if lo_open else lo <= v) and v < hi


def _plain_number(value):
    """A validated real scalar (NumPy scalar, 0-d array or tensor) as a
    Python int or float: the same float32 value in the schedule, and a
    config that `json` can write (`np.float32(0.5)` is not JSON)."""
    if type(value) in (int, float):
        return value
    if not isinstance(value, (np.generic, np.ndarray)):
        try:
            value = keras.ops.convert_to_numpy(value)
        except ValueError:  # TensorFlow's bfloat16 tensors: exact in f32
            value = keras.ops.convert_to_numpy(keras.ops.cast(value, "float32"))
    value = np.asarray(value)
    return int(value) if value.dtype.kind in "iu" else float(value)


def _as_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be an integer step count, got {value!r} of type "
            f"{type(value).__name__}."
        )
    return int(value)


class _RampSchedule(PruningSchedule):
    """Sparsity moves from `initial` to `final` over `[begin_step, end_step]`.

    Subclasses define `_shape(one_minus_p, xp)`: the weight of
    `initial_sparsity` at progress `p` (1 at `p=0`, 0 at `p=1`).
    """

    in_graph = True
    # Return exactly `float32(initial_sparsity)` up to `begin_step`, where
    # `final + (initial - final) * 1` can be an ulp off. False for
    # PolynomialDecay, whose values are tfmot's.
    _exact_initial = False

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, frequency
    ):
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.begin_step = _as_int(begin_step, "begin_step")
        self.end_step = _as_int(end_step, "end_step")
        self.frequency = _as_int(frequency, "frequency")
        self._validate_step(
            self.begin_step, self.end_step, self.frequency, False
        )
        self._validate_sparsity(initial_sparsity, "initial_sparsity")
        self._validate_sparsity(final_sparsity, "final_sparsity")
        self.initial_sparsity = _plain_number(initial_sparsity)
        self.final_sparsity = _plain_number(final_sparsity)

    def _progress(self, step):
        xp, cast = _math(step)
        span = self.end_step - self.begin_step
        if span == 0:
            # Deliberate fix: tfmot divides 0 by 0 here and trains on NaN.
            p = cast(xp.greater_equal(step, self.begin_step), "float32")
        else:
            elapsed = cast(step - self.begin_step, "float32")
            p = elapsed / _opaque(xp, cast(span, "float32"), elapsed)
        return xp.minimum(
            cast(1.0, "float32"), xp.maximum(cast(0.0, "float32"), p)
        )

    def __call__(self, step):
        xp, cast = _math(step)
        progress = self._progress(step)
        one_minus_p = cast(1.0, "float32") - progress
        weight = self._shape(one_minus_p, xp, cast)
        gap = cast(self.initial_sparsity - self.final_sparsity, "float32")
        scaled = gap * weight
        sparsity = _opaque(xp, scaled, scaled) + cast(
            self.final_sparsity, "float32"
        )
        if self._exact_initial:
            sparsity = xp.where(
                xp.less_equal(progress, cast(0.0, "float32")),
                cast(self.initial_sparsity, "float32"),
                sparsity,
            )
            if xp is np:
                sparsity = sparsity[()]  # a NumPy scalar, like the others
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        return should_prune, sparsity


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(_RampSchedule):
    """Sparsity grows polynomially from `initial_sparsity` to `final_sparsity`.

    `sparsity(step) = final + (initial - final) * (1 - p) ** power`, with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`, computed
    in float32 as tfmot does (integer powers by repeated products, so every
    backend gives the same bits; tfmot's `tf.pow` can differ by 1-2 ulp,
    under 1.2e-7). Masks are recomputed every `frequency`
    steps from `begin_step` through `end_step` (inclusive).

    `initial_sparsity=0.5` means that the first update, at `begin_step`, prunes
    50% of every pruned tensor; later updates raise that to `final_sparsity`.
    Unlike tfmot, `begin_step == end_step` is valid: the sparsity is
    `final_sparsity` from `begin_step` on (tfmot gives NaN).

    Args:
        initial_sparsity: Sparsity in `[0, 1)` at `begin_step`.
        final_sparsity: Sparsity in `[0, 1)` at and after `end_step`.
        begin_step: First step at which masks are computed.
        end_step: Last step of the ramp (`>= begin_step`, not -1).
        power: Exponent of the decay (3 = tfmot's default, cubic).
        frequency: Masks are recomputed every `frequency` steps.

    Example:

    >>> s = keras_prune.PolynomialDecay(0.5, 0.9, 2000, 10000)
    >>> should_prune, sparsity = s(2100)  # np.bool_, np.float32
    >>> bool(should_prune), round(float(sparsity), 8)
    (True, 0.51481324)
    """

    @keywords_checked
    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        super().__init__(
            initial_sparsity, final_sparsity, begin_step, end_step, frequency
        )
        if (
            isinstance(power, bool)
            or not isinstance(power, (int, float, np.integer, np.floating))
            or not _float32_in(power, 0.0, math.inf)
        ):
            # The schedule computes in float32: a power that rounds to 0 or
            # overflows to inf would give 1 ** 0 = 1 or 0 ** 0 at the end.
            raise ValueError(
                f"power must be a finite number > 0 (also once rounded to "
                f"float32), got {power!r}: the "
                "sparsity follows (1 - progress) ** power; 3 is cubic "
                "(tfmot's default), 1 linear."
            )
        self.power = _plain_number(power)
        self._settled = True  # later settings are checked (`__setattr__`)

    def _shape(self, one_minus_p, xp, cast):
        if isinstance(self.power, (int, np.integer)) and 0 <= self.power <= 8:
            # Repeated products are exact IEEE float32 on every backend, so
            # all backends see the same bits.
            result = cast(1.0, "float32")
            for _ in range(int(self.power)):
                result = result * one_minus_p
            return result
        return xp.power(one_minus_p, cast(self.power, "float32"))

    def get_config(self):
        return self._config(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            power=self.power,
            begin_step=self.begin_step,
            end_step=self.end_step,
            frequency=self.frequency,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """The same sparsity at every update, every `frequency` steps.

    Args:
        target_sparsity: Sparsity in `[0, 1)`.
        begin_step: First step at which masks are computed.
        end_step: Last step at which masks may be computed; -1 (default)
            means until training ends.
        frequency: Masks are recomputed every `frequency` steps, counted from
            `begin_step`.

    Example:

    >>> s = keras_prune.ConstantSparsity(0.5, begin_step=7, end_step=100,
    ...                                  frequency=10)
    >>> [bool(s(t)[0]) for t in (7, 10, 17, 97, 100)]
    [True, False, True, True, False]
    """

    in_graph = True

    @keywords_checked
    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = target_sparsity
        self.begin_step = _as_int(begin_step, "begin_step")
        self.end_step = _as_int(end_step, "end_step")
        self.frequency = _as_int(frequency, "frequency")
        self._validate_step(
            self.begin_step, self.end_step, self.frequency, True
        )
        self._validate_sparsity(target_sparsity, "target_sparsity")
        self.target_sparsity = _plain_number(target_sparsity)
        self._settled = True  # later settings are checked (`__setattr__`)

    def __call__(self, step):
        _, cast = _math(step)
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        return should_prune, cast(self.target_sparsity, "float32")

    def get_config(self):
        return self._config(
            target_sparsity=self.target_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            frequency=self.frequency,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ExponentialDecay(_RampSchedule):
    """Density (1 - sparsity) decays geometrically toward its floor.

    The gap between the current density and the final density shrinks by the
    same factor at every step of the ramp, normalised so that the schedule
    reaches `final_sparsity` exactly at `end_step`:
    `gap(p) = gap(0) * (decay ** p - decay) / (1 - decay)`.
    Most weights go early, when the network can still recover; late updates
    are small.

    Args:
        initial_sparsity: Sparsity in `[0, 1)` at `begin_step`.
        final_sparsity: Sparsity in `[0, 1)` at and after `end_step`.
        begin_step: First step at which masks are computed.
        end_step: Last step of the ramp.
        decay: In `(0, 1)`; the smaller, the earlier the pruning. 0.05 means
            that the remaining gap shrinks 20x over the ramp before the
            normalisation.
        frequency: Masks are recomputed every `frequency` steps.

    Example:

    >>> s = keras_prune.ExponentialDecay(0.0, 0.9, 0, 1000, decay=0.05)
    >>> float(s(500)[1]) > 0.9 * 0.5
    True
    """

    _exact_initial = True

    @keywords_checked
    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        decay=0.05,
        frequency=100,
    ):
        super().__init__(
            initial_sparsity, final_sparsity, begin_step, end_step, frequency
        )
        if (
            isinstance(decay, (bool, np.bool_))
            or not _is_real_scalar(decay)
            or not 0.0 < decay < 1.0
            or not _float32_in(decay, 0.0, 1.0)
        ):
            # Checked in float32 too: a decay that rounds to 1.0 divides 0
            # by 0 (NaN sparsity), one that rounds to 0 is a step function.
            raise ValueError(
                f"decay must be in range (0,1) (also once rounded to "
                f"float32), got {decay!r}. Smaller values prune earlier; try "
                "0.05."
            )
        self.decay = _plain_number(decay)
        self._settled = True  # later settings are checked (`__setattr__`)

    def _shape(self, one_minus_p, xp, cast):
        d = cast(self.decay, "float32")
        p = cast(1.0, "float32") - one_minus_p
        return (xp.power(d, p) - d) / _opaque(xp, cast(1.0, "float32") - d, p)

    def get_config(self):
        return self._config(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            decay=self.decay,
            frequency=self.frequency,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineDecay(_RampSchedule):
    """Sparsity follows half a cosine from `initial` to `final` sparsity.

    `sparsity = final + (initial - final) * (1 + cos(pi * p)) / 2`: slow at
    both ends of the ramp, fastest in the middle.

    Args:
        initial_sparsity: Sparsity in `[0, 1)` at `begin_step`.
        final_sparsity: Sparsity in `[0, 1)` at and after `end_step`.
        begin_step: First step at which masks are computed.
        end_step: Last step of the ramp.
        frequency: Masks are recomputed every `frequency` steps.

    Example:

    >>> s = keras_prune.CosineDecay(0.0, 0.8, 0, 1000)
    >>> round(float(s(500)[1]), 6)
    0.4
    """

    _exact_initial = True

    @keywords_checked
    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        frequency=100,
    ):
        super().__init__(
            initial_sparsity, final_sparsity, begin_step, end_step, frequency
        )
        self._settled = True  # later settings are checked (`__setattr__`)

    def _shape(self, one_minus_p, xp, cast):
        p = cast(1.0, "float32") - one_minus_p
        half = cast(0.5, "float32")
        cosine = xp.cos(cast(math.pi, "float32") * p)
        scaled = half * cosine
        return half + _opaque(xp, scaled, scaled)

    def get_config(self):
        return self._config(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            frequency=self.frequency,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FunctionSchedule(PruningSchedule):
    """Turns any Python function `step -> sparsity` into a schedule.

    The function receives the step as a Python `int` and returns a number in
    `[0, 1)`. Masks are recomputed every `frequency` steps from `begin_step`
    through `end_step` (-1: forever). The function runs on the host, so it may
    use anything: `math`, NumPy, a lookup table.

    To save a model that uses it, register the function with
    `keras.saving.register_keras_serializable()` (lambdas cannot be saved).

    Args:
        fn: Callable `step -> sparsity`.
        begin_step: First update step.
        end_step: Last possible update step, or -1.
        frequency: Steps between updates.

    Example:

    ```python
    schedule = keras_prune.FunctionSchedule(
        lambda step: min(0.9, step / 1000), begin_step=0, end_step=1000,
        frequency=50)
    ```
    """

    @keywords_checked
    def __init__(self, fn, begin_step=0, end_step=-1, frequency=100):
        if isinstance(fn, dict):
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError(
                f"`fn` must be a callable step -> sparsity, got {fn!r}."
            )
        self.fn = fn
        self.begin_step = _as_int(begin_step, "begin_step")
        self.end_step = _as_int(end_step, "end_step")
        self.frequency = _as_int(frequency, "frequency")
        self._validate_step(
            self.begin_step, self.end_step, self.frequency, True
        )

    def __call__(self, step):
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        value = self.fn(int(step))
        # Not float() alone: float(True) and float("0.5") are numbers. The
        # message names `fn`, not `self!r` (which serialises the function).
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        sparsity = None
        if _is_real_scalar(value):
            sparsity = float(_plain_number(value))
        if sparsity is None or not 0.0 <= sparsity < 1.0:
            raise ValueError(
                f"FunctionSchedule(fn={name}): fn({int(step)}) returned "
                f"{value!r:.80} at step {int(step)}; it must return a "
                "number in [0, 1)."
            )
        return should_prune, np.float32(sparsity)

    def get_config(self):
        return self._config(
            fn=keras.saving.serialize_keras_object(self.fn),
            begin_step=self.begin_step,
            end_step=self.end_step,
            frequency=self.frequency,
        )


def evaluate_steps(schedule, steps):
    """Evaluates `schedule` at many steps on the host.

    This is the one scan of a schedule over steps: `evaluate_range`
    (`UpdatePruningStep`'s plan), `update_steps`, `last_update`, the event
    tables and plots all read steps through it. The built-in schedules
    compute every step in one NumPy call (the same float32 values as step by
    step); any other schedule is called once per step through `evaluate`,
    which checks each value.

    Args:
        schedule: A `PruningSchedule`.
        steps: Integer steps (any shape).

    Returns:
        `(should_prune, sparsity)`: bool and float32 NumPy arrays of the
        shape of `steps`.

    Raises:
        ValueError: a custom schedule gave an invalid value (the first one,
            named with its step).

    Example:

    ```python
    should_prune, sparsity = evaluate_steps(schedule, np.arange(0, 1000))
    ```
    """
    steps = np.asarray(steps, dtype=np.int64)
    if type(schedule) in _VECTORIZED:
        should_prune, sparsity = schedule(steps)
        return (
            np.broadcast_to(np.asarray(should_prune, bool), steps.shape),
            np.broadcast_to(np.asarray(sparsity, np.float32), steps.shape),
        )
    values = [evaluate(schedule, int(s)) for s in steps.ravel()]
    return (
        np.array([v[0] for v in values], dtype=bool).reshape(steps.shape),
        np.array([v[1] for v in values], dtype=np.float32).reshape(steps.shape),
    )


def evaluate_range(schedule, start, count):
    """`evaluate` at steps `start, ..., start + count - 1`.

    `UpdatePruningStep` plans its host-side updates with this instead of
    paying ~50 us of NumPy per batch (`evaluate_steps` computes built-in
    schedules in one call).

    Args:
        schedule: A `PruningSchedule`.
        start: First Python integer step.
        count: Number of steps.

    Returns:
        List of `(should_prune: bool, sparsity: numpy.float32)`. When the
        schedule gives an invalid value at a later step (see
        `check_value`), the list stops before that step: evaluating from it
        raises, so a caller planning ahead raises when it gets there.

    Raises:
        ValueError: the value at `start` is invalid.
    """
    if type(schedule) in _VECTORIZED:
        should_prune, sparsity = evaluate_steps(
            schedule, np.arange(start, start + count, dtype=np.int64)
        )
        return list(zip(should_prune.tolist(), sparsity))
    values = []
    for step in range(start, start + count):
        try:
            values.append(evaluate(schedule, step))
        except ValueError:
            if not values:
                raise
            break  # raised when the plan reaches this step
    return values


def update_steps(schedule, start, stop):
    """The mask-update steps of `[start, stop)`, computed arithmetically.

    Built-in schedules and `FunctionSchedule` update at `begin_step + k *
    frequency` up to `end_step` inclusive (forever when -1).

    Args:
        schedule: A `PruningSchedule`.
        start: First step (int).
        stop: One past the last step (int).

    Returns:
        `(first, frequency, count)`, or None for a schedule whose update
        rule is its own (its steps must then be scanned with
        `evaluate_steps`).
    """
    if type(schedule) not in _VECTORIZED + (FunctionSchedule,):
        return None
    begin, end = int(schedule.begin_step), int(schedule.end_step)
    frequency = int(schedule.frequency)
    lo = max(int(start), begin)
    hi = int(stop) - 1 if end < 0 else min(int(stop) - 1, end)
    first = begin + -(-(lo - begin) // frequency) * frequency
    if first > hi:
        return first, frequency, 0
    return first, frequency, (hi - first) // frequency + 1


def last_update(schedule, last_step, first_step=0):
    """The latest mask update of `schedule` at a step in `[first, last]`.

    Searches backward in growing chunks of `evaluate_steps`, so it costs
    about `frequency` evaluations, not `last_step`.

    Args:
        schedule: A `PruningSchedule`.
        last_step: Last step considered (int).
        first_step: First step considered (int).

    Returns:
        `(step, sparsity)`, with `sparsity` the float32 value of
        `evaluate(schedule, step)`; or None when no step in the range
        updates masks.

    Example:

    ```python
    last_update(ConstantSparsity(0.5, 0, frequency=100), 250)
    # (200, 0.5)
    ```
    """
    hi, size = int(last_step), 256
    while hi >= first_step:
        lo = max(int(first_step), hi - size + 1)
        steps = np.arange(lo, hi + 1, dtype=np.int64)
        should_prune, sparsity = evaluate_steps(schedule, steps)
        hits = np.flatnonzero(should_prune)
        if hits.size:
            return int(steps[hits[-1]]), np.float32(sparsity[hits[-1]])
        hi, size = lo - 1, size * 4
    return None


def evaluate(schedule, step):
    """Evaluates `schedule` at a Python integer `step` on the host.

    Whatever the schedule returns (Python, NumPy, or a scalar tensor of any
    backend or of TensorFlow) is converted to `(bool, numpy.float32)`.

    Args:
        schedule: A `PruningSchedule`.
        step: Python integer step.

    Returns:
        Tuple `(should_prune: bool, sparsity: numpy.float32)`.
    """
    result = schedule(np.int64(step))
    try:
        should_prune, sparsity = result
    except (TypeError, ValueError):
        raise TypeError(
            f"{type(schedule).__name__}.__call__ must return a pair "
            f"(should_prune, sparsity); got {result!r}."
        ) from None
    should_prune = _check_should_prune(schedule, step, should_prune)
    value = to_host(sparsity)
    check_value(schedule, step, value)
    return should_prune, np.float32(value)


def _check_should_prune(schedule, step, should_prune):
    """`should_prune` as a Python bool; raises unless it is a bool (or an
    integer 0 or 1) scalar: `None`, NaN or an array would otherwise be
    read as a silent True or False."""
    value = to_host(should_prune)
    if value.dtype.kind in "iu" and value.size == 1 and value.item() in (0, 1):
        return bool(value.item())
    if value.dtype == np.bool_ and value.size == 1:
        return bool(value.item())
    raise ValueError(
        f"Pruning schedule {schedule!r} returned should_prune "
        f"{should_prune!r} at step {int(step)}; it must be a bool (or a bool "
        "scalar tensor). Fix the schedule's `__call__`."
    )


def check_value(schedule, step, sparsity):
    """Raises unless `sparsity` is a finite number in `[0, 1]`.

    Every host evaluation of a schedule (`evaluate`: in the compiled step
    through `_backend.host_call`, in `UpdatePruningStep`'s plan, in reports)
    goes through this check, at every step whether or not it prunes, so a
    bad value never reaches a mask. Built-in schedules validate their
    arguments instead, so their values are always valid.

    Args:
        schedule: The schedule, named in the message.
        step: The step it was evaluated at.
        sparsity: What it returned (a number or a 0-d array).

    Raises:
        ValueError: naming the schedule, the step and the value.
    """
    try:
        # A string ("0.5") is not a number, even if float() reads it.
        kind = np.asarray(sparsity).dtype.kind
        value = None if kind in "USOb" else float(sparsity)
    except (TypeError, ValueError):
        value = None
    if value is None or not 0.0 <= value <= 1.0:  # NaN fails both
        shown = sparsity if value is None else value
        raise ValueError(
            f"Pruning schedule {schedule!r} returned sparsity {shown!r} at "
            f"step {int(step)}; a sparsity must be a finite number in "
            "[0, 1]. Fix the schedule's `__call__`. No mask was computed "
            "from this value."
        )


def is_builtin(schedule):
    """Whether `schedule` is exactly a built-in class (values always valid)."""
    return type(schedule) in _VECTORIZED


def to_host(x):
    """Converts a Python, NumPy, TF, JAX or torch scalar to a NumPy value."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    if hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def get(identifier):
    """Returns a schedule from an instance, a config dict or a string.

    Strings are Python-like calls of a built-in schedule, e.g.
    `"PolynomialDecay(0.5, 0.9, 2000, 10000, frequency=100)"`.
    """
    if isinstance(identifier, PruningSchedule):
        return identifier
    if isinstance(identifier, dict):
        if "module" in identifier or "registered_name" in identifier:
            return keras.saving.deserialize_keras_object(identifier)
        cls = _BUILTINS.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(
                f"Unknown schedule class {identifier.get('class_name')!r}. "
                f"Built-ins: {sorted(_BUILTINS)}; register custom schedules "
                "with keras.saving.register_keras_serializable()."
            )
        return cls.from_config(identifier["config"])
    if isinstance(identifier, str):
        return _parse(identifier)
    raise TypeError(
        "`pruning_schedule` must be a keras_prune.PruningSchedule (e.g. "
        "keras_prune.PolynomialDecay(0.0, 0.9, 0, 1000)), got "
        f"{identifier!r} of type {type(identifier).__name__}."
    )


# Longest schedule string `get` parses (a call of literal numbers is short;
# Python's parser is recursive and a long run of unary minus signs, say,
# exhausts memory).
_MAX_SCHEDULE_TEXT = 1000


def _parse(text):
    import ast

    text = text.strip()
    if len(text) > _MAX_SCHEDULE_TEXT:
        raise ValueError(
            f"Schedule string of {len(text)} characters is too long (at most "
            f"{_MAX_SCHEDULE_TEXT}); write it as e.g. "
            "'PolynomialDecay(0.5, 0.9, 2000, 10000)'."
        )
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(
            f"Cannot parse schedule {text[:80]!r}: "
            f"{getattr(e, 'msg', None) or type(e).__name__}."
        ) from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise ValueError(
            f"Expected a schedule call like 'PolynomialDecay(0.5, 0.9, 2000, "
            f"10000)', got {text!r}."
        )
    cls = _BUILTINS.get(node.func.id)
    if cls is None:
        raise ValueError(
            f"Unknown schedule {node.func.id!r}; choose one of "
            f"{sorted(_BUILTINS)}."
        )
    if any(k.arg is None for k in node.keywords):
        raise ValueError(
            f"Schedule arguments must be literal numbers in {text[:80]!r}."
        )
    names = [k.arg for k in node.keywords]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"Schedule argument {repeated[0]!r} is given more than once in "
            f"{text[:80]!r}."
        )
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(
            f"Schedule arguments must be literal numbers in {text!r}."
        ) from None
    return cls(*args, **kwargs)


_BUILTINS = {
    c.__name__: c
    for c in (PolynomialDecay, ConstantSparsity, ExponentialDecay, CosineDecay)
}


# Schedules whose host math is elementwise over an array of steps.
_VECTORIZED = (ConstantSparsity, PolynomialDecay, ExponentialDecay, CosineDecay)
