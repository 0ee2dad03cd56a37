"""Helpers for tests, benchmarks and the docs' examples: synthetic runs with the real on-disk layout
(`saliency_lab.testing.synthetic`). Nothing in the toolkit itself imports this package."""
