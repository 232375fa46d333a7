"""prune_once and first-fit-step compile time on ResNet50 (issue 17 item 11).

Self-contained: `KERAS_BACKEND=jax python benchmarks/realmodels_compile.py
[--fit]`. Builds `keras.applications.ResNet50(weights=None,
input_shape=(32, 32, 3), classes=10)` (nothing is downloaded) and prints:

- `prune_once`: wall time of `keras_prune.prune_once(model, 0.5)` (layer
  allocation, unstructured), of `allocation="global"` and of
  `sparsity_m_by_n=(2, 4)`, each on a fresh model;
- with `--fit`: the first `train_on_batch` (compile + 1 step) of the dense
  model and of the 2:4-pruned model, and their ratio.
"""

import argparse
import time

import keras
import numpy as np

import keras_prune


def resnet():
    keras.utils.set_random_seed(0)
    return keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fit", action="store_true")
    args = parser.parse_args()
    print(f"backend={keras.backend.backend()}")
    for name, kwargs in [
        ("layer", {}),
        ("global", {"allocation": "global"}),
        ("2:4", {"sparsity_m_by_n": (2, 4)}),
    ]:
        model = resnet()
        _, seconds = timed(
            lambda m=model, kw=kwargs: keras_prune.prune_once(m, 0.5, **kw)
        )
        print(f"prune_once {name:<7} {seconds:7.2f} s")
    if args.fit:
        rng = np.random.RandomState(0)
        x = rng.randn(8, 32, 32, 3).astype("float32")
        y = rng.randint(0, 10, 8)
        dense = resnet()
        dense.compile("adam", "sparse_categorical_crossentropy")
        _, t_dense = timed(lambda: dense.train_on_batch(x, y))
        pruned = keras_prune.prune_low_magnitude(
            resnet(), sparsity_m_by_n=(2, 4)
        )
        pruned.compile("adam", "sparse_categorical_crossentropy")
        _, t_pruned = timed(lambda: pruned.train_on_batch(x, y))
        print(f"first step dense  {t_dense:7.2f} s")
        print(
            f"first step pruned {t_pruned:7.2f} s  ({t_pruned / t_dense:.2f}x)"
        )


if __name__ == "__main__":
    main()
