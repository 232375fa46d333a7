"""keras-prune: magnitude-based weight pruning for Keras 3.

tfmot's `tfmot.sparsity.keras` API on the JAX, TensorFlow and PyTorch
backends. Change `import tensorflow_model_optimization as tfmot` /
`tfmot.sparsity.keras.X` to `import keras_prune` / `keras_prune.X`.
"""

from keras_prune.callbacks import UpdatePruningStep
from keras_prune.callbacks import model_sparsity
from keras_prune.callbacks import pruning_step
from keras_prune.masks import kept_count
from keras_prune.masks import magnitude_mask
from keras_prune.oneshot import prune_once
from keras_prune.patterns import is_pruned_m_by_n
from keras_prune.policy import PruneForLatencyOnXNNPack
from keras_prune.policy import PruningPolicy
from keras_prune.policy import SkipUnsupportedLayers
from keras_prune.prune import prune_low_magnitude
from keras_prune.prune import prune_scope
from keras_prune.registry import PrunableLayer
from keras_prune.registry import UnsupportedLayerError
from keras_prune.registry import register_prunable_weights
from keras_prune.schedules import ConstantSparsity
from keras_prune.schedules import CosineDecay
from keras_prune.schedules import ExponentialDecay
from keras_prune.schedules import FunctionSchedule
from keras_prune.schedules import PolynomialDecay
from keras_prune.schedules import PruningSchedule
from keras_prune.spec import PruningSpec
from keras_prune.strip import strip_pruning
from keras_prune.wrapper import PruneLowMagnitude

__version__ = "0.1.0"

from keras_prune.compress import CompressedFormatError
from keras_prune.compress import compress_array
from keras_prune.compress import decompress_array
from keras_prune.compress import load_compressed
from keras_prune.compress import save_compressed
from keras_prune.explain import describe_schedule
from keras_prune.explain import format_pruning_plan
from keras_prune.explain import format_report
from keras_prune.explain import plot_schedule
from keras_prune.explain import pruning_plan
from keras_prune.explain import sparsity_report
from keras_prune.structure import ChannelPruning
from keras_prune.structure import DependencyGraph
from keras_prune.structure import ShrinkReport
from keras_prune.structure import model_flops
from keras_prune.structure import shrink
from keras_prune.summaries import PruningSummaries  # noqa: E402
