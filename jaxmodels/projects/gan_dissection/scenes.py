"""Procedural outdoor scenes with exact per-pixel class maps, for a small GAN Dissection reproduction.

GAN Dissection (Bau et al., ICLR 2019, sec. 2) needs a generator trained on scenes and a semantic
segmenter s_c(x) of the generated images. The generative fact sheet's "small reproduction" (sec. 4)
prescribes rendered 32-64 px scenes (sky gradient, ground, trees, houses, doors, sun) saved with their
label maps; this module renders them. Every scene is painted back to front (painter's order) and
every object writes the class map where it writes the image, so a pixel's class is always the object
drawn last there:

  sky (vertical gradient) -> sun -> 2 clouds (3 ellipses each) -> mountain range (2 peaks) ->
  ground (below a horizon of random height and slope) -> path (a trapezoid narrowing to the horizon) ->
  pond (an ellipse, ground rows only) -> 2 far trees -> 2 houses (wall, gabled roof, door, 2 windows)
  -> 2 near trees (trunk, then a round or conifer crown)

Each optional object is present with its own probability. Objects lower in the picture (nearer)
are drawn larger (perspective scale 0.5 at the horizon to 1.5 at the bottom edge). Geometry is in
fractions of ``image_size``, so any size >= 16 renders the same layout.

Colours: every object gets a base colour drawn inside its class's range (a shared brightness draw
plus a smaller per-channel jitter), then per-pixel shading: a vertical gradient (sky, ground, pond),
uniform luminance noise (texture, strongest on foliage and grass) and shingle stripes on roofs. All
of it stays inside the class's RGB box ``COLOUR_BOUNDS[c]`` (inclusive uint8 bounds), and the boxes
of different classes are disjoint, so the class map is exactly recoverable from the colours: the
image and the label map agree pixel for pixel (the tests check this).

Determinism and speed: scene ``i`` of seed ``s`` depends only on ``(s, i)``: its layout, colours and
noise come from ``np.random.default_rng([s, i])`` (``SeedSequence`` entropy [s, i]); drawing is one
small per-scene call, and all painting is vectorised numpy over a batch of scenes (rendered in
chunks of ``CHUNK`` to bound memory). Measured on this repo's 2-CPU development machine (shared with
other jobs, load ~4): 50,000 scenes at 64x64 in 17.7 s (~2,800 scenes/s, one core); one scene per
call ~1.8 ms.

Classes (index = class id in the segmentation): see ``CLASSES``.
"""
from __future__ import annotations

import collections
import threading

import numpy as np

CLASSES: tuple[str, ...] = ("sky", "cloud", "sun", "mountain", "ground", "water", "path", "house", "roof",
                            "door", "window", "trunk", "tree")
CLASS_INDEX = {name: index for index, name in enumerate(CLASSES)}
NUM_CLASSES = len(CLASSES)
MIN_IMAGE_SIZE = 16
CHUNK = 1024  # scenes painted at once (peak memory ~155 MiB at 64x64, measured with tracemalloc)
TEST_INDEX_OFFSET = 1 << 30  # ScenesSource("test") scene i is render_scenes index TEST_INDEX_OFFSET + i

# Inclusive uint8 RGB box of each class ([lo, hi] per channel). Pairwise disjoint: for any two
# classes at least one channel's intervals do not overlap.
COLOUR_BOUNDS = np.array([
    [[70, 140, 205], [200, 230, 255]],    # sky
    [[215, 215, 225], [255, 255, 255]],   # cloud
    [[235, 150, 0], [255, 215, 50]],      # sun
    [[85, 85, 115], [135, 135, 175]],     # mountain
    [[30, 105, 10], [125, 195, 85]],      # ground (grass)
    [[10, 60, 140], [60, 135, 225]],      # water
    [[150, 125, 90], [200, 175, 135]],    # path
    [[205, 160, 115], [250, 225, 180]],   # house (wall)
    [[145, 15, 15], [215, 70, 70]],       # roof
    [[45, 20, 5], [80, 50, 35]],          # door
    [[225, 200, 60], [255, 250, 110]],    # window
    [[90, 45, 15], [140, 85, 50]],        # trunk
    [[0, 50, 0], [40, 100, 45]],          # tree (crown)
], np.float32)  # [class, lo/hi, rgb]

