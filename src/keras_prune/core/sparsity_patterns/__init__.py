"""Sparsity patterns, one module each; importing a module registers it.

Adding a built-in pattern: a module with a `Pattern` subclass decorated
with `@register(name)`, plus its import line below.
"""

from keras_prune.core.sparsity_patterns.base import Pattern
from keras_prune.core.sparsity_patterns.base import get
from keras_prune.core.sparsity_patterns.base import register
from keras_prune.core.sparsity_patterns.block import Block
from keras_prune.core.sparsity_patterns.channel import Channel
from keras_prune.core.sparsity_patterns.nm import NM
from keras_prune.core.sparsity_patterns.unstructured import Unstructured

__all__ = [
    "Block",
    "Channel",
    "NM",
    "Pattern",
    "Unstructured",
    "get",
    "register",
]
