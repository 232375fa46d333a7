"""Structured pruning that physically shrinks Sequential/Functional models."""

from keras_prune.structure.graph import DependencyGraph
from keras_prune.structure.graph import Group
from keras_prune.structure.importance import select_units
from keras_prune.structure.importance import unit_scores
from keras_prune.structure.report import ShrinkReport
from keras_prune.structure.report import model_flops
from keras_prune.structure.shrink import build_shrunk
from keras_prune.structure.shrink import shrink
from keras_prune.structure.shrink import zero_units
from keras_prune.structure.training import ChannelPruning

__all__ = [
    "ChannelPruning",
    "DependencyGraph",
    "Group",
    "ShrinkReport",
    "build_shrunk",
    "model_flops",
    "select_units",
    "shrink",
    "unit_scores",
    "zero_units",
]
