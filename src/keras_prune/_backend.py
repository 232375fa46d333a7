"""The one place where keras-prune does something backend-specific.

Everything else is written with `keras.ops`. These operations fork, each
measured (see docs/benchmarks.md):

- `histogram`: `keras.ops.segment_sum` is a fast scatter-add under XLA (JAX,
  TensorFlow) but 25x slower than `index_add_` on torch (460 ms vs 17 ms for
  2^24 elements on 2 CPU cores).
- `selected_histogram`: fixed shapes with a dump bin under XLA; eager torch
  gathers the selected entries first (16.8M weights: 177 ms instead of
  259 ms per mask, peak memory 1.57x instead of 4.25x the tensor).
- `fuses_elementwise`: whether to recompute cheap values inside each pass
  (XLA) or compute them once (eager torch).
- `host_call`: running a Python schedule on the host from inside a compiled
  step: `jax.pure_callback` on JAX, `tf.numpy_function` on TensorFlow, a
  direct call on torch (eager).
- `cond`: a Python branch on torch.
- `host_callback_in_step` / `pure_host_call`: single-weight magnitude
  masks recomputed on the host from inside a compiled step
  (`jax.pure_callback`; `tf.numpy_function` in a step TensorFlow traces
  without XLA), so that the step compiles no mask selection.
- `traced_for_saving` / `checked_in_graph`: a function traced by
  `tf.saved_model.save` gets no host call (it could not run where the
  SavedModel is loaded), and checks in the graph instead.
- `shared_step_function`: a function every wrapper calls from a
  TensorFlow step, traced once (`tf.function`) instead of once per caller;
  `static_shape` / `with_shape`: its arguments and results of any shape.
- `compile_function`: `jax.jit` for mask updates run between steps (JAX
  compiles every eager operation separately; TensorFlow and torch do not).
- `count_step`: a step counter's increment inside a train step, in place
  on torch.
- `separate_train_function`: a train function whose traces are its own
  (JAX caches traces by the compiled callable).
- `zero_pruned`: the pruned weights' constraint, in place on torch (an
  in-place multiply is 4.6 us, an `assign` 17 us); `stateless_optimizer`:
  whether that constraint needs the masks' traced values (JAX).
- `host_array` / `from_host`: the NumPy view of an eager CPU tensor (no
  copy on any backend), for mask math run on the host, and back.
- `to_device` / `copy_value`: a NumPy array as a backend array, and a
  copy of a backend array, without compiling: JAX (0.10) compiles
  `jnp.asarray(numpy_array)` once per shape and dtype (`jit(stage)`), so a
  ResNet50's masks and copied weights compiled ~50 programs; `device_put`
  compiles none.
- `compile_eager`: the compiled function an eager call on an accelerator
  runs: `jax.jit`, `tf.function(jit_compile=True)`, eager torch; one per
  function and input shape and dtype, created once.
- `items_replaced`: on TensorFlow, a list attribute of a layer is a
  `ListWrapper` that refuses to be saved as a SavedModel (so TFLite
  conversion and `model.export` fail) once an element was replaced or
  deleted; swapping layers in place (wrapping, `strip_pruning`) does
  exactly that, so the swap acknowledges its own change.
"""

import functools
import sys
import weakref

import keras
import numpy as np
from keras import ops


def histogram(ids, num_bins):
    """Counts of each value of the int32 vector `ids` in `[0, num_bins)`."""
    if keras.backend.backend() == "torch":
        import torch

        ids = ops.convert_to_tensor(ids)
        ones = torch.ones((1,), dtype=torch.int32, device=ids.device)
        counts = torch.zeros((num_bins,), dtype=torch.int32, device=ids.device)
        return counts.index_add_(0, ids, ones.expand(ids.shape[0]))
    ones = ops.ones_like(ids, dtype="int32")
    return ops.segment_sum(ones, ids, num_segments=num_bins)


def selected_histogram(ids, selected, num_bins):
    """`histogram` of the entries of `ids` where `selected` is True.

    Under XLA the others go to a dump bin (fixed shapes); eager torch
    gathers the few selected entries first (one bucket of 65,536 holds a
    small fraction of a tensor), which is faster and allocates less.
    """
    if keras.backend.backend() == "torch":
        ids = ops.convert_to_tensor(ids)
        return histogram(ids[ops.convert_to_tensor(selected)], num_bins)
    dumped = ops.where(selected, ids, num_bins)
    return histogram(dumped, num_bins + 1)[:num_bins]


