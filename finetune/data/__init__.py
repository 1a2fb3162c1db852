"""Data sources: official file formats, hub datasets, the embedded demo generator, fingerprints."""
