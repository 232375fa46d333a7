"""Benchmark: what a pruned torch step pays per pruned weight (issue 17.12).

Without `UpdatePruningStep`, torch trains a pruned model eagerly with each
pruned weight masked in the forward pass (`w * mask`), so that pruned
weights get zero gradients. This times, on tensors of the sizes of
ResNet50's 54 pruned kernels (23.5M weights, half of them pruned at 50%),
side by side in one process:

- `mask float`: the forward multiply by the bool mask cast to float (what
  keras-prune runs);
- `mask uint8`: the multiply by the mask's uint8 view, tried in session 11
  and dropped: no faster, and autograd keeps the view of the mask
  variable, so a second training forward pass before the backward one (its
  mask update writes the mask in place) made the backward pass fail;
- `backward`: the gradient of that multiply (`grad * mask`), which autograd
  runs once per step;
- `sqrt dense v` / `sqrt pruned v`: `torch._foreach_sqrt` of Adam's second
  moments, as Keras' torch Adam runs it every step, when no weight is
  pruned and when half of them (scattered, as magnitude pruning leaves
  them) have had zero gradients, so that their second moment is exactly 0;
- `update, NumPy select` / `update, tensor select`: one in-step mask update
  of all 54 wrappers of a pruned ResNet50 at 50% (what a step at which the
  schedule prunes adds), through the eager branch of `MaskUpdate.update`:
  the NumPy select `prune_once` uses (since session 11) and the torch radix
  select it replaced (`_backend.host_array` patched to find no host
  copy of the weights, the condition that keeps it: traced or on a GPU).

Usage (from the repository root):

    python -m benchmarks.torch_step_parts

Prints a markdown table of the median of `--repeats` timings (ms).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")


def _pruned_resnet50():
    """The pruned ResNet50 of `benchmarks.real_models` and its wrappers."""
    from benchmarks import real_models
    from keras_prune.integration import state

    model = real_models.model_for("resnet50", "pruned")
    return state.pruning_wrappers(model)


def _time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _update_rows(wrappers, repeats):
    from keras import ops

    from keras_prune import _backend

    should_prune = ops.convert_to_tensor(True)
    sparsity = ops.convert_to_tensor(0.5, "float32")

    def update():
        for wrapper in wrappers:
            wrapper.mask_update().update(should_prune, sparsity)

    host_array = _backend.host_array
    rows = {"update, NumPy select": _time(update, repeats)}
    _backend.host_array = lambda x: None
    try:
        rows["update, tensor select"] = _time(update, repeats)
    finally:
        _backend.host_array = host_array
    return rows


def run(repeats):
    import torch

    torch.manual_seed(0)
    wrappers = _pruned_resnet50()
    shapes = [tuple(w.shape) for x in wrappers for w in x.pruned_weights]
    weights = [torch.randn(s) for s in shapes]
    masks = [torch.rand(s) > 0.5 for s in shapes]
    grads = [torch.randn(s) for s in shapes]
    v_dense = [g * g * 1e-3 for g in grads]
    v_pruned = [v * m for v, m in zip(v_dense, masks)]

    def mask_float():
        return [w * m.to(w.dtype) for w, m in zip(weights, masks)]

    def mask_uint8():
        return [w * m.view(torch.uint8) for w, m in zip(weights, masks)]

    def backward():
        return [g * m.view(torch.uint8) for g, m in zip(grads, masks)]

    rows = {
        "mask float": _time(mask_float, repeats),
        "mask uint8": _time(mask_uint8, repeats),
        "backward": _time(backward, repeats),
        "sqrt dense v": _time(lambda: torch._foreach_sqrt(v_dense), repeats),
        "sqrt pruned v": _time(lambda: torch._foreach_sqrt(v_pruned), repeats),
    }
    rows.update(_update_rows(wrappers, max(3, repeats // 4)))
    n = sum(w.numel() for w in weights)
    print(
        f"{len(shapes)} kernels, {n / 1e6:.1f}M weights, torch threads "
        f"{torch.get_num_threads()}"
    )
    print("| part | ms |\n|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.1f} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    run(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
