"""Steps: data."""
