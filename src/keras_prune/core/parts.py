"""`Part`: what `Score`, `Pattern` and `Allocation` share.

A part of the mask update is a small serialisable object, equal to another
of the same class and config (so that configs compare and compiled
functions are shared by equal parts).
"""


class Part:
    """Config, equality and `repr` of a pluggable part (by its config)."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def resolve(identifier, base, names):
    """`identifier` as an instance of `base`, or None if it is none.

    Accepts an instance, a subclass (instantiated without arguments), its
    saved Keras config, or a name of `names` (`{name: class}`).
    """
    import keras

    if isinstance(identifier, str) and identifier in names:
        return names[identifier]()
    if isinstance(identifier, dict) and "class_name" in identifier:
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, type) and issubclass(identifier, base):
        identifier = identifier()
    return identifier if isinstance(identifier, base) else None