def host_call(fn, step):
    """Runs `fn(numpy.int64 step) -> (bool, float32)` from a compiled step.

    Args:
        fn: Host function returning `(numpy bool, numpy float32)`.
        step: Scalar int tensor.

    Returns:
        `(should_prune, sparsity)` as backend tensors (bool, float32).
    """
    backend = keras.backend.backend()

    def wrapped(s):
        p, v = fn(np.asarray(s).astype(np.int64).item())
        return np.asarray(p, dtype=bool), np.asarray(v, dtype=np.float32)

    if backend == "jax":
        import jax

        if not isinstance(step, jax.core.Tracer):
            # Not traced (`run_eagerly=True`): call it here, so that a
            # schedule's ValueError is raised as itself (a callback's error
            # surfaces as `JaxRuntimeError`).
            pred, value = wrapped(np.asarray(step))
            return ops.convert_to_tensor(pred), ops.convert_to_tensor(value)
        shapes = (
            jax.ShapeDtypeStruct((), np.bool_),
            jax.ShapeDtypeStruct((), np.float32),
        )
        return jax.pure_callback(wrapped, shapes, step)
    if backend == "tensorflow":
        import tensorflow as tf

        pred, value = tf.numpy_function(
            wrapped, [step], [tf.bool, tf.float32], stateful=False
        )
        pred.set_shape(())
        value.set_shape(())
        return pred, value
    pred, value = wrapped(ops.convert_to_numpy(step))
    return ops.convert_to_tensor(pred), ops.convert_to_tensor(value)


def host_callback_in_step():
    """Whether a compiled step may run mask math on the host.

    A host call compiles to one operation: a pruned `fit` without
    `UpdatePruningStep` otherwise compiles every weight's mask selection
    into the train step (XLA compile 2.6x the dense step's on ResNet50 on
    JAX; TensorFlow's first step 3.3x the dense one's).

    - JAX: `jax.pure_callback`, except under a `keras.distribution` (the
      callback would gather every sharded weight onto one host).
    - TensorFlow: `tf.numpy_function`, only in a step traced without XLA
      (Keras' default on CPU-only machines; XLA cannot compile it, so a
      step compiled with XLA, e.g. `jit_compile=True` or Keras' default on
      GPUs, keeps the in-graph math), outside a `tf.distribute`
      strategy, and not while `tf.saved_model.save` traces a function to
      save (a saved training signature: a host call cannot be served, its
      Python callback does not exist where the model is loaded). Read
      while the step is traced.
    - torch runs eagerly: never.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return keras.distribution.distribution() is None
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        if tf.executing_eagerly() or tf.distribute.has_strategy():
            return False
        if traced_for_saving():  # a host call cannot be served
            return False
        graph = tf.compat.v1.get_default_graph()
        return not control_flow_util.GraphOrParentsInXlaContext(graph)
    return False


def traced_for_saving():
    """Whether `tf.saved_model.save` is tracing the current function.

    A SavedModel cannot hold a host call (`tf.numpy_function`): its Python
    callback does not exist where the model is loaded, so a saved training
    function (a user's `tf.Module` signature, a Keras `ExportArchive`
    endpoint) must be traced without one. False on JAX and torch.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    from tensorflow.python.saved_model import save_context

    return save_context.in_save_context()


def checked_in_graph(valid, message, values):
    """`values`, after an in-graph assertion that `valid` holds.

    For functions saved without host calls (`traced_for_saving`): the
    saved step fails with `message` where the host would have raised.
    TensorFlow only.

    Args:
        valid: bool scalar tensor.
        message: str.
        values: Tuple of tensors to return.

    Returns:
        `values`, each computed after the assertion.
    """
    import tensorflow as tf

    with tf.control_dependencies([tf.debugging.Assert(valid, [message])]):
        return tuple(tf.identity(v) for v in values)


