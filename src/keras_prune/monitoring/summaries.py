"""TensorBoard summaries of pruning: `PruningSummaries`, and reading them back.

`PruningSummaries` writes real TensorBoard event files on every backend. It
uses the `tensorboard` package's own record format, protos and file layer
(the pure-Python ones that TensorBoard itself falls back to), so TensorFlow
is neither needed nor imported: on JAX and PyTorch it does not have to be
installed.

Layout of a log directory (as tfmot's `PruningSummaries`):

- `LOGDIR/metrics/`: the pruning scalars, per pruned weight
  `<layer>/<weight>/sparsity`, `.../threshold`, `.../target_sparsity`, and
  `model/sparsity`, `model/target_sparsity`; plus a text summary
  `keras_prune/config` (each pruned weight's size and schedule), shown in
  TensorBoard's Text tab and used by `report`.
- `LOGDIR/train/`, `LOGDIR/validation/`: the `fit` metrics, named as
  `keras.callbacks.TensorBoard` names them (`epoch_loss`, `batch_loss`, ...).

The step (x-axis) of the pruning scalars is `model.optimizer.iterations`: the
number of batches trained.
"""

import json
import os
import warnings

import keras
import numpy as np

from keras_prune._keywords import keywords_checked
from keras_prune.integration import state
from keras_prune.monitoring.events import CONFIG_TAG
from keras_prune.monitoring.events import PRUNING_RUN

# Reading logs back: the public reader API, defined in `events`, `stats` and
# `report`, is also reachable from here, where the callback that writes the
# logs lives.
from keras_prune.monitoring.events import CorruptEventFileWarning  # noqa: F401
from keras_prune.monitoring.events import EventFileWriter
from keras_prune.monitoring.events import event_files  # noqa: F401
from keras_prune.monitoring.events import read_config  # noqa: F401
from keras_prune.monitoring.events import read_scalars  # noqa: F401
from keras_prune.monitoring.report import report  # noqa: F401
from keras_prune.monitoring.stats import _TargetTracker
from keras_prune.monitoring.stats import _weight_tags
from keras_prune.monitoring.stats import last_update  # noqa: F401
from keras_prune.monitoring.stats import model_scalars
from keras_prune.monitoring.stats import pruned_weight_stats
from keras_prune.monitoring.stats import weight_rows_from_logs  # noqa: F401

_TENSORBOARD_OPTIONS = {
    # keras.callbacks.TensorBoard argument -> value meaning "off".
    "histogram_freq": 0,
    "write_graph": None,  # accepted, nothing to write (no TF graph)
    "write_images": False,
    "write_steps_per_second": False,
    "profile_batch": 0,
    "embeddings_freq": 0,
    "embeddings_metadata": None,
}


def _config_text(model):
    weights = {}
    for wrapper, i, tag in _weight_tags(
        [w for w in state.pruning_wrappers(model) if w.built]
    ):
        weight = wrapper.pruned_weights[i]
        weights[tag] = dict(
            params=int(np.prod(weight.shape)),
            shape=list(weight.shape),
            schedule=keras.saving.serialize_keras_object(
                wrapper.pruning_schedule
            ),
            schedule_repr=repr(wrapper.pruning_schedule),
        )
    body = json.dumps({"weights": weights}, indent=1, default=str)
    lines = ["Pruned weights and their schedules (keras-prune).", ""]
    for tag, w in weights.items():
        lines.append(f"- `{tag}` {tuple(w['shape'])}: {w['schedule_repr']}")
    return "\n".join(lines) + "\n\n```json\n" + body + "\n```"


def _iterations(model):
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    if iterations is not None:
        return int(keras.ops.convert_to_numpy(iterations))
    from keras_prune.integration.state import pruning_step

    return pruning_step(model) or 0