# Per-pixel shading: colour = round(base + GRADIENT * t(y) + STRIPE * s(y)) + n, with t = 2 y / S - 1 in
# [-1, 1] (top to bottom), s = -1 on every third row and n uniform on the integers -NOISE..NOISE per
# pixel (the same for all channels: luminance texture).
GRADIENT = np.zeros((NUM_CLASSES, 3), np.float32)
GRADIENT[CLASS_INDEX["sky"]] = (30, 22, 8)  # deeper blue overhead, paler at the horizon
GRADIENT[CLASS_INDEX["ground"]] = (-12, -18, -6)  # darker in the foreground
GRADIENT[CLASS_INDEX["water"]] = (-8, -12, -15)
NOISE = np.array([2, 4, 3, 5, 10, 6, 8, 5, 6, 4, 4, 6, 12], np.float32)  # per class, in CLASSES order
STRIPE = np.zeros(NUM_CLASSES, np.float32)
STRIPE[CLASS_INDEX["roof"]] = 18  # shingle rows

# Base colours are drawn in the box shrunk by the shading's reach, so the shaded colour stays inside.
_REACH_LOW = np.abs(GRADIENT) + NOISE[:, None] + STRIPE[:, None]
_REACH_HIGH = np.abs(GRADIENT) + NOISE[:, None]
BASE_LOW = COLOUR_BOUNDS[:, 0] + _REACH_LOW
BASE_HIGH = COLOUR_BOUNDS[:, 1] - _REACH_HIGH

# Paint slots, back to front: (slot name, class). The slot index is what the painter writes.
SLOTS: tuple[tuple[str, str], ...] = (
    ("sky", "sky"), ("sun", "sun"), ("cloud0", "cloud"), ("cloud1", "cloud"), ("mountain", "mountain"),
    ("ground", "ground"), ("path", "path"), ("water", "water"),
    *((f"{kind}{t}_{part}", cls) for kind, t in (("far_tree", 0), ("far_tree", 1))
      for part, cls in (("trunk", "trunk"), ("crown", "tree"))),
    *((f"house{h}_{part}", part if part in ("roof", "door", "window") else "house")
      for h in (0, 1) for part in ("wall", "roof", "door", "window")),
    *((f"{kind}{t}_{part}", cls) for kind, t in (("near_tree", 0), ("near_tree", 1))
      for part, cls in (("trunk", "trunk"), ("crown", "tree"))),
)
SLOT_INDEX = {name: index for index, (name, _) in enumerate(SLOTS)}
SLOT_CLASS = np.array([CLASS_INDEX[cls] for _, cls in SLOTS], np.uint8)  # [slot]
NUM_SLOTS = len(SLOTS)

# Per-scene uniforms: one U[0, 1) vector per scene, then the noise field. Colours take 4 per slot
# (shared brightness + 3 channel jitters); the layout takes the rest (see ``_Layout``).
NUM_LAYOUT_UNIFORMS = 160
NUM_UNIFORMS = 4 * NUM_SLOTS + NUM_LAYOUT_UNIFORMS

# Presence probabilities of the optional objects.
P_SUN, P_CLOUD, P_MOUNTAIN, P_PATH, P_WATER, P_TREE, P_HOUSE, P_CONIFER = 0.6, 0.6, 0.5, 0.4, 0.35, 0.7, 0.6, 0.4


class _Layout:
    """Hands out columns of the per-scene uniforms [n, k] as ``lo + (hi - lo) * u`` arrays [n]."""

    def __init__(self, uniforms: np.ndarray):
        self._u = uniforms
        self._next = 0

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        if self._next >= self._u.shape[1]:
            raise RuntimeError("scenes.py: the layout draws more uniforms than NUM_LAYOUT_UNIFORMS")
        column = self._u[:, self._next]
        self._next += 1
        return lo + (hi - lo) * column

    def bernoulli(self, p: float) -> np.ndarray:
        return self.uniform() < p


def _c(v: np.ndarray) -> np.ndarray:
    """A per-scene value [n] as [n, 1, 1], to broadcast against rows [1, S, 1] and columns [1, 1, S]."""
    return v[:, None, None]


