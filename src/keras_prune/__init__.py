"""keras-prune: magnitude-based weight pruning for Keras 3.

tfmot's `tfmot.sparsity.keras` API on the JAX, TensorFlow and PyTorch
backends. Change `import tensorflow_model_optimization as tfmot` /
`tfmot.sparsity.keras.X` to `import keras_prune` / `keras_prune.X`.
"""

from keras_prune.core.allocation import ERK
from keras_prune.core.allocation import Allocation
from keras_prune.core.allocation import Global
from keras_prune.core.allocation import PerTensor
from keras_prune.core.masks import kept_count
from keras_prune.core.masks import magnitude_mask
from keras_prune.core.patterns import is_pruned_m_by_n
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import CosineDecay
from keras_prune.core.schedules import ExponentialDecay
from keras_prune.core.schedules import FunctionSchedule
from keras_prune.core.schedules import PolynomialDecay
from keras_prune.core.schedules import PruningSchedule
from keras_prune.core.scores import Magnitude
from keras_prune.core.scores import Score
from keras_prune.core.sparsity_patterns import NM
from keras_prune.core.sparsity_patterns import Block
from keras_prune.core.sparsity_patterns import Channel
from keras_prune.core.sparsity_patterns import Pattern
from keras_prune.core.sparsity_patterns import Unstructured
from keras_prune.integration.callbacks import UpdatePruningStep
from keras_prune.integration.oneshot import prune_once
from keras_prune.integration.policy import PruneForLatencyOnXNNPack
from keras_prune.integration.policy import PruningPolicy
from keras_prune.integration.policy import SkipUnsupportedLayers
from keras_prune.integration.prune import prune_low_magnitude
from keras_prune.integration.prune import prune_scope
from keras_prune.integration.registry import PrunableLayer
from keras_prune.integration.registry import UnsupportedLayerError
from keras_prune.integration.registry import register_prunable_weights
from keras_prune.integration.spec import PruningSpec
from keras_prune.integration.state import model_sparsity
from keras_prune.integration.state import pruning_step
from keras_prune.integration.strip import strip_pruning
from keras_prune.integration.wrapper import PruneLowMagnitude

__version__ = "0.1.0"

from keras_prune.export.compress import CompressedFormatError
from keras_prune.export.compress import compress_array
from keras_prune.export.compress import decompress_array
from keras_prune.export.compress import load_compressed
from keras_prune.export.compress import save_compressed
from keras_prune.monitoring.explain import describe_schedule
from keras_prune.monitoring.explain import format_pruning_plan
from keras_prune.monitoring.explain import format_report
from keras_prune.monitoring.explain import plot_schedule
from keras_prune.monitoring.explain import pruning_plan
from keras_prune.monitoring.explain import sparsity_report
from keras_prune.monitoring.summaries import PruningSummaries  # noqa: E402
from keras_prune.structure import ChannelPruning
from keras_prune.structure import DependencyGraph
from keras_prune.structure import ShrinkReport
from keras_prune.structure import model_flops
from keras_prune.structure import shrink
