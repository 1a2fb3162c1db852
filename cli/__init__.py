"""Command-line tools around the pipelines: ``python -m cli.<tool>``.

``config_check`` validates run configs, ``show`` prints a run's key results, ``schedule`` registers a scheduled
run, ``cleanup`` fails runs a killed process left unfinished.
"""
