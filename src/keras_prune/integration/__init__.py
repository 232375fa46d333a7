"""The Keras integration: validated arguments, the wrapper layer, model
rewriting, callbacks, shared budgets, layer registry and policies.
"""
