"""Runs pruning under a distribution strategy; started by test_distributed.py.

    python _distributed_worker.py SCENARIO OUT_DIR

Each scenario needs a fresh process: the device setup (4 virtual JAX CPUs,
2 logical TF CPUs, a TF cluster, a torch process group) has to be in place
before the backend starts. The worker writes `OUT_DIR/<SCENARIO>[_rank].pkl`,
a dict of numpy arrays and Python values (or `error/<key>`: an exception's
text), which the test compares with a run on one device.

The model, data and training helpers below are shared with the test, which
imports this module: nothing here imports a backend at module level.
"""

import os
import pickle
import sys
import traceback

import numpy as np

BATCH = 16  # global batch
STEPS = 8
MODES = ("layer", "global", "m_by_n")


# ------------------------------------------------------- shared helpers


def data():
    rng = np.random.RandomState(1)
    x = rng.randn(BATCH * STEPS, 32).astype("float32")
    y = rng.randn(BATCH * STEPS, 4).astype("float32")
    return x, y


def initial_weights(split_columns=False):
    """Dense 32->16 ("big") and 16->4 ("out") weights.

    With `split_columns`, columns 0-7 of the big kernel are large (>= 1) and
    columns 8-15 tiny (< 1e-3): a 50% threshold over the whole kernel prunes
    exactly columns 8-15, a per-shard threshold half of each shard.
    """
    rng = np.random.RandomState(0)
    big = rng.randn(32, 16).astype("float32")
    if split_columns:
        sign = np.sign(big) + (big == 0)
        big[:, :8] = sign[:, :8] * (1.0 + np.abs(big[:, :8]))
        big[:, 8:] = sign[:, 8:] * 1e-4 * (1.0 + np.abs(big[:, 8:]))
    return [
        big,
        rng.randn(16).astype("float32") * 0.1,
        rng.randn(16, 4).astype("float32"),
        rng.randn(4).astype("float32") * 0.1,
    ]


def prune_kwargs(mode):
    import keras_prune as kp

    if mode == "layer":
        return {
            "pruning_schedule": kp.PolynomialDecay(
                0.25, 0.75, 0, 6, frequency=2
            )
        }
    if mode == "global":
        return {
            "pruning_schedule": kp.PolynomialDecay(
                0.25, 0.75, 0, 6, frequency=2
            ),
            "allocation": "global",
        }
    if mode == "m_by_n":
        return {
            "pruning_schedule": kp.ConstantSparsity(0.5, 0, frequency=2),
            "sparsity_m_by_n": (2, 4),
        }
    if mode == "split":  # the ModelParallel test: 50% of the split kernel
        return {"pruning_schedule": kp.ConstantSparsity(0.5, 0, frequency=2)}
    raise ValueError(mode)


def pruned_model(mode, split_columns=False):
    """A Functional Dense 32->16->4 model, pruned; build it in the scope."""
    import keras

    import keras_prune as kp

    inputs = keras.Input((32,))
    hidden = keras.layers.Dense(16, name="big")(inputs)
    outputs = keras.layers.Dense(4, name="out")(hidden)
    model = keras.Model(inputs, outputs)
    model.set_weights(initial_weights(split_columns))
    return kp.prune_low_magnitude(model, **prune_kwargs(mode))


def compile_model(model, lr=0.05, jit_compile="auto"):
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(lr), loss="mse", jit_compile=jit_compile
    )


def fit(model):
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)


def wrappers(model):
    import keras_prune as kp

    return {
        w.layer.name: w for w in kp.integration.strip.pruning_wrappers(model)
    }


def state(model, prefix=""):
    """Masks, kernels, steps and optimizer iterations as numpy values."""
    import keras

    def np_(v):
        return np.asarray(keras.ops.convert_to_numpy(v))

    out = {}
    for name, w in wrappers(model).items():
        out[f"{prefix}{name}/mask"] = np_(w.masks[0])
        out[f"{prefix}{name}/kernel"] = np_(w.pruned_weights[0])
        out[f"{prefix}{name}/step"] = int(np_(w.pruning_step))
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        out[f"{prefix}iterations"] = int(np_(optimizer.iterations))
    return out


