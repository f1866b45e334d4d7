"""Object classes as drawings in a unit box: each glyph draws primitives with coordinates in
[0, 1], scaled to the layer's pixel size. Fill may be None (outline only, for sketches)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import ImageDraw

Color = tuple[int, int, int, int]


@dataclass
class Pen:
    """Draws unit-box primitives onto a square RGBA layer of ``size`` pixels."""

    draw: ImageDraw.ImageDraw
    size: int
    fill: Color | None
    outline: Color
    width: int

    def _p(self, x: float, y: float) -> tuple[float, float]:
        return x * self.size, y * self.size

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [*self._p(x0, y0), *self._p(x1, y1)]

    def ellipse(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.draw.ellipse(self._box(x0, y0, x1, y1), fill=self.fill, outline=self.outline,
                          width=self.width)

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.draw.rectangle(self._box(x0, y0, x1, y1), fill=self.fill, outline=self.outline,
                            width=self.width)

    def poly(self, *points: tuple[float, float]) -> None:
        self.draw.polygon([self._p(x, y) for x, y in points], fill=self.fill,
                          outline=self.outline, width=self.width)

    def line(self, *points: tuple[float, float], thick: float = 1.0) -> None:
        self.draw.line([self._p(x, y) for x, y in points], fill=self.outline,
                       width=max(1, round(self.width * thick)))

    def arc(self, x0: float, y0: float, x1: float, y1: float, start: float, end: float) -> None:
        self.draw.arc(self._box(x0, y0, x1, y1), start, end, fill=self.outline,
                      width=max(1, self.width))

    def pie(self, x0: float, y0: float, x1: float, y1: float, start: float, end: float) -> None:
        self.draw.pieslice(self._box(x0, y0, x1, y1), start, end, fill=self.fill,
                           outline=self.outline, width=self.width)


def _star_points(cx: float, cy: float, outer: float, inner: float, n: int) -> list[tuple[float, float]]:
    points = []
    for i in range(2 * n):
        radius = outer if i % 2 == 0 else inner
        angle = math.pi * i / n - math.pi / 2
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def kettle(p: Pen) -> None:
    p.arc(0.3, 0.1, 0.7, 0.5, 180, 360)
    p.poly((0.75, 0.55), (0.95, 0.3), (0.98, 0.34), (0.82, 0.7))
    p.ellipse(0.15, 0.3, 0.85, 0.9)
    p.rect(0.42, 0.22, 0.58, 0.32)


def cup(p: Pen) -> None:
    p.arc(0.62, 0.35, 0.92, 0.7, 270, 90)
    p.poly((0.15, 0.25), (0.75, 0.25), (0.65, 0.85), (0.25, 0.85))


def house(p: Pen) -> None:
    p.rect(0.2, 0.45, 0.8, 0.9)
    p.poly((0.1, 0.48), (0.5, 0.1), (0.9, 0.48))
    p.line((0.5, 0.9), (0.5, 0.65), (0.62, 0.65), (0.62, 0.9))


def tree(p: Pen) -> None:
    p.rect(0.43, 0.55, 0.57, 0.95)
    p.ellipse(0.15, 0.05, 0.85, 0.65)


def car(p: Pen) -> None:
    p.poly((0.28, 0.45), (0.38, 0.25), (0.65, 0.25), (0.75, 0.45))
    p.rect(0.05, 0.45, 0.95, 0.72)
    p.ellipse(0.15, 0.62, 0.35, 0.82)
    p.ellipse(0.65, 0.62, 0.85, 0.82)


def fish(p: Pen) -> None:
    p.poly((0.62, 0.5), (0.95, 0.25), (0.95, 0.75))
    p.ellipse(0.05, 0.28, 0.7, 0.72)
    p.line((0.2, 0.42), (0.22, 0.44), thick=2)


def star(p: Pen) -> None:
    p.poly(*_star_points(0.5, 0.52, 0.47, 0.2, 5))


def heart(p: Pen) -> None:
    p.poly((0.08, 0.4), (0.5, 0.92), (0.92, 0.4), (0.5, 0.3))
    p.ellipse(0.06, 0.12, 0.52, 0.58)
    p.ellipse(0.48, 0.12, 0.94, 0.58)


def moon(p: Pen) -> None:
    outer = [(0.5 + 0.42 * math.cos(a), 0.5 + 0.42 * math.sin(a))
             for a in [math.pi / 2 + math.pi * t / 24 for t in range(25)]]
    inner = [(0.62 + 0.3 * math.cos(a), 0.5 + 0.36 * math.sin(a))
             for a in [3 * math.pi / 2 - math.pi * t / 24 for t in range(25)]]
    p.poly(*outer, *inner)


def umbrella(p: Pen) -> None:
    p.pie(0.05, 0.1, 0.95, 0.9, 180, 360)
    p.line((0.5, 0.5), (0.5, 0.85), thick=1.5)
    p.arc(0.5, 0.75, 0.7, 0.95, 0, 180)


def key(p: Pen) -> None:
    p.ellipse(0.05, 0.3, 0.4, 0.7)
    p.rect(0.38, 0.45, 0.95, 0.55)
    p.rect(0.75, 0.55, 0.82, 0.7)
    p.rect(0.87, 0.55, 0.94, 0.66)


def bell(p: Pen) -> None:
    p.ellipse(0.42, 0.78, 0.58, 0.94)
    p.poly((0.35, 0.15), (0.65, 0.15), (0.75, 0.55), (0.9, 0.82), (0.1, 0.82), (0.25, 0.55))


def arrow(p: Pen) -> None:
    p.poly((0.05, 0.4), (0.55, 0.4), (0.55, 0.2), (0.95, 0.5), (0.55, 0.8), (0.55, 0.6), (0.05, 0.6))


def flower(p: Pen) -> None:
    for i in range(6):
        a = 2 * math.pi * i / 6
        cx, cy = 0.5 + 0.27 * math.cos(a), 0.5 + 0.27 * math.sin(a)
        p.ellipse(cx - 0.17, cy - 0.17, cx + 0.17, cy + 0.17)
    p.ellipse(0.36, 0.36, 0.64, 0.64)


def sun(p: Pen) -> None:
    for i in range(10):
        a = 2 * math.pi * i / 10
        p.line((0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)),
               (0.5 + 0.48 * math.cos(a), 0.5 + 0.48 * math.sin(a)), thick=1.5)
    p.ellipse(0.25, 0.25, 0.75, 0.75)


def boat(p: Pen) -> None:
    p.line((0.5, 0.62), (0.5, 0.08), thick=1.5)
    p.poly((0.53, 0.1), (0.53, 0.55), (0.85, 0.55))
    p.poly((0.05, 0.62), (0.95, 0.62), (0.78, 0.85), (0.22, 0.85))


def mushroom(p: Pen) -> None:
    p.rect(0.4, 0.45, 0.6, 0.92)
    p.pie(0.08, 0.1, 0.92, 0.8, 180, 360)


def lamp(p: Pen) -> None:
    p.rect(0.47, 0.45, 0.53, 0.85)
    p.rect(0.25, 0.85, 0.75, 0.93)
    p.poly((0.3, 0.1), (0.7, 0.1), (0.85, 0.45), (0.15, 0.45))


def plus(p: Pen) -> None:
    p.poly((0.38, 0.08), (0.62, 0.08), (0.62, 0.38), (0.92, 0.38), (0.92, 0.62), (0.62, 0.62),
           (0.62, 0.92), (0.38, 0.92), (0.38, 0.62), (0.08, 0.62), (0.08, 0.38), (0.38, 0.38))


def ring(p: Pen) -> None:
    p.ellipse(0.08, 0.08, 0.92, 0.92)
    saved = p.fill
    p.fill = (0, 0, 0, 0)  # punch the hole: transparent, so the background shows through
    p.ellipse(0.32, 0.32, 0.68, 0.68)
    p.fill = saved


def lightning(p: Pen) -> None:
    p.poly((0.55, 0.03), (0.2, 0.55), (0.45, 0.55), (0.35, 0.97), (0.8, 0.4), (0.55, 0.4), (0.7, 0.03))


def bottle(p: Pen) -> None:
    p.rect(0.42, 0.05, 0.58, 0.35)
    p.poly((0.42, 0.33), (0.58, 0.33), (0.75, 0.45), (0.75, 0.95), (0.25, 0.95), (0.25, 0.45))


def pencil(p: Pen) -> None:
    p.poly((0.05, 0.4), (0.72, 0.4), (0.72, 0.6), (0.05, 0.6))
    p.poly((0.72, 0.4), (0.97, 0.5), (0.72, 0.6))


def leaf(p: Pen) -> None:
    p.poly(*[(0.5 + 0.45 * math.cos(a), 0.5 + 0.25 * math.sin(a) * (1 + math.cos(a)) )
             for a in [2 * math.pi * t / 30 for t in range(30)]])
    p.line((0.08, 0.5), (0.95, 0.5))


def bucket(p: Pen) -> None:
    p.arc(0.15, 0.05, 0.85, 0.65, 180, 360)
    p.poly((0.12, 0.35), (0.88, 0.35), (0.75, 0.92), (0.25, 0.92))


GLYPHS: dict[str, Callable[[Pen], None]] = {
    "kettle": kettle, "cup": cup, "house": house, "tree": tree, "car": car, "fish": fish,
    "star": star, "heart": heart, "moon": moon, "umbrella": umbrella, "key": key,
    "bell": bell, "arrow": arrow, "flower": flower, "sun": sun, "boat": boat,
    "mushroom": mushroom, "lamp": lamp, "cross": plus, "ring": ring, "lightning bolt": lightning,
    "bottle": bottle, "pencil": pencil, "leaf": leaf, "bucket": bucket,
}
CLASS_NAMES: tuple[str, ...] = tuple(GLYPHS)
