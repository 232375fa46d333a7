"""Pure pruning math: schedules, exact selection, patterns, allocation.

No Keras state lives here: functions of tensors and steps.
"""