def record(out, key, fn):
    """Runs `fn()` and merges its dict into `out`; an error is recorded."""
    try:
        out.update(fn())
    except Exception:  # reported by the test, which fails or xfails on it
        out[f"error/{key}"] = traceback.format_exc()


# --------------------------------------------------------- JAX scenarios


def _spec(variable):
    return str(tuple(variable.value.sharding.spec))


def jax_distribution(out_dir):
    import keras

    out = {"devices": len(keras.distribution.list_devices())}

    # 1. DataParallel over 4 devices, every mode.
    for mode in MODES:

        def run(mode=mode):
            with keras.distribution.DataParallel().scope():
                model = pruned_model(mode)
                compile_model(model)
                fit(model)
                res = state(model, f"dp/{mode}/")
                w = wrappers(model)["big"]
                res[f"dp/{mode}/mask_spec"] = _spec(w.masks[0])
                res[f"dp/{mode}/mask_devices"] = len(
                    w.masks[0].value.sharding.device_set
                )
            return res

        record(out, f"dp/{mode}", run)

    # 2. ModelParallel on a (2, 2) mesh; the LayoutMap names the unpruned
    # model's paths.
    mesh = keras.distribution.DeviceMesh((2, 2), ("batch", "model"))
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["big/kernel"] = (None, "model")
    layout_map["out/kernel"] = ("model", None)
    mp = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )

    def run_mp():
        with mp.scope():
            model = pruned_model("split", split_columns=True)
            compile_model(model)
            fit(model)
            res = state(model, "mp/")
            for name, w in wrappers(model).items():
                kernel, mask = w.pruned_weights[0], w.masks[0]
                res[f"mp/{name}/kernel_path"] = kernel.path
                res[f"mp/{name}/kernel_spec"] = _spec(kernel)
                res[f"mp/{name}/mask_spec"] = _spec(mask)
                res[f"mp/{name}/mask_shards"] = sorted(
                    tuple(s.data.shape) for s in mask.value.addressable_shards
                )
                res[f"mp/{name}/threshold_spec"] = _spec(w.thresholds[0])
                res[f"mp/{name}/step_spec"] = _spec(w.pruning_step)
            model.save(os.path.join(out_dir, "mp.keras"))
            model.save_weights(os.path.join(out_dir, "mp.weights.h5"))
        return res

    record(out, "mp", run_mp)

    # 3. A checkpoint written on one device (by the test), loaded under
    # ModelParallel: same masks and step, and the loaded masks are sharded.
    def run_load():
        with mp.scope():
            model = pruned_model("split", split_columns=True)
            model.load_weights(os.path.join(out_dir, "single.weights.h5"))
            res = state(model, "mp_loaded/")
            w = wrappers(model)["big"]
            res["mp_loaded/big/mask_spec"] = _spec(w.masks[0])
            loaded = keras.saving.load_model(
                os.path.join(out_dir, "single.keras")
            )
            res.update(state(loaded, "mp_loaded_keras/"))
            res["mp_loaded_keras/big/mask_spec"] = _spec(
                wrappers(loaded)["big"].masks[0]
            )
        return res

    record(out, "mp_loaded", run_load)
    return out


# --------------------------------------------------- TensorFlow scenarios


def tf_mirrored(out_dir):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}
    for mode in MODES:

        def run(mode=mode):
            with strategy.scope():
                model = pruned_model(mode)
                # XLA fails under tf.distribute on logical CPUs, even for
                # unpruned models: docs/distributed.md.
                compile_model(model, jit_compile=False)
            fit(model)
            res = state(model, f"mirrored/{mode}/")
            for name, w in wrappers(model).items():
                res[f"mirrored/{mode}/{name}/replica_masks"] = [
                    v.numpy() for v in w.masks[0].value.values
                ]
                res[f"mirrored/{mode}/{name}/replica_steps"] = [
                    int(v.numpy()) for v in w.pruning_step.value.values
                ]
            if mode == "layer":
                model.save_weights(os.path.join(out_dir, "mirrored.weights.h5"))
            return res

        record(out, f"mirrored/{mode}", run)

    def run_load():
        with strategy.scope():
            loaded = keras.saving.load_model(
                os.path.join(out_dir, "single.keras")
            )
        res = state(loaded, "mirrored_loaded/")
        res["mirrored_loaded/big/replica_masks"] = [
            v.numpy() for v in wrappers(loaded)["big"].masks[0].value.values
        ]
        return res

    record(out, "mirrored_loaded", run_load)
    return out


