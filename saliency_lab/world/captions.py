"""Captions and prompts of the scene world. A caption lists every object, in canonical category order
(anchor right before its partner), each as "a <colour> <category>"."""

from __future__ import annotations

from saliency_lab.world.scenes import Scene, ordered

CAPTION_PROMPT = "Describe the image."


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    phrases = [f"{_article(o.colour)} {o.colour} {o.category}" for o in ordered(scene)]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = " , ".join(phrases[:-1]) + " and " + phrases[-1]
    return body + " ."


def question(category: str) -> str:
    """POPE wording (SPEC section 6)."""
    return f"Is there a {category} in the image?"


def answer(present: bool) -> str:
    return "yes ." if present else "no ."