def pure_host_call(fn, args, results):
    """`fn(*numpy_args)` run on the host from a compiled step.

    Args:
        fn: NumPy function returning a tuple of arrays matching `results`.
        args: Backend tensors (gradients are stopped).
        results: List of `(shape, dtype)` of `fn`'s outputs (`shape` None:
            not known while tracing, TensorFlow only).

    Returns:
        Tuple of backend tensors.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # stateful: with stateful=False TensorFlow ran the host select of a
        # ResNet50 at every step, not only under its `cond` (2.2x the
        # dense step without `UpdatePruningStep`; 1.00x stateful).
        out = tf.numpy_function(
            fn,
            [tf.stop_gradient(a) for a in args],
            [tf.as_dtype(np.dtype(dtype)) for _, dtype in results],
            stateful=True,
        )
        for tensor, (shape, _) in zip(out, results):
            if shape is not None:
                tensor.set_shape(tuple(shape))
        return tuple(out)
    import jax

    specs = tuple(
        jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype))
        for shape, dtype in results
    )
    args = [jax.lax.stop_gradient(a) for a in args]
    return jax.pure_callback(fn, specs, *args)


# key -> the `tf.function` of `shared_step_function` (TensorFlow).
_SHARED_STEP_FUNCTIONS = {}


def shared_step_function(key, fn, specs):
    """`fn` as called from compiled steps: traced once per `key`.

    TensorFlow traces each Python function called from a train step into
    that step's graph: a `cond` per wrapper costs ~10 ms of tracing
    (ResNet50, 54 wrappers: 1 s of a first step). On TensorFlow this
    returns one `tf.function` per `key`, traced once for `specs` (shapes
    with `None` for any length), which every caller's graph calls. JAX
    traces a whole step as one program and torch runs eagerly: `fn`
    itself.

    Args:
        key: Hashable name of what `fn` computes (the same `key` must mean
            the same `fn` and `specs`).
        fn: Function of tensors, free of any caller's state.
        specs: `(shape, dtype)` of each argument (`shape` None: any
            shape).

    Returns:
        A callable with `fn`'s arguments and results.
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    function = _SHARED_STEP_FUNCTIONS.get(key)
    if function is None:
        import tensorflow as tf

        signature = [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
        # Not inlined: each call stays one operation of the caller's graph
        # (inlined, its `cond` added ~80 nodes per wrapper that Grappler
        # then optimized: ResNet50's first step spent 3.4x the dense
        # graph's optimization time). Called as its concrete function:
        # no argument binding per call.
        function = tf.function(
            fn,
            input_signature=signature,
            autograph=False,
            experimental_attributes={"_noinline": True},
        ).get_concrete_function()
        _SHARED_STEP_FUNCTIONS[key] = function
    return function


def static_shape(x):
    """`x`'s shape as a tuple, or None where its rank is not known while
    tracing (a TensorFlow function traced for any shape)."""
    shape = x.shape
    if getattr(shape, "rank", 0) is None:
        return None
    return tuple(shape)


def with_shape(x, shape):
    """`x`, whose shape is `shape`, with that shape known while tracing.

    The outputs of a `shared_step_function` traced for any shape have no
    static shape on TensorFlow; setting it adds no operation (Keras'
    `assign` checks it). Elsewhere shapes are always known.
    """
    if keras.backend.backend() == "tensorflow":
        x.set_shape(shape)
    return x


def fuses_elementwise():
    """Whether cheap elementwise work is fused into its consumers (XLA).

    Then recomputing a value in each pass that reads it costs no memory;
    torch runs eagerly, where computing it once and slicing it is faster.
    """
    return keras.backend.backend() != "torch"


def cond(pred, true_fn, false_fn):
    """`keras.ops.cond`, but a Python branch on torch.

    `keras.ops.cond` creates a new named operation per call, which makes
    `torch.compile` recompile every step; torch runs eagerly anyway.
    """
    if keras.backend.backend() == "torch":
        return true_fn() if bool(pred) else false_fn()
    return ops.cond(pred, true_fn, false_fn)


def compile_function(fn):
    """`fn` compiled with `jax.jit` on JAX; as it is elsewhere.

    For the structured and grouped mask updates that `UpdatePruningStep`
    runs between steps. Run op by op, JAX compiles every operation
    separately (80 compilations, 2.5 s for one update of a 3-layer MLP);
    TensorFlow and torch run eager operations without compiling (XLA on
    TensorFlow took 3.0 s for the same first update, eager 0.11 s).
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def count_step(counter):
    """`counter += 1` for an int32 step variable, inside a train step.

    torch adds in place (4.6 us; an `assign` is 17 us); JAX and TensorFlow
    assign (a scalar update of the compiled step's state).
    """
    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            counter.value.add_(1)
        return
    counter.assign(ops.convert_to_tensor(counter) + 1)


def stateless_optimizer():
    """Whether the compiled train step applies the optimizer in a stateless
    scope that maps only trainable and optimizer variables (JAX): there a
    constraint must take other variables' values from the step's state."""
    return keras.backend.backend() == "jax"


def write_version(variable):
    """A token that changes whenever `variable` is written in place.

    torch, eager: the variable's own tensor (not the cast copy `value`
    returns under a mixed-precision autocast scope), its storage, and its
    version counter, which every in-place write (`assign`, an optimizer's
    update) bumps (`stored_sparse`). Two tokens are equal only for the same
    live tensor, storage and version: a tensor Keras or the user put in
    the variable's place, a `.data =` swap, or another variable that got a
    freed one's id, never matches an old token. None where writes cannot
    be followed this way: JAX and TensorFlow (compiled steps are functions
    of the variables' values) and torch while `torch.compile` traces.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch

    if torch.compiler.is_compiling():
        return None
    return _WriteVersion(_own_tensor(variable))


def _own_tensor(variable):
    """The tensor a torch Keras variable holds (its `value` is a cast copy
    in an autocast scope: writing that copy would not write the variable)."""
    own = getattr(variable, "_value", None)
    return variable.value if own is None else own


class _WriteVersion:
    """`write_version`'s token: a tensor (weakly), its storage and version."""

    __slots__ = ("ref", "pointer", "version")

    def __init__(self, tensor):
        self.ref = weakref.ref(tensor)
        self.pointer = tensor.data_ptr()
        self.version = tensor._version

    def __eq__(self, other):
        if not isinstance(other, _WriteVersion):
            return NotImplemented
        tensor = self.ref()
        return (
            tensor is not None
            and tensor is other.ref()
            and self.pointer == other.pointer
            and self.version == other.version
        )

    __hash__ = None


def zero_pruned(w, mask):
    """`where(mask, w, 0)`: a pruned weight's constraint (`host_updates`).

    Args:
        w: The weight (a Keras variable) or a tensor (the result of the
            weight's own constraint).
        mask: Bool tensor of `w`'s shape.

    Returns:
        The new value. On torch a variable is updated in place (a bool
        multiplier is 5x slower than its uint8 view, 458 vs 95 us for 1M
        weights; `+ 0.0` turns the -0.0 of negative weights into +0.0) and
        its own tensor is returned, so Keras' `assign` of it copies
        nothing.
    """
    if keras.backend.backend() == "torch" and isinstance(w, keras.Variable):
        import torch

        with torch.no_grad():
            value = _own_tensor(w)  # not an autocast copy
            mask = ops.convert_to_tensor(mask)
            value.mul_(mask.view(torch.uint8)).add_(0.0)
        return value
    # `where`, not a multiply: graph optimizers drop a `+ 0.0` that would
    # turn the -0.0 of negative weights into +0.0.
    return ops.where(mask, ops.convert_to_tensor(w), 0)


def separate_train_function(model):
    """A train function for `fit` of `model`, traced apart from Keras' own.

    Host mode (`host_updates`) traces Keras' train step with its wrappers in
    host mode, and that trace must never serve in-step training, nor the
    reverse. TensorFlow's `make_train_function` makes a new `tf.function`
    (its own traces) and torch runs eagerly. JAX's `jit` caches traces by
    the function it compiles, and every `make_train_function` jits the same
    bound method, `model.train_step`: a second one would reuse the first
    one's trace. So on JAX this jits a new callable around Keras' step, as
    Keras does with one step per execution and no distribution (what host
    mode requires).

    Args:
        model: A compiled model.

    Returns:
        A function `fit` calls as `model.train_function`.
    """
    if (
        keras.backend.backend() == "jax"
        and not model.run_eagerly
        and model.jit_compile
        and not keras.config.is_nnx_enabled()  # Keras jits a new lambda
    ):
        import jax

        step = jax.jit(
            lambda state, data: model.train_step(state, data),
            donate_argnums=0,
        )

        def train_function(state, iterator):
            return step(state, next(iterator))

        return train_function
    model.make_train_function(force=True)
    return model.train_function


def host_array(x):
    """A NumPy view of the eager CPU tensor `x`, or None.

    No copy on any backend: JAX CPU arrays and torch CPU tensors share their
    buffer with NumPy, and TensorFlow's eager tensors expose theirs through
    the buffer protocol (`.numpy()` would copy). None when `x` is symbolic
    or traced (inside a compiled function) or lives on an accelerator; the
    caller then runs its backend code.

    Args:
        x: A NumPy array, a Keras variable or a backend tensor.

    Returns:
        A read-only-safe NumPy array (do not write to it) or None.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.Variable):
        x = x.value
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            if isinstance(x, jax.core.Tracer) or not isinstance(x, jax.Array):
                return None
            if any(d.platform != "cpu" for d in x.devices()):
                return None
            return np.asarray(x)
        if backend == "tensorflow":
            import tensorflow as tf

            if isinstance(x, tf.Variable):
                if not tf.executing_eagerly():
                    return None
                x = x.read_value()
            if not tf.executing_eagerly() or not hasattr(x, "_numpy"):
                return None
            if "CPU" not in x.device:
                return None
            try:
                return np.asarray(memoryview(x))
            except (TypeError, ValueError, BufferError):
                return x.numpy()  # dtypes without a buffer format
        if backend == "torch":
            import torch

            if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
                return None
            if torch.compiler.is_compiling():
                return None
            return x.detach().numpy()
    except Exception:  # e.g. a tensor without data while tracing
        return None
    return None


def read_ints(variables):
    """The values of integer scalar variables, with one transfer.

    TensorFlow reads a variable to the host in ~0.1-0.2 ms: the 54 step
    counters of a pruned ResNet50, read one by one, took 5-12 ms of each
    `fit`'s start, stacked 0.9 ms. JAX and torch read a scalar in ~15 us,
    and a stack would compile on JAX: read one by one there.

    Args:
        variables: Keras variables (or tensors) of integer scalars.

    Returns:
        A list of Python ints, in order.
    """
    variables = list(variables)
    if keras.backend.backend() == "tensorflow" and len(variables) > 1:
        import tensorflow as tf

        if tf.executing_eagerly():
            values = [
                v.value if isinstance(v, keras.Variable) else v
                for v in variables
            ]
            if len({v.dtype for v in values}) > 1:
                values = [tf.cast(v, tf.int64) for v in values]
            return [int(v) for v in tf.stack(values).numpy()]
    return [int(ops.convert_to_numpy(v)) for v in variables]


def resolved(x):
    """`x`, or a torch tensor's lazy negation or conjugation applied.

    `t.neg()` views of some torch operations (`torch._neg_view`, the
    imaginary part of a conjugated tensor) carry a negative bit: NumPy
    cannot read them (`.numpy()` and Keras' `convert_to_numpy` raise) and
    `Tensor.view` to another dtype refuses them. The checks that read an
    eager value then took such a tensor for a symbolic one and skipped it
    (a sparsity of -0.5 passed), and `magnitude_mask` ended in torch's
    "negative bit" error. Resolved here, they are plain tensors (a copy,
    only for such tensors).

    Args:
        x: Anything; only torch tensors with the bit set are changed.
    """
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and isinstance(x, torch.Tensor)
        and (x.is_neg() or x.is_conj())
    ):
        return x.resolve_conj().resolve_neg()
    return x


def host_zeros(size, dtype):
    """A flat NumPy array of zeros whose buffer `from_host` can share.

    TensorFlow shares only 64-byte aligned buffers (`from_host`), and
    NumPy aligns large arrays to 16 bytes: a mask built on the host in an
    unaligned buffer was copied once more on its way into the variable
    (300M weights: peak extra 0.75x the weights' bytes instead of 0.5x).
    """
    dtype = np.dtype(dtype)
    raw = np.zeros(size * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size * dtype.itemsize].view(dtype)


def from_host(array):
    """The NumPy `array` as a CPU backend tensor, sharing its buffer.

    torch: `torch.from_numpy`; TensorFlow and JAX: DLPack (no copy), or a
    copy where DLPack refuses the array.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.from_numpy(array)
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            # TensorFlow takes an unaligned buffer through DLPack without a
            # word and aborts the process at its next use (`Check failed:
            # IsAligned()`): share only 64-byte aligned buffers.
            if array.ctypes.data % 64 == 0:
                return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
            return tf.convert_to_tensor(array)
        if backend == "jax":
            import jax.numpy as jnp

            return jnp.from_dlpack(array)
    except Exception:  # unaligned or unsupported: copy
        pass
    return ops.convert_to_tensor(array)


def to_device(array):
    """The NumPy `array` as a value Keras takes without compiling anything.

    JAX: `jax.device_put` onto the default device (on CPU it keeps the
    array's buffer; do not write to `array` afterwards). TensorFlow and
    torch: `array` itself (Keras converts it without compiling).

    Args:
        array: A NumPy array.

    Returns:
        A JAX array (JAX) or `array`.
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.device_put(array)
    return array


def copy_value(x):
    """A copy of the eager backend array (or variable) `x`, to assign.

    JAX: a new buffer (`device_put(..., may_alias=False)`: no compile; a
    shared buffer would be freed by a train step that donates it).
    TensorFlow and torch: the value itself, which `Variable.assign` copies.

    Args:
        x: A Keras variable or an eager backend array.

    Returns:
        A backend array to pass to `Variable.assign`.
    """
    if isinstance(x, keras.Variable):
        x = x.value
    if keras.backend.backend() == "jax":
        import jax

        return jax.device_put(x, may_alias=False)
    return x


def assign_from_host(variable, array):
    """`variable.assign(array)` for a NumPy `array`, without a second copy.

    The mask of a 300M-weight tensor is 300 MB: torch copies it into the
    variable's buffer in place; TensorFlow and JAX take the array's buffer
    (DLPack; JAX's `device_put` keeps a NumPy array's buffer on CPU).

    Args:
        variable: A Keras variable on the CPU.
        array: NumPy array of the variable's shape and dtype; it must not
            be written to afterwards.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        with torch.no_grad():
            variable.value.copy_(torch.from_numpy(array))
        return
    if backend == "tensorflow":
        variable.assign(from_host(array))
        return
    variable.assign(to_device(array))  # JAX: keeps the buffer, compiles none


@functools.lru_cache(maxsize=None)
def compile_eager(fn, *key):
    """`fn` compiled for eager calls on accelerators, once per `(fn, key)`.

    Pass the input shapes and dtypes as `key`: each gets its own
    `jax.jit` or `tf.function(jit_compile=True)`, traced once, so no
    retracing happens and no traced shape is generalised to `None` (the
    mask math needs static sizes). torch runs `fn` eagerly
    (`torch.compile` costs seconds per shape, more than it saves here).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def is_traced(x):
    """Whether `x` is symbolic: a tracer or graph tensor without a value."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return True
        return isinstance(x, tf.Tensor) and not hasattr(x, "_numpy")
    import torch

    return torch.compiler.is_compiling()


def items_replaced(items):
    """Acknowledges an in-place replacement or deletion in a layer's list.

    TensorFlow wraps list attributes of layers in a `ListWrapper` that
    marks itself unsaveable after any `__setitem__`/`__delitem__` (it
    could not be restored on creation from a checkpoint). A layer swap
    (`rewrite.swap_layers`) replaces elements on purpose and the list then
    holds exactly what is to be saved, so the mark is cleared: without
    this, `model.export(...)` and `tf.lite.TFLiteConverter.from_keras_model`
    fail on pruned and stripped models. No-op on other backends and lists.

    Args:
        items: The list (or `ListWrapper`) just changed in place.
    """
    if keras.backend.backend() != "tensorflow":
        return
    if not hasattr(items, "_non_append_mutation_value"):
        return
    items._non_append_mutation = False
    items._update_snapshot()
