"""The procedural road-scene world: perspective road to a vanishing point, buildings and vegetation,
lane and crosswalk markings, bike lanes, catch basins, curbs, sidewalks, poles with lights and signs
(front and back faces), vehicles, people, animals and riders on their bicycles and motorcycles, drawn
far-to-near so nearer objects occlude farther ones. Every pixel gets one world class; a dataset's
policy then names it.

Thin structures are drawn at least about one cell of the models' stride-4 feature map wide (`CELL`):
at the paper's 1080p a pole or a bicycle tyre spans a few feature cells, and a world that draws them
thinner than one cell asks for what no model at that stride learns.

This module draws the world map (which world class every pixel is); appearance.py paints it. A world
is a seed: it draws the scenes and also jitters each dataset's style and the classes' base colours, so a
second world differs in appearance, not only in layout. Vectorised numpy over the pixel grid; one numpy
Generator per image, so a scene depends only on its seed.
"""

from __future__ import annotations

import numpy as np

WORLD_CLASSES = [
    "sky", "building", "vegetation", "terrain", "road", "lane marking", "crosswalk", "sidewalk", "curb",
    "pole", "traffic light", "traffic sign front", "traffic sign back", "car", "truck", "bus", "caravan",
    "trailer", "person", "ground animal", "bicyclist", "motorcyclist", "bicycle", "motorcycle",
    "autorickshaw", "fence", "wall", "bike lane", "catch basin",
]  # fmt: skip
W = {name: i for i, name in enumerate(WORLD_CLASSES)}

CELL = 4.0  # pixels: one cell of a stride-4 feature map, the least width of a thin structure

DEFAULT_STYLE = {
    "tint": [1.0, 1.0, 1.0],  # per-channel gain
    "brightness": 0.0,  # added, in [0, 1] units
    "contrast": 1.0,
    "noise": 0.03,  # std of per-pixel noise
    "blur": 0,  # box-blur radius in pixels
    "fog": 0.0,  # blend towards grey with distance
    "horizon": [0.38, 0.48],  # range of horizon height, fraction of image height
    "vehicles": [2, 5],  # object counts (min, max) per scene
    "people": [1, 3],
    "riders": [1, 2],
    "animals": [0, 1],
    "autorickshaws": [0, 1],
    "poles": [1, 3],
    "crosswalk": 0.5,  # probability of a crosswalk in the scene
    "bike_lane": 0.4,  # probability of a bike lane along one side of the road
    "catch_basins": [0, 2],
}


