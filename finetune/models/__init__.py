"""Model and tokenizer sources: hub id, local path, package-shipped weights, tiny models built from config."""