class PruningSummaries(keras.callbacks.Callback):
    """Writes pruning summaries for TensorBoard, on every backend.

    tfmot's `PruningSummaries`, without TensorFlow: event files are written
    with the `tensorboard` package alone (`pip install tensorboard`), on JAX,
    TensorFlow and PyTorch. At each log point it writes, under
    `log_dir/metrics`, for every pruned weight:

    - `<layer>/<weight>/sparsity`: fraction of zeros of `weight * mask`, the
      tensor the forward pass uses (tfmot logs the mask's zeros only);
    - `<layer>/<weight>/threshold`: the smallest magnitude kept at the last
      mask update;
    - `<layer>/<weight>/target_sparsity`: the schedule's sparsity at the last
      mask update that has run (the latest step `s < pruning_step` at which
      the schedule said to prune; 0 before the first update). This is the
      sparsity the masks in effect were built for, so it equals `sparsity`
      up to rounding to whole weights;

    and `model/sparsity`, `model/target_sparsity` over all pruned weights
    (weighted by size). The step is `model.optimizer.iterations`, the number
    of batches trained (the wrapper's `pruning_step` when the model has no
    optimizer). A text summary `keras_prune/config` lists each pruned weight
    with its schedule.

    Unless `write_metrics=False`, the `fit` metrics are also written, as
    `keras.callbacks.TensorBoard` writes them (`train/` and `validation/`,
    `epoch_<name>` at step = epoch, and `batch_<name>` at step = iterations
    when logging per batch), so this callback replaces the TensorBoard
    callback, as tfmot's did. Do not use both with one `log_dir`.

    Reading the model costs a state sync on JAX, so it is only read at log
    points: at epoch ends (free there) or every `update_freq` batches.

    Args:
        log_dir: Directory of the event files (non-empty string or path).
        update_freq: `'epoch'` (log at each epoch end), `'batch'` (after
            every batch) or an int `N` (whenever `iterations` reaches a
            multiple of `N`).
        write_metrics: Also write the `fit` metrics (`loss`, ...).
        **kwargs: `keras.callbacks.TensorBoard` arguments, accepted for tfmot
            compatibility; histograms, images, embeddings and profiling are
            not written (a warning says so).

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[
        keras_prune.UpdatePruningStep(),
        keras_prune.PruningSummaries(log_dir="logs"),
    ])
    # tensorboard --logdir logs
    print(keras_prune.monitoring.summaries.report("logs", plot="pruning.png"))
    ```

    In a custom training loop, call `set_model(model)` and then
    `log(step)` when you want a point (or, as in tfmot's guide,
    `on_epoch_begin(epoch)` without `on_train_begin`, which logs at once).
    """

    @keywords_checked
    def __init__(
        self, log_dir, update_freq="epoch", write_metrics=True, **kwargs
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(
            log_dir
        ):
            raise ValueError(
                "`log_dir` must be a non-empty string. You passed `log_dir`="
                f"{log_dir}."
            )
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (
            isinstance(update_freq, bool)
            or not isinstance(update_freq, (int, np.integer))
            or update_freq < 1
        ):
            raise ValueError(
                "`update_freq` must be 'epoch', 'batch' or a positive "
                f"integer. You passed `update_freq`={update_freq!r}."
            )
        for name, value in kwargs.items():
            if name not in _TENSORBOARD_OPTIONS:
                raise TypeError(
                    "PruningSummaries got an unexpected keyword argument "
                    f"{name!r}."
                )
            off = _TENSORBOARD_OPTIONS[name]
            if name != "write_graph" and value != off and value:
                warnings.warn(
                    f"PruningSummaries does not write what {name}={value!r} "
                    "asks for (only scalars). Use keras.callbacks.TensorBoard "
                    "(needs TensorFlow) with another log_dir for that.",
                    stacklevel=2,
                )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        if update_freq == "epoch":
            # Nothing to do per batch: look like the default hook, so that
            # `fit` keeps dispatching batch callbacks asynchronously.
            self.on_train_batch_end = (
                keras.callbacks.Callback.on_train_batch_end.__get__(self)
            )
        self.write_metrics = write_metrics
        self._writers = {}
        self._tracker = _TargetTracker()
        self._in_fit = False
        self._iteration = None
        self._epoch_start = 0
        self._config_written = False

    # ------------------------------------------------------------- writers

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = EventFileWriter(
                os.path.join(self.log_dir, run)
            )
        return self._writers[run]

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    def _close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ------------------------------------------------------------- logging

    def log(self, step=None, model=None):
        """Writes the pruning scalars now.

        Args:
            step: x-axis step (default: `model.optimizer.iterations`, or the
                pruning step when there is no optimizer).
            model: Default: the callback's model (synced on JAX).

        Returns:
            The `{tag: value}` written.
        """
        model = self.model if model is None else model
        if step is None:
            step = _iterations(model)
        writer = self._writer(PRUNING_RUN)
        if not self._config_written:
            writer.add_text(step, CONFIG_TAG, _config_text(model))
            self._config_written = True
        scalars = model_scalars(pruned_weight_stats(model, self._tracker))
        if scalars:
            writer.add_scalars(step, scalars)
        writer.flush()
        return scalars

    def set_model(self, model):
        super().set_model(model)
        self._config_written = False

    def on_train_begin(self, logs=None):
        self._in_fit = True
        model = self.model
        self._config_written = False
        if not state.pruning_wrappers(model):
            warnings.warn(
                "PruningSummaries: the model has no pruning wrappers; no "
                "pruning scalars will be written.",
                stacklevel=2,
            )
        self._iteration = _iterations(model)

    def on_epoch_begin(self, epoch, logs=None):
        if not self._in_fit:  # tfmot's custom-loop recipe: log right away
            self.log()
            return
        self._epoch_start = self._iteration

    def on_train_batch_end(self, batch, logs=None):
        if not self._in_fit:
            return
        done = self._epoch_start + batch + 1
        previous, self._iteration = self._iteration, done
        if self.update_freq == "epoch":
            return
        n = int(self.update_freq)
        if done // n > previous // n:
            model = self.model  # syncs JAX state: only at log points
            step = _iterations(model)
            self._iteration = step
            self.log(step, model)
            if self.write_metrics and isinstance(logs, dict):
                self._write_logs("train", "batch_", step, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._model is None:
            return
        model = self.model  # already synced by fit at epoch end on JAX
        if self.update_freq == "epoch" and self._in_fit:
            self.log(model=model)
        if self.write_metrics and logs:
            train = {k: v for k, v in logs.items() if not k.startswith("val_")}
            lr = _learning_rate(model)
            if lr is not None and "learning_rate" not in train:
                train["learning_rate"] = lr
            val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
            self._write_logs("train", "epoch_", epoch, train)
            self._write_logs("validation", "epoch_", epoch, val)
        self._flush()

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._close()

    def _write_logs(self, run, prefix, step, logs):
        scalars = {}
        for name, value in logs.items():
            try:
                value = np.asarray(keras.ops.convert_to_numpy(value))
            except Exception:  # noqa: BLE001 - not a number: skip it
                continue
            if value.size == 1 and value.dtype.kind in "fiub":
                scalars[prefix + name] = float(value.reshape(()))
        if scalars:
            self._writer(run).add_scalars(step, scalars)


def _learning_rate(model):
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - no optimizer / not a scalar
        return None
