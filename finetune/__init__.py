"""Core fine-tuning library: data sources, models, training glue, metrics and reports.

Nothing in this package imports ZenML, so every function here runs the same in a pipeline step,
a unit test, a benchmark or a bare GPU box.
"""

__version__ = "0.1.0"
