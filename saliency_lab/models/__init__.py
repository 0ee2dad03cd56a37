"""Model loading and one adapter per model family, each with its tiny-model recipe (see registry.py)."""