class Canvas:
    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.y, self.x = np.mgrid[0:h, 0:w].astype(np.float32)
        self.world = np.zeros((h, w), dtype=np.uint8)

    def paint(self, mask: np.ndarray, cls: str) -> None:
        self.world[mask] = W[cls]

    def rect(self, x0, y0, x1, y1) -> np.ndarray:
        return (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        return ((self.x - cx) / max(rx, 0.5)) ** 2 + ((self.y - cy) / max(ry, 0.5)) ** 2 <= 1.0

    def ring(self, cx, cy, r, t) -> np.ndarray:
        d = np.sqrt((self.x - cx) ** 2 + (self.y - cy) ** 2)
        return (d <= r) & (d >= r - max(t, 0.7))


def _count(rng, spec) -> int:
    return int(rng.integers(spec[0], spec[1] + 1))


def _background(c: Canvas, rng, horizon: float, vx: float) -> None:
    h, w = c.h, c.w
    c.paint(c.y < horizon, "sky")
    # Skyline: buildings and trees behind the road, standing on the horizon.
    x = 0.0
    while x < w:
        bw = rng.uniform(0.06, 0.2) * w
        top = horizon - rng.uniform(0.1, 0.35) * h
        kind = "building" if rng.random() < 0.65 else "vegetation"
        mask = c.rect(x, top, x + bw, horizon + 1)
        if kind == "vegetation":
            mask = c.ellipse(x + bw / 2, horizon - (horizon - top) / 2, bw / 1.6, (horizon - top) / 1.5) & (
                c.y <= horizon
            )
        c.paint(mask, kind)
        x += bw * rng.uniform(0.7, 1.1)
    # Ground: terrain, then sidewalk, curb and road as wedges from the vanishing point.
    below = c.y >= horizon
    c.paint(below, "terrain")
    depth = np.maximum(c.y - horizon, 1e-3)  # grows towards the camera
    road_half = depth * rng.uniform(0.9, 1.3) * w / (h - horizon) * 0.5
    dx = c.x - vx
    curb = np.maximum(road_half * 0.06, CELL)
    walk = road_half * rng.uniform(0.35, 0.6)
    c.paint(below & (np.abs(dx) < road_half + curb + walk), "sidewalk")
    c.paint(below & (np.abs(dx) < road_half + curb), "curb")
    road = below & (np.abs(dx) < road_half)
    c.paint(road, "road")
    # Walls/fences and vegetation lining the outer edge of the sidewalk.
    for side in (-1, 1):
        edge = vx + side * (road_half + curb + walk)
        kind = rng.choice(["wall", "fence", "vegetation"])
        height = depth * rng.uniform(0.25, 0.5)
        band = (side * (c.x - edge) >= 0) & (side * (c.x - edge) < np.maximum(depth * 0.25, CELL)) & below
        c.paint(band & ((c.y - horizon) < depth + height), kind)
    # Lane markings (dashed in depth) and an optional crosswalk (stripes across the road).
    z = 1.0 / depth  # inverse depth: equal steps are equal distances on the ground
    dash = (np.floor(z * 40 * (h / 128)) % 2) == 0
    lane_w = np.maximum(road_half * 0.025, CELL / 2)  # half the marking's width
    for offset in (0.0, rng.choice([-0.5, 0.5])):
        c.paint(road & (np.abs(dx - offset * road_half) < lane_w) & dash, "lane marking")
    return road_half, walk, curb, depth


def _crosswalk(c: Canvas, rng, horizon: float, vx: float, road_half) -> None:
    y0 = horizon + rng.uniform(0.25, 0.6) * (c.h - horizon)
    y1 = y0 + (y0 - horizon) * 0.18
    dx = c.x - vx
    stripes = (np.floor(dx / np.maximum(road_half, 1) * 8) % 2) == 0
    mask = (c.y >= y0) & (c.y < y1) & (np.abs(dx) < road_half) & stripes
    c.paint(mask, "crosswalk")


def _bike_lane(c: Canvas, rng, horizon: float, vx: float, road_half) -> None:
    """A coloured lane along one edge of the road, delimited from it by its colour only."""
    side = rng.choice([-1, 1])
    inner = road_half - np.maximum(road_half * 0.2, CELL)
    edge = side * (c.x - vx)
    c.paint((c.y >= horizon) & (edge >= inner) & (edge < road_half) & (road_half > CELL), "bike lane")


def _catch_basin(c: Canvas, rng, horizon: float, vx: float, road_half, scale: float) -> None:
    """A drain grate on the road beside the curb (a flat box in perspective)."""
    t = rng.uniform(0.35, 1.0)
    base = horizon + t * (c.h - horizon)
    s = scale * t
    half_w, height = max(0.35 * s, 0.75 * CELL), max(0.2 * s, CELL)
    edge = float(road_half[min(int(base), c.h - 1), 0])
    cx = vx + rng.choice([-1, 1]) * max(edge - half_w - 1, 0)
    c.paint(c.rect(cx - half_w, base - height, cx + half_w, base), "catch basin")


def _vehicle(c: Canvas, cls: str, cx: float, base: float, s: float, rng) -> None:
    """A vehicle standing on `base`, scale s (pixels per metre at that depth)."""
    dims = {"car": (4.2, 1.5), "truck": (3.0, 3.4), "bus": (5.5, 3.2), "caravan": (4.5, 2.6), "trailer": (4.0, 1.6),
            "autorickshaw": (2.4, 1.9)}  # fmt: skip
    length, height = dims[cls]
    half = length * s / 2
    top = base - height * s
    if cls == "car":
        c.paint(c.rect(cx - half, base - 0.9 * s, cx + half, base), cls)
        c.paint(c.rect(cx - half * 0.6, top, cx + half * 0.55, base - 0.85 * s), cls)
    elif cls == "truck":
        c.paint(c.rect(cx - half, top, cx + half * 0.3, base - 0.3 * s), cls)
        c.paint(c.rect(cx + half * 0.3, base - 2.2 * s, cx + half, base - 0.3 * s), cls)
    elif cls == "caravan":
        c.paint(c.ellipse(cx, top + height * s * 0.5, half, height * s * 0.5) & (c.y < base - 0.3 * s), cls)
    elif cls == "autorickshaw":
        c.paint(
            c.ellipse(cx, base - height * s * 0.55, half, height * s * 0.55) & (c.y < base - 0.2 * s), cls
        )
    else:  # bus, trailer: boxes
        c.paint(c.rect(cx - half, top, cx + half, base - 0.3 * s), cls)
    for wx in (cx - half * 0.65, cx + half * 0.65):  # wheels belong to the vehicle
        c.paint(c.ellipse(wx, base - 0.3 * s, 0.35 * s, 0.3 * s), cls)


def _human(c: Canvas, cls: str, cx: float, feet: float, s: float, legs: bool = True) -> None:
    head = feet - 1.7 * s
    c.paint(c.ellipse(cx, head + 0.12 * s, 0.12 * s, 0.13 * s), cls)
    c.paint(c.rect(cx - 0.2 * s, head + 0.25 * s, cx + 0.2 * s, feet - 0.85 * s), cls)
    if legs:
        c.paint(c.rect(cx - 0.18 * s, feet - 0.85 * s, cx - 0.04 * s, feet), cls)
        c.paint(c.rect(cx + 0.04 * s, feet - 0.85 * s, cx + 0.18 * s, feet), cls)


def _rider(c: Canvas, kind: str, cx: float, base: float, s: float) -> None:
    """A bicycle (thin wheels) or motorcycle (thick wheels, body) with its rider sitting on top."""
    if kind == "bicycle":
        tyre = max(0.08 * s, 0.75 * CELL)  # tyre and frame about one feature cell thick
        for wx in (cx - 0.55 * s, cx + 0.55 * s):
            c.paint(c.ring(wx, base - 0.35 * s, 0.35 * s, tyre), kind)
        c.paint(c.rect(cx - 0.55 * s, base - 0.62 * s - tyre, cx + 0.55 * s, base - 0.62 * s), kind)
        rider = "bicyclist"
    else:
        for wx in (cx - 0.6 * s, cx + 0.6 * s):
            c.paint(c.ellipse(wx, base - 0.33 * s, 0.33 * s, 0.33 * s), kind)
        c.paint(c.ellipse(cx, base - 0.65 * s, 0.7 * s, 0.25 * s), kind)
        rider = "motorcyclist"
    _human(c, rider, cx, base - 0.35 * s, s, legs=False)  # seated: no legs below the saddle
    c.paint(c.rect(cx - 0.1 * s, base - 1.25 * s, cx + 0.05 * s, base - 0.5 * s), rider)


def _animal(c: Canvas, cx: float, base: float, s: float) -> None:
    c.paint(c.ellipse(cx, base - 0.65 * s, 0.55 * s, 0.25 * s), "ground animal")
    c.paint(c.ellipse(cx + 0.55 * s, base - 0.85 * s, 0.16 * s, 0.13 * s), "ground animal")
    for lx in (cx - 0.4 * s, cx + 0.35 * s):
        c.paint(c.rect(lx - 0.05 * s, base - 0.45 * s, lx + 0.05 * s, base), "ground animal")


def _pole(c: Canvas, rng, cx: float, base: float, s: float, facing_front: bool) -> None:
    top = base - 4.5 * s
    half = max(0.08 * s, CELL / 2)
    c.paint(c.rect(cx - half, top, cx + half, base), "pole")
    if rng.random() < 0.45:
        half = max(0.22 * s, CELL / 2)
        c.paint(c.rect(cx - half, top - 0.2 * s, cx + half, top + 0.9 * s), "traffic light")
    else:
        face = "traffic sign front" if facing_front else "traffic sign back"
        if rng.random() < 0.5:
            c.paint(c.ellipse(cx, top + 0.2 * s, 0.38 * s, 0.38 * s), face)
        else:
            c.paint(c.rect(cx - 0.35 * s, top - 0.15 * s, cx + 0.35 * s, top + 0.55 * s), face)


def render_world(rng: np.random.Generator, h: int, w: int, style: dict) -> np.ndarray:
    """One scene's world map, uint8 [h, w] of world class ids."""
    c = Canvas(h, w)
    horizon = rng.uniform(*style["horizon"]) * h
    vx = w * rng.uniform(0.4, 0.6)
    road_half, walk, curb, depth = _background(c, rng, horizon, vx)
    if rng.random() < style["crosswalk"]:
        _crosswalk(c, rng, horizon, vx, road_half)
    if rng.random() < style["bike_lane"]:
        _bike_lane(c, rng, horizon, vx, road_half)
    scale = (h - horizon) / 2.5  # pixels per metre at the bottom row (a road ~10 m wide there)
    for _ in range(_count(rng, style["catch_basins"])):
        _catch_basin(c, rng, horizon, vx, road_half, scale)
    # Objects: (depth of the base row, kind); drawn far to near (painter's algorithm).
    objects = []
    for kind, spec in (("vehicle", "vehicles"), ("person", "people"), ("rider", "riders"), ("animal", "animals"),
                       ("autorickshaw", "autorickshaws"), ("pole", "poles")):  # fmt: skip
        objects += [(rng.uniform(0.3, 1.0), kind) for _ in range(_count(rng, style[spec]))]
    objects.sort()
    for t, kind in objects:
        base = horizon + t * (h - horizon)
        s = scale * t
        half = float(road_half[min(int(base), h - 1), 0])
        if kind in ("vehicle", "autorickshaw", "rider"):
            cx = vx + rng.uniform(-0.8, 0.8) * half
        elif kind == "pole":
            cx = vx + rng.choice([-1, 1]) * (half * 1.1 + s * 0.6)
        else:  # people and animals mostly on the sidewalk
            cx = vx + rng.choice([-1, 1]) * half * rng.uniform(0.9, 1.4)
        if kind == "vehicle":
            cls = rng.choice(["car", "car", "car", "truck", "bus", "caravan", "trailer"])
            _vehicle(c, str(cls), cx, base, s, rng)
        elif kind == "autorickshaw":
            _vehicle(c, "autorickshaw", cx, base, s, rng)
        elif kind == "person":
            _human(c, "person", cx, base, s)
        elif kind == "rider":
            _rider(c, "bicycle" if rng.random() < 0.5 else "motorcycle", cx, base, s)
        elif kind == "animal":
            _animal(c, cx, base, s)
        else:
            _pole(c, rng, cx, base, s, facing_front=rng.random() < 0.6)
    return c.world
