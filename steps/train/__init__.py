"""Steps: train."""
