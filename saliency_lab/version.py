"""The toolkit version (a base module, so run.json writers and the CLI read it without importing the package
facade in saliency_lab/__init__.py)."""

__version__ = "0.2.0"
