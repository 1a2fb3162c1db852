"""ZenML pipelines, one @pipeline per method.

Run one with ``zenml pipeline run pipelines.<module>.<name> -c configs/<name>.yaml``.
"""
