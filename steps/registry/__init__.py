"""Steps: the model registry (fingerprints of model specs, teachers recorded, promotion, method selection, failure hook)."""