class _Painter:
    """Vectorised painter's algorithm over a batch: masks are [n, S, S] booleans built from
    row [n, S, 1] and column [n, 1, S] conditions; ``paint`` writes a slot index where its mask holds."""

    def __init__(self, n: int, size: int):
        self.size = size
        self.ys = (np.arange(size, dtype=np.float32) + 0.5)[None, :, None]  # pixel centres, [1, S, 1]
        self.xs = (np.arange(size, dtype=np.float32) + 0.5)[None, None, :]  # [1, 1, S]
        self.slots = np.zeros((n, size, size), np.uint8)  # everything starts as sky (slot 0)

    def paint(self, slot: str, mask: np.ndarray) -> None:
        np.copyto(self.slots, np.uint8(SLOT_INDEX[slot]), where=mask)

    def rect(self, active, top, bottom, left, right) -> np.ndarray:
        rows = (self.ys >= _c(top)) & (self.ys < _c(bottom)) & _c(active)  # [n, S, 1]
        cols = (self.xs >= _c(left)) & (self.xs < _c(right))  # [n, 1, S]
        return rows & cols

    def ellipse(self, active, cy, cx, ry, rx) -> np.ndarray:
        limit = np.where(active, 1.0, -1.0).astype(np.float32)  # inactive: nothing is inside
        dy = ((self.ys - _c(cy)) / _c(ry)) ** 2  # [n, S, 1]
        dx = ((self.xs - _c(cx)) / _c(rx)) ** 2  # [n, 1, S]
        return dy + dx <= _c(limit)

    def triangle(self, active, apex_y, base_y, cx, half_base) -> np.ndarray:
        """An upright isosceles triangle: rows [apex_y, base_y), half-width growing linearly to half_base."""
        rows = (self.ys >= _c(apex_y)) & (self.ys < _c(base_y)) & _c(active)  # [n, S, 1]
        half_width = (self.ys - _c(apex_y)) * _c(half_base / (base_y - apex_y))  # [n, S, 1]
        return rows & (np.abs(self.xs - _c(cx)) <= half_width)


def _perspective(base_y, horizon, size):
    """Object scale from its ground-contact row: 0.5 at the horizon, 1.5 at the bottom edge."""
    return 0.5 + np.clip((base_y - horizon) / (size - horizon), 0.0, 1.0)


def _paint_tree(painter, layout, name, horizon, slope, near: bool) -> None:
    s = painter.size
    active = layout.bernoulli(P_TREE)
    cx = layout.uniform(0.02, 0.98) * s
    ground_at = horizon + slope * (cx - s / 2)
    depth = layout.uniform(0.2, 1.05) if near else layout.uniform(0.02, 0.25)
    base_y = ground_at + depth * (s - ground_at)
    scale = _perspective(base_y, ground_at, s)
    trunk_h = scale * layout.uniform(0.07, 0.13) * s
    trunk_half = np.maximum(scale * layout.uniform(0.012, 0.025) * s, 0.6)
    crown = scale * layout.uniform(0.07, 0.12) * s
    stretch = layout.uniform(0.9, 1.35)
    conifer = layout.bernoulli(P_CONIFER)
    trunk_top = base_y - trunk_h
    painter.paint(f"{name}_trunk", painter.rect(active, trunk_top, base_y, cx - trunk_half, cx + trunk_half))
    round_crown = painter.ellipse(active & ~conifer, trunk_top - 0.7 * crown * stretch, cx, crown * stretch, crown)
    cone = painter.triangle(active & conifer, trunk_top - 2.6 * crown * stretch, trunk_top + 0.3 * crown, cx,
                            1.1 * crown)
    painter.paint(f"{name}_crown", round_crown | cone)