def tf_multi_worker(out_dir):
    """MultiWorkerMirroredStrategy, one replica per worker process.

    Keras 3.15 `fit` fails under this strategy for any model (keras-team/
    keras#20585), so this is the usual custom loop: `strategy.run` of a
    GradientTape step; the Keras optimizer sums gradients over replicas.
    Worker `i` takes rows `[8 i, 8 i + 8)` of every global batch of 16.
    """
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    out = {"replicas": strategy.num_replicas_in_sync}
    x, y = data()

    def dataset_fn(context):
        i, n = context.input_pipeline_id, context.num_input_pipelines
        per = BATCH // n

        def mine(a):
            a = a.reshape(STEPS, BATCH, -1)[:, i * per : (i + 1) * per]
            return a.reshape(STEPS * per, -1)

        return tf.data.Dataset.from_tensor_slices((mine(x), mine(y))).batch(per)

    def run():
        with strategy.scope():
            model = pruned_model("layer")
            optimizer = keras.optimizers.SGD(0.05)
            optimizer.build(model.trainable_variables)

        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                # The mean squared error over the global batch.
                loss = tf.reduce_sum(tf.square(pred - yb)) / (BATCH * 4)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)

        @tf.function
        def train_step(xb, yb):
            strategy.run(replica_step, args=(xb, yb))

        for xb, yb in strategy.distribute_datasets_from_function(dataset_fn):
            train_step(xb, yb)
        res = state(model, "mwms/")
        res["mwms/iterations"] = int(
            keras.ops.convert_to_numpy(optimizer.iterations)
        )
        return res

    record(out, "mwms", run)
    return out


# ---------------------------------------------------------- torch scenario


def torch_train(model, rank=0, world=1):
    """A custom loop; with `world > 1`, gradients are all-reduced (gloo).

    Each rank takes its slice of every global batch of `BATCH` samples.
    """
    import keras
    import torch

    x, y = data()
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)
    per_rank = BATCH // world
    for step in range(STEPS):
        lo = step * BATCH + rank * per_rank
        xb = torch.as_tensor(x[lo : lo + per_rank])
        yb = torch.as_tensor(y[lo : lo + per_rank])
        model.zero_grad()
        loss = torch.mean((model(xb, training=True) - yb) ** 2)
        loss.backward()
        grads = [v.value.grad for v in model.trainable_variables]
        if world > 1:
            for g in grads:
                torch.distributed.all_reduce(g)
                g /= world
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
    return optimizer


def torch_gloo(out_dir):
    import keras
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out = {"rank": rank}

    def run():
        model = pruned_model("layer")
        optimizer = torch_train(model, rank, world)
        res = state(model, "gloo/")
        res["gloo/iterations"] = int(
            keras.ops.convert_to_numpy(optimizer.iterations)
        )
        return res

    try:
        record(out, "gloo", run)
    finally:
        dist.destroy_process_group()
    return out


SCENARIOS = {
    "jax_distribution": jax_distribution,
    "tf_mirrored": tf_mirrored,
    "tf_multi_worker": tf_multi_worker,
    "torch_gloo": torch_gloo,
}


def main(scenario, out_dir):
    out = SCENARIOS[scenario](out_dir)
    suffix = f"_{os.environ['RANK']}" if "RANK" in os.environ else ""
    if scenario == "tf_multi_worker":
        suffix = f"_{os.environ['KP_TASK_INDEX']}"
    with open(os.path.join(out_dir, f"{scenario}{suffix}.pkl"), "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
