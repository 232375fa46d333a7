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


def fixed_setattr(part, cls, name, value):
    """`object.__setattr__`, refused for a setting of a built-in part of
    exactly `cls` once created (`_settled`): compiled train steps hold its
    settings as constants, so a change applied in some modes only.
    Subclasses keep plain attributes."""
    if (
        type(part) is cls
        and part.__dict__.get("_settled", False)
        and name in part.get_config()
    ):
        config = dict(part.get_config())
        config[name] = value
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        raise AttributeError(
            f"{cls.__name__}.{name} cannot be changed once created: compiled "
            "train steps hold it as a constant, so a change would apply in "
            f"some modes and not others. Create {cls.__name__}({args}) and "
            "prune with it."
        )
    object.__setattr__(part, name, value)