def _paint_house(painter, layout, name, horizon, slope) -> None:
    s = painter.size
    active = layout.bernoulli(P_HOUSE)
    cx = layout.uniform(0.08, 0.92) * s
    ground_at = horizon + slope * (cx - s / 2)
    base_y = ground_at + layout.uniform(0.08, 0.75) * (s - ground_at)
    scale = _perspective(base_y, ground_at, s)
    width = scale * layout.uniform(0.24, 0.36) * s
    height = scale * layout.uniform(0.15, 0.23) * s
    roof_h = scale * layout.uniform(0.07, 0.14) * s
    overhang = scale * 0.03 * s
    wall_top = base_y - height
    painter.paint(f"{name}_wall", painter.rect(active, wall_top, base_y, cx - width / 2, cx + width / 2))
    painter.paint(f"{name}_roof", painter.triangle(active, wall_top - roof_h, wall_top, cx, width / 2 + overhang))
    door_x = cx + layout.uniform(-0.08, 0.08) * width
    door_half = layout.uniform(0.08, 0.11) * width
    door_top = base_y - layout.uniform(0.4, 0.5) * height
    painter.paint(f"{name}_door", painter.rect(active, door_top, base_y, door_x - door_half, door_x + door_half))
    side = layout.uniform(0.1, 0.15) * height  # half the side of a square window
    centre_y = base_y - layout.uniform(0.65, 0.7) * height
    offset = 0.28 * width
    rows = (centre_y - side, centre_y + side)
    windows = (painter.rect(active, *rows, cx - offset - side, cx - offset + side)
               | painter.rect(active & layout.bernoulli(0.8), *rows, cx + offset - side, cx + offset + side))
    painter.paint(f"{name}_window", windows)


def _paint_layout(painter: _Painter, layout: _Layout) -> None:
    """Draws every slot of every scene from the layout uniforms (see the module docstring for the order)."""
    s = painter.size
    n = painter.slots.shape[0]
    horizon = layout.uniform(0.38, 0.62) * s  # at the centre column
    slope = layout.uniform(-0.15, 0.15)
    horizon_cols = _c(horizon) + _c(slope) * (painter.xs - s / 2)  # [n, 1, S]
    below_horizon = painter.ys >= horizon_cols  # [n, S, S]

    sun_r = layout.uniform(0.05, 0.09) * s
    painter.paint("sun", painter.ellipse(layout.bernoulli(P_SUN), layout.uniform(0.08, 0.3) * s,
                                         layout.uniform(0.1, 0.9) * s, sun_r, sun_r))
    for k in range(2):
        active = layout.bernoulli(P_CLOUD)
        cy, cx = layout.uniform(0.06, 0.3) * s, layout.uniform(0.0, 1.0) * s
        rx = layout.uniform(0.08, 0.14) * s
        ry = rx * layout.uniform(0.4, 0.6)
        puffs = (painter.ellipse(active, cy, cx, ry * 1.2, rx)
                 | painter.ellipse(active, cy + 0.3 * ry, cx - 0.9 * rx, ry * 0.8, rx * 0.7)
                 | painter.ellipse(active, cy + 0.3 * ry, cx + 0.9 * rx, ry * 0.8, rx * 0.7))
        painter.paint(f"cloud{k}", puffs)

    mountain = layout.bernoulli(P_MOUNTAIN)
    top = np.full((n, 1, s), np.inf, np.float32)
    for _ in range(2):
        peak_y = horizon - layout.uniform(0.08, 0.3) * s
        peak_x = layout.uniform(0.0, 1.0) * s
        steep = layout.uniform(0.5, 1.2)
        top = np.minimum(top, _c(peak_y) + _c(steep) * np.abs(painter.xs - _c(peak_x)))  # [n, 1, S]
    painter.paint("mountain", (painter.ys >= top) & _c(mountain))
    painter.paint("ground", below_horizon)

    path = layout.bernoulli(P_PATH)
    far_x, near_x = layout.uniform(0.3, 0.7) * s, layout.uniform(0.25, 0.75) * s
    near_half = layout.uniform(0.08, 0.16) * s
    along = np.clip((painter.ys - _c(horizon)) / _c(s - horizon), 0.0, 1.0)  # 0 at the horizon, 1 at the bottom
    centre = _c(far_x) + _c(near_x - far_x) * along  # [n, S, 1]
    half = 0.01 * s + _c(near_half - 0.01 * s) * along
    painter.paint("path", (np.abs(painter.xs - centre) <= half) & below_horizon & _c(path))

    water = layout.bernoulli(P_WATER)
    pond_rx = layout.uniform(0.12, 0.25) * s
    pond_y = horizon + layout.uniform(0.15, 0.7) * (s - horizon)
    pond = painter.ellipse(water, pond_y, layout.uniform(0.15, 0.85) * s, pond_rx * layout.uniform(0.25, 0.4),
                           pond_rx)
    painter.paint("water", pond & below_horizon)

    for t in range(2):
        _paint_tree(painter, layout, f"far_tree{t}", horizon, slope, near=False)
    for h in range(2):
        _paint_house(painter, layout, f"house{h}", horizon, slope)
    for t in range(2):
        _paint_tree(painter, layout, f"near_tree{t}", horizon, slope, near=True)


