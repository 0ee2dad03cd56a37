"""Captions and prompts of the scene world. A caption lists every object in the reading order of its grid
cell (a partner right after its anchor), each as "a <colour> <category>"."""

from __future__ import annotations

from saliency_lab.world.scenes import Scene, ordered

CAPTION_PROMPT = "Describe the image."


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    """The reference caption of a scene (objects in reading order)."""
    phrases = [f"{_article(o.colour)} {o.colour} {o.category}" for o in ordered(scene)]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = " , ".join(phrases[:-1]) + " and " + phrases[-1]
    return body + " ."


def question(category: str) -> str:
    """POPE wording (docs/labels.md, "POPE")."""
    return f"Is there a {category} in the image?"


def answer(present: bool) -> str:
    """The reference answer to a yes/no question."""
    return "yes ." if present else "no ."


def find_example(scene: Scene, category: str, present: bool) -> tuple[str, str]:
    """(prompt, answer) of a training example that bridges to POPE: naming the colour of the asked category
    can only be learned by finding that shape in the image, which trains the category-to-image matching a
    yes/no answer needs, with a denser signal (a yes/no token alone left the answers independent of the image
    for thousands of steps)."""
    if not present:
        return f"Describe the {category}.", "no ."
    colour = next(o.colour for o in scene.objects if o.category == category)
    return f"Describe the {category}.", f"{_article(colour)} {colour} {category} ."
