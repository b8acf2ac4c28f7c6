"""How the world looks: the base colour of each world class, each world's and dataset's jitter of them, and
painting a world map into an image (texture, grain, fog, contrast, tint, blur) — the style a policy gives a
dataset. `render` draws and paints whole scenes (world.py draws the map)."""

from __future__ import annotations

import zlib

import numpy as np

from uniseg.datasets.synthetic.world import DEFAULT_STYLE, WORLD_CLASSES, render_world

# Base appearance of each world class (RGB); styles shift and texture them.
BASE_COLOURS = {
    "sky": (135, 180, 230), "building": (120, 110, 105), "vegetation": (60, 120, 50), "terrain": (140, 150, 80),
    "road": (90, 90, 95), "lane marking": (235, 235, 220), "crosswalk": (225, 225, 225), "sidewalk": (170, 150, 150),
    "curb": (200, 195, 185), "pole": (110, 110, 120), "traffic light": (40, 40, 40),
    "traffic sign front": (230, 200, 40), "traffic sign back": (160, 160, 165), "car": (30, 60, 150),
    "truck": (150, 60, 40), "bus": (210, 140, 30), "caravan": (225, 225, 210), "trailer": (120, 100, 80),
    "person": (200, 40, 60), "ground animal": (130, 90, 50), "bicyclist": (200, 40, 60),
    "motorcyclist": (200, 40, 60), "bicycle": (30, 160, 160), "motorcycle": (60, 40, 90),
    "autorickshaw": (40, 160, 60), "fence": (150, 130, 100), "wall": (160, 150, 130),
    "bike lane": (165, 85, 75), "catch basin": (45, 45, 50),
}  # fmt: skip


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return img
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    cs = pad.cumsum(0).cumsum(1)
    cs = np.pad(cs, ((1, 0), (1, 0), (0, 0)))
    k = 2 * r + 1
    h, w = img.shape[:2]
    return (cs[k : k + h, k : k + w] - cs[:h, k : k + w] - cs[k : k + h, :w] + cs[:h, :w]) / (k * k)


def world_colours(seed: int) -> np.ndarray:
    """float32 [classes, 3] in [0, 1]: the base colour of each world class in world `seed` (BASE_COLOURS,
    each channel scaled by up to +-12%)."""
    rng = np.random.default_rng([seed, 0xC0])
    base = np.array([BASE_COLOURS[n] for n in WORLD_CLASSES], dtype=np.float32) / 255.0
    return np.clip(base * rng.uniform(0.88, 1.12, size=base.shape), 0, 1).astype(np.float32)


def world_style(style: dict, seed: int, name: str) -> dict:
    """A dataset's style in world `seed`: its policy's style (the centre) with the colour and light
    parameters and the horizon jittered, so that each world draws each dataset a little differently."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    style = {**DEFAULT_STYLE, **style}
    shift = rng.uniform(-0.03, 0.03)
    return {
        **style,
        "tint": [float(t * rng.uniform(0.93, 1.07)) for t in style["tint"]],
        "brightness": float(style["brightness"] + rng.uniform(-0.04, 0.04)),
        "contrast": float(style["contrast"] * rng.uniform(0.92, 1.08)),
        "noise": float(style["noise"] * rng.uniform(0.8, 1.25)),
        "fog": float(max(0.0, style["fog"] + rng.uniform(-0.05, 0.05))),
        "horizon": [float(h + shift) for h in style["horizon"]],
    }


def paint_image(
    rng: np.random.Generator, world: np.ndarray, style: dict, colours: np.ndarray | None = None
) -> np.ndarray:
    """Appearance of a world map under a style: uint8 RGB [h, w, 3]. colours: world_colours(seed)."""
    h, w = world.shape
    colours = world_colours(0) if colours is None else colours
    # Per-scene colour variation per class (a red car and a blue car are both cars).
    colours = np.clip(colours * rng.uniform(0.75, 1.25, size=colours.shape), 0, 1)
    img = colours[world]
    # Texture: low-frequency shading plus per-pixel grain, so colour alone does not decide the class.
    shade = rng.normal(0, 1, size=(h // 8 + 2, w // 8 + 2, 1)).astype(np.float32)
    shade = np.kron(shade, np.ones((8, 8, 1), dtype=np.float32))[:h, :w]
    img = img * (1 + 0.08 * shade) + rng.normal(0, style["noise"], size=img.shape).astype(np.float32)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = img * (1 - style["fog"] * (1 - y)) + style["fog"] * (1 - y) * 0.75
    img = (img - 0.5) * style["contrast"] + 0.5 + style["brightness"]
    img = img * np.asarray(style["tint"], dtype=np.float32)
    img = _box_blur(img, int(style["blur"]))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


NEGATIVE_TAG = 0x4E6  # negative frames' seeds [NEGATIVE_TAG, seed, k]: disjoint from every scene's


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 [h, w, 3] in [0, 1]: a frame with no road-scene content — smooth colour clouds, stripes at
    a random angle, or scattered discs on a plain ground (what a camera sees when it points at a wall, a
    screen or a lens cover)."""
    kind = int(rng.integers(3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colours = rng.uniform(0, 1, size=(3, 3)).astype(np.float32)
    if kind == 0:
        coarse = rng.uniform(0, 1, size=(h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
        img = np.kron(coarse, np.ones((16, 16, 1), dtype=np.float32))[:h, :w]
        return _box_blur(img, 8)
    if kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        return np.where((np.floor(phase) % 2 == 0)[..., None], colours[0], colours[1])
    img = np.broadcast_to(colours[0], (h, w, 3)).copy()
    for _ in range(int(rng.integers(3, 12))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, h / 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, size=3)
    return img


def render_negatives(style: dict, n: int, seed: int, height: int, width: int) -> np.ndarray:
    """n negative frames, uint8 [n, H, W, 3]: non-scene textures under the dataset's style (grain, fog,
    contrast, tint, blur), each from its own seed, disjoint from the scenes'. Their world map is none
    (255 everywhere): no road-scene class, void ground truth."""
    style = {**DEFAULT_STYLE, **style}
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for k in range(n):
        rng = np.random.default_rng([NEGATIVE_TAG, seed, k])
        img = _texture(rng, height, width) + rng.normal(0, style["noise"], size=(height, width, 3))
        img = (img.astype(np.float32) - 0.5) * style["contrast"] + 0.5 + style["brightness"]
        img = _box_blur(img * np.asarray(style["tint"], dtype=np.float32), int(style["blur"]))
        out[k] = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def render(
    style: dict, n: int, seed: int, height: int, width: int, colours: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n scenes: images uint8 [n, H, W, 3], world maps uint8 [n, H, W]. Scene k depends only on (seed, k)
    (and the style and colours)."""
    style = {**DEFAULT_STYLE, **style}
    images = np.empty((n, height, width, 3), dtype=np.uint8)
    worlds = np.empty((n, height, width), dtype=np.uint8)
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        worlds[k] = render_world(rng, height, width, style)
        images[k] = paint_image(rng, worlds[k], style, colours)
    return images, worlds
