"""Steps: registry."""
