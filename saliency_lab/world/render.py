"""Draw scenes with Pillow: each object is a mask (supersampled for smooth edges), optionally blurred or made
faint, composited in its colour onto a noisy background. Bounding boxes come from the visible mask."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from saliency_lab.world.scenes import COLOURS, Scene, SceneObject, WorldConfig

SUPERSAMPLE = 3


def _poly(cx: float, cy: float, pts: list[tuple[float, float]], rot: float) -> list[tuple[float, float]]:
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _regular(n: int, r: float, phase: float = -90.0) -> list[tuple[float, float]]:
    return [(r * math.cos(math.radians(phase + 360 * k / n)), r * math.sin(math.radians(phase + 360 * k / n)))
            for k in range(n)]


def _draw_shape(draw: ImageDraw.ImageDraw, o: SceneObject, scale: float) -> None:
    cx, cy, r = o.cx * scale, o.cy * scale, o.size * scale / 2
    rot, cat = o.rotation, o.category
    if cat == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif cat == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ri = r * 0.55
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    elif cat == "moon":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        dx, dy = _poly(0, 0, [(r * 0.55, -r * 0.25)], rot)[0]
        draw.ellipse([cx + dx - r * 0.85, cy + dy - r * 0.85, cx + dx + r * 0.85, cy + dy + r * 0.85], fill=0)
    elif cat == "square":
        h = r * 0.8
        draw.polygon(_poly(cx, cy, [(-h, -h), (h, -h), (h, h), (-h, h)], rot), fill=255)
    elif cat == "diamond":
        draw.polygon(_poly(cx, cy, [(0, -r), (r * 0.65, 0), (0, r), (-r * 0.65, 0)], rot), fill=255)
    elif cat == "triangle":
        draw.polygon(_poly(cx, cy, _regular(3, r), rot), fill=255)
    elif cat == "hexagon":
        draw.polygon(_poly(cx, cy, _regular(6, r, 0.0), rot), fill=255)
    elif cat == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = math.radians(-90 + 36 * k)
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        draw.polygon(_poly(cx, cy, pts, rot), fill=255)
    elif cat == "heart":
        pts = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x * r / 17, y * r / 17 + r * 0.05))
        draw.polygon(_poly(cx, cy, pts, rot), fill=255)
    elif cat == "arrow":
        w, hw = r * 0.22, r * 0.6
        pts = [(-r, -w), (r * 0.1, -w), (r * 0.1, -hw), (r, 0), (r * 0.1, hw), (r * 0.1, w), (-r, w)]
        draw.polygon(_poly(cx, cy, pts, rot), fill=255)
    elif cat == "cross":
        w = r * 0.3
        draw.polygon(_poly(cx, cy, [(-r, -w), (r, -w), (r, w), (-r, w)], rot), fill=255)
        draw.polygon(_poly(cx, cy, [(-w, -r), (w, -r), (w, r), (-w, r)], rot), fill=255)
    elif cat == "bar":
        h = r * 0.25
        draw.polygon(_poly(cx, cy, [(-r, -h), (r, -h), (r, h), (-r, h)], rot), fill=255)
    else:  # pragma: no cover - CATEGORIES and this function are kept in step by a unit test
        raise ValueError(f"unknown category {cat!r}")


def object_mask(o: SceneObject, image_size: int) -> np.ndarray:
    """Coverage in [0, 1] of one object at image resolution (before faintness)."""
    big = image_size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    _draw_shape(ImageDraw.Draw(mask), o, SUPERSAMPLE)
    mask = mask.resize((image_size, image_size), Image.Resampling.BOX)
    if o.blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(o.blur))
    return np.asarray(mask, dtype=np.float32) / 255.0


def render(scene: Scene, world: WorldConfig) -> tuple[Image.Image, list[list[float]]]:
    """The RGB image and one COCO bbox [x, y, w, h] per object (visible part, in scene.objects order)."""
    s = world.image_size
    rng = np.random.default_rng(scene.noise_seed)
    img: np.ndarray = np.empty((s, s, 3), dtype=np.float32)
    img[:] = np.asarray(world.background, dtype=np.float32)
    img += rng.normal(0.0, world.noise_std, size=(s, s, 1)) + rng.normal(0.0, world.noise_std / 3, size=(s, s, 3))
    boxes = []
    for o in scene.objects:
        m = object_mask(o, s)
        a = (m * o.alpha)[..., None]
        img = img * (1 - a) + np.asarray(COLOURS[o.colour], dtype=np.float32) * a
        ys, xs = np.nonzero(m > 0.2)
        if len(xs):
            x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        else:  # a tiny blurred object can fall below threshold: keep its nominal box, clipped to the frame
            x0, y0 = max(0.0, o.cx - o.size / 2), max(0.0, o.cy - o.size / 2)
            x1, y1 = min(float(s), o.cx + o.size / 2), min(float(s), o.cy + o.size / 2)
        boxes.append([x0, y0, x1 - x0, y1 - y0])
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), boxes
