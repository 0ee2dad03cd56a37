"""The model registry: every registered architecture has a tiny recipe beside its adapter, and back."""

from __future__ import annotations

import inspect

from saliency_lab.models.registry import adapter_for, supported_architectures, tiny_recipes
from saliency_lab.models.tiny import tiny_names


def test_every_registered_architecture_has_a_recipe_and_every_recipe_an_adapter():
    recipes = tiny_recipes()
    built = sorted(r.architecture for r in recipes.values())
    assert built == supported_architectures()  # one recipe per architecture, none without an adapter
    assert "Qwen3ForCausalLM" in built
    assert tiny_names() == list(recipes)


def test_each_recipe_lives_in_its_adapters_file():
    for name, r in tiny_recipes().items():
        adapter_file = inspect.getsourcefile(type(adapter_for(r.architecture)))
        assert inspect.getsourcefile(r.build) == adapter_file, name
        assert r.vision == type(adapter_for(r.architecture)).is_vision, name
