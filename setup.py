"""Packaging beyond pyproject.toml: the repository keeps the named SQL queries (queries/) and the report
template (reports/) at its root; a wheel ships them inside the package as saliency_lab/queries and
saliency_lab/reports, where saliency_lab.resources finds them. Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

DATA_PACKAGES = {"saliency_lab.queries": "queries", "saliency_lab.reports": "reports"}

setup(
    packages=[
        *find_namespace_packages(include=["saliency_lab", "saliency_lab.*"], exclude=["*.__pycache__"]),
        *DATA_PACKAGES,
    ],
    package_dir=DATA_PACKAGES,
)
