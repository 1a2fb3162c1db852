"""ZenML steps: one @step per file, file name == step name; each calls the zenml-free ``finetune`` library."""

import materializers  # noqa: F401  (registers the materializers for our artifact types)