def _slot_colours(uniforms: np.ndarray) -> np.ndarray:
    """Base colour of every slot of every scene, float32 [n, slot, 3], inside its class's base range."""
    u = uniforms.reshape(-1, NUM_SLOTS, 4)  # [n, slot, shared + rgb]
    mix = 0.65 * u[..., :1] + 0.35 * u[..., 1:]  # brightness-led jitter, still in [0, 1)
    low, high = BASE_LOW[SLOT_CLASS], BASE_HIGH[SLOT_CLASS]  # [slot, 3]
    return low + (high - low) * mix


def _row_colours(base: np.ndarray, size: int) -> np.ndarray:
    """Noise-free colour of each (scene, slot, row): base + gradient * t(y) + stripe * s(y), [n, slot, S, 3]."""
    t = 2.0 * (np.arange(size, dtype=np.float32) + 0.5) / size - 1.0  # [S], -1 (top) .. 1 (bottom)
    stripe = -(np.arange(size) % 3 == 0).astype(np.float32)  # [S]
    cls = SLOT_CLASS
    rows = GRADIENT[cls][:, None, :] * t[None, :, None] + STRIPE[cls][:, None, None] * stripe[None, :, None]
    return base[:, :, None, :] + rows[None]  # [n, slot, S, 3]


def _shade(slots: np.ndarray, base: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [n, S, S, 3], uint8 classes [n, S, S]) from the slot map, per-slot colours and noise.

    Integer arithmetic: the noise-free colour is rounded (it lies in the integer base box), and the
    noise byte u in 0..255 becomes floor(u (2a + 1) / 256) - a, uniform on the integers -a..a.
    """
    n, s, _ = slots.shape
    table = np.rint(_row_colours(base, s)).astype(np.int16).reshape(-1, 3)  # [(n, slot, row), 3]
    row = np.arange(s)[None, :, None]  # [1, S, 1]
    scene = (np.arange(n) * NUM_SLOTS)[:, None, None]  # [n, 1, 1]
    flat = (scene + slots) * s + row  # [n, S, S] index into the table
    colour = np.take(table, flat, axis=0)  # [n, S, S, 3]
    amplitude = np.take(NOISE[SLOT_CLASS].astype(np.int16), slots)  # [n, S, S]
    luminance = ((noise.astype(np.int16) * (2 * amplitude + 1)) >> 8) - amplitude
    colour += luminance[..., None]
    return colour.astype(np.uint8), np.take(SLOT_CLASS, slots)


def _check_arguments(indices, seed, image_size) -> np.ndarray:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"indices must be non-negative, got {int(array.min())}")
    return array.astype(np.int64)


def _draw(indices: np.ndarray, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-scene random numbers: uniforms [n, NUM_UNIFORMS] and noise bytes [n, S, S], each from
    ``default_rng([seed, index])`` alone."""
    uniforms = np.empty((len(indices), NUM_UNIFORMS), np.float32)
    noise = np.empty((len(indices), size, size), np.uint8)
    for row, index in enumerate(indices.tolist()):
        rng = np.random.default_rng([seed, index])
        uniforms[row] = rng.random(NUM_UNIFORMS, dtype=np.float32)
        noise[row] = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return uniforms, noise


