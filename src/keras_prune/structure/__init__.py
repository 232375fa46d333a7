"""Structured pruning that physically shrinks Sequential/Functional models."""

from keras_prune.structure.graph import DependencyGraph, Group
from keras_prune.structure.importance import select_units, unit_scores
from keras_prune.structure.report import ShrinkReport, model_flops
from keras_prune.structure.shrink import build_shrunk, shrink, zero_units
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
