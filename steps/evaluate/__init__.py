"""Steps: evaluate."""
