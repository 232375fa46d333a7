"""A custom schedule without `get_config()` is reported when pruning starts.

`model.save` raises its `NotImplementedError` only after Keras has opened
the file for writing, so a checkpoint saved at that path before was lost
with no earlier sign (tfmot's abstract base class refused such a class
when it was created).
"""

import keras
import numpy as np
import pytest

import keras_prune as kp


class NoConfig(kp.PruningSchedule):
    def __call__(self, step):
        return True, 0.5


class WithConfig(NoConfig):
    def get_config(self):
        return {"class_name": "WithConfig", "config": {}}


def _model():
    inp = keras.Input((8,))
    return keras.Model(inp, keras.layers.Dense(4, name="d")(inp))


@pytest.mark.parametrize("mapping", [False, True], ids=["one", "per_layer"])
def test_schedule_without_get_config_warns_when_pruning(mapping):
    schedule = {"d": NoConfig()} if mapping else NoConfig()
    with pytest.warns(UserWarning) as record:
        pruned = kp.prune_low_magnitude(_model(), schedule)
    texts = [str(w.message) for w in record]
    hits = [t for t in texts if "The pruning schedule NoConfig cannot" in t]
    assert hits, texts
    assert "NotImplementedError" in hits[0]
    assert "Implement get_config()" in hits[0]
    # It still prunes and trains (nothing needs saving).
    x = np.ones((4, 8), "float32")
    pruned.compile("sgd", "mse")
    pruned.fit(
        x, np.zeros((4, 4)), verbose=0, callbacks=[kp.UpdatePruningStep()]
    )
    assert int(kp.pruning_step(pruned)) == 1


def test_saveable_schedule_does_not_warn(recwarn):
    kp.prune_low_magnitude(_model(), WithConfig())
    kp.prune_low_magnitude(_model(), kp.PolynomialDecay(0.2, 0.8, 0, 10))
    texts = [str(w.message) for w in recwarn]
    assert not [t for t in texts if "cannot be saved" in t], texts
