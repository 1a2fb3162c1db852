"""Steps: the model registry (model fingerprints, recorded teachers, promotion, method selection, hooks)."""
