"""A user's subclassed model, for `test_inplace_reload.py`.

Importable (the tests add tests/ to `sys.path` of their subprocesses) so
that a new process can load the saved model. It imports only Keras: the
fresh process loads a stripped model with keras-prune blocked.
"""

import keras


@keras.saving.register_keras_serializable(package="inplace_test")
class Tower(keras.Model):
    """A nested model holding a Dense: pruned inside (a custom layer that
    holds prunable weights would be wrapped whole)."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj = keras.layers.Dense(units, activation="relu")

    def call(self, x, training=None):
        return self.proj(x, training=training) + x

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="inplace_test")
class Net(keras.Model):
    """Layers in an attribute, a list, a dict and a nested model."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.first = keras.layers.Dense(8, activation="relu")
        self.blocks = [keras.layers.Dense(8), Tower(8)]
        self.heads = {"out": keras.layers.Dense(units)}

    def call(self, x, training=None):
        # Sublayers get `training` explicitly: on JAX, `fit` runs `call`
        # without an outer call context.
        x = self.first(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.heads["out"](x, training=training)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