def _render_chunk(indices: np.ndarray, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    uniforms, noise = _draw(indices, seed, size)
    colour_u, layout_u = uniforms[:, :4 * NUM_SLOTS], uniforms[:, 4 * NUM_SLOTS:]
    painter = _Painter(len(indices), size)
    _paint_layout(painter, _Layout(layout_u))
    return _shade(painter.slots, _slot_colours(colour_u), noise)


def render_scenes(indices, seed: int, image_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Renders scenes ``indices`` of ``seed``.

    Args:
      indices: 1-D non-negative integers (array, list or ``range``); scene ``i`` depends only on
        ``(seed, i)``, so any subset or order gives the same scenes.
      seed: non-negative integer.
      image_size: S >= 16.

    Returns:
      (images uint8 [N, S, S, 3], segmentation uint8 [N, S, S]) with class ids indexing ``CLASSES``.
    """
    indices = _check_arguments(indices, seed, image_size)
    size = int(image_size)
    images = np.empty((len(indices), size, size, 3), np.uint8)
    segmentation = np.empty((len(indices), size, size), np.uint8)
    for start in range(0, len(indices), CHUNK):
        chunk = slice(start, start + CHUNK)
        images[chunk], segmentation[chunk] = _render_chunk(indices[chunk], int(seed), size)
    return images, segmentation


class ScenesSource:
    """Random-access scenes for ``grain.MapDataset.source``: ``{"image", "label", "segmentation"}``.

    ``"train"`` example i is scene i of ``seed``; ``"test"`` example i is scene
    ``TEST_INDEX_OFFSET + i`` (disjoint from any train split shorter than 2^30). Scenes are rendered
    in blocks of ``block_size`` on first access and kept in an LRU of ``cache_blocks`` blocks (default:
    the whole split, ~16 KB per 64x64 scene), so a shuffled epoch renders each block once. Safe to
    read from several threads.
    """

    def __init__(self, split: str, num_examples: int, seed: int = 0, image_size: int = 64, *,
                 block_size: int = 1024, cache_blocks: int | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"ScenesSource split must be 'train' or 'test', got {split!r}.")
        if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
            raise ValueError(f"ScenesSource num_examples must be a positive integer, got {num_examples!r}.")
        if block_size < 1:
            raise ValueError(f"ScenesSource block_size must be >= 1, got {block_size}.")
        _check_arguments(np.zeros(0, np.int64), seed, image_size)
        self.split, self.num_examples, self.seed, self.image_size = split, int(num_examples), int(seed), int(image_size)
        self.block_size = int(block_size)
        num_blocks = -(-self.num_examples // self.block_size)
        self.cache_blocks = num_blocks if cache_blocks is None else max(1, int(cache_blocks))
        self.offset = 0 if split == "train" else TEST_INDEX_OFFSET
        self._cache: collections.OrderedDict[int, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.num_examples

    def _block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if block in self._cache:
                self._cache.move_to_end(block)
                return self._cache[block]
            start = block * self.block_size
            stop = min(start + self.block_size, self.num_examples)
            rendered = render_scenes(np.arange(start, stop) + self.offset, self.seed, self.image_size)
            self._cache[block] = rendered
            while len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
            return rendered

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < self.num_examples:
            raise IndexError(f"ScenesSource index {index} out of range [0, {self.num_examples})")
        images, segmentation = self._block(index // self.block_size)
        row = index % self.block_size
        return {"image": images[row].copy(), "label": np.int32(0), "segmentation": segmentation[row].copy()}

    def __repr__(self) -> str:
        return (f"ScenesSource(split={self.split!r}, num_examples={self.num_examples}, seed={self.seed}, "
                f"image_size={self.image_size})")


def build_source(data_cfg, split: str):
    """The image source of a GAN-dissection config: ``data.source="scenes"`` gives
    ``ScenesSource(split, data.num_train or data.num_test, seed=data.seed, image_size=data.image_size)``
    (defaults 0 and 64); any other source (``digits``, ``tfds``) comes from
    :func:`jaxmodels.data.sources.build_source`."""
    if data_cfg.source != "scenes":
        from jaxmodels.data.sources import build_source as generic_source

        return generic_source(data_cfg, split)
    field = "num_train" if split == "train" else "num_test"
    if not data_cfg.get(field):
        raise ValueError(f"data.source='scenes' needs data.{field} (the number of {split} scenes).")
    return ScenesSource(split, data_cfg[field], seed=data_cfg.get("seed", 0), image_size=data_cfg.get("image_size", 64))
