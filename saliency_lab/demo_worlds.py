"""The demo's worlds by name (`saliency-lab demo [scenes|text]`): each implements `saliency_lab.demo.DemoWorld`."""

from __future__ import annotations

from collections.abc import Callable

from saliency_lab.demo import DemoWorld, SceneWorld
from saliency_lab.demo_text import TextWorld
from saliency_lab.errors import SaliencyLabError

WORLDS: dict[str, Callable[[], DemoWorld]] = {"scenes": SceneWorld, "text": TextWorld}


def demo_world(name: str) -> DemoWorld:
    """A fresh world object for `name`."""
    try:
        return WORLDS[name]()
    except KeyError:
        raise SaliencyLabError(f"unknown demo world {name!r}; choose one of {', '.join(WORLDS)}") from None
