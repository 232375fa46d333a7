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
"""

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
