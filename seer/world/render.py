"""The world's renderer: deterministic 32x32 RGB images of one subject with concrete attributes.

Every image is built on the 8x8 grid of 4x4-pixel cells that the image tokenizer cuts it into (``PatchCodebook`` with
``patch=4``): a cell is a subject cell, a background cell or an accessory cell, and its 16 pixels are a fixed function
of (cell kind, colour, material, background, style). So the set of distinct patches in the whole world is finite (a
few hundred), a 1024-code k-means codebook reproduces renders exactly, and no attribute is lost in the round trip —
the issue's trial lost 23% of colours with free-form pixel shapes. The variety a generator must model is in the
composition: which subject shape, where it sits, how large it is, and which attributes it carries.

Attributes (the concrete words of the caption grammar, see :mod:`seer.world.semantics`):

* subject: one of :data:`SUBJECTS`, a 5x5-cell (large) or 3x3-cell (small) mask;
  :data:`TRAIN_SUBJECTS` and :data:`TEST_SUBJECTS` are disjoint (test prompts use only test subjects).
* colour, material (a 4x4 texture modulating the colour), background (texture of the non-subject cells),
  style (a per-patch transform of every cell), accessory (crown / hat above the subject, sparkles in the background,
  a white sticker border around it), size (small / large); the position is drawn from the seed.

``render(spec, seed) -> (image, spec)`` fills every attribute left as ``None`` from ``seed`` and returns the exact
metadata of what it drew.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache

import numpy as np

IMAGE_SIZE = 32
CELL = 4
GRID = IMAGE_SIZE // CELL  # 8x8 cells = the 64 image tokens

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (30, 150, 50),
    "blue": (40, 70, 220),
    "purple": (140, 50, 190),
    "pink": (250, 120, 190),
    "black": (25, 25, 25),
}
MATERIALS = ("plain", "ice", "wood", "metal", "gold", "glass", "stone")
STYLES = ("normal", "pixel", "grainy", "night", "sketch", "sepia")
ACCESSORIES = ("none", "crown", "hat", "sparkles", "border")
BACKGROUNDS = ("grass", "sky", "snow", "room")
SIZES = ("small", "large")

# Subject masks: (large 5x5, small 3x3), '#' = subject cell. Each set is pairwise distinct (checked at import).
_SHAPES: dict[str, tuple[str, str]] = {
    "cat": ("#...#/#####/#.#.#/#####/.###.", "#.#/###/###"),
    "dog": ("##.../#####/#.###/#####/#...#", "#../###/#.#"),
    "bird": ("..##./.###./#####/..##./..#..", ".##/###/.#."),
    "fish": (".#.../###.#/#####/###.#/.#...", "#.#/###/#.#"),
    "tree": (".###./#####/#####/..#../..#..", "###/###/.#."),
    "house": ("..#../.###./#####/#.#.#/#####", ".#./###/###"),
    "car": ("...../.###./#####/#####/.#.#.", ".../###/#.#"),
    "cup": ("#####/#####/####./.###./.###.", "###/.##/.#."),
    "flower": (".#.#./#####/.#.#./..#../.###.", "#.#/.#./###"),
    "robot": ("#####/#.#.#/#####/.###./#...#", "###/#.#/###"),
    "boat": ("..#../..##./..###/#####/.###.", "..#/###/.#."),
    "rabbit": ("#.#../#.#../###../#####/####.", "#.#/##./###"),
    "ghost": (".###./#####/#.#.#/#####/#.#.#", ".#./###/#.#"),
    "mushroom": (".###./#####/#####/.###./.###.", "###/.#./.#."),
    "umbrella": (".###./#####/..#../..#../.##..", "###/.#./##."),
    "key": ("##.../##.../.#.../.###./.#.#.", "##./.#./.##"),
}
SUBJECTS = tuple(_SHAPES)
TEST_SUBJECTS = ("rabbit", "ghost", "mushroom", "umbrella", "key")
TRAIN_SUBJECTS = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS)

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "subject": SUBJECTS,
    "colour": tuple(COLOURS),
    "material": MATERIALS,
    "style": STYLES,
    "accessory": ACCESSORIES,
    "background": BACKGROUNDS,
    "size": SIZES,
}


def _mask(rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows.split("/")], dtype=bool)


MASKS = {s: {"large": _mask(big), "small": _mask(small)} for s, (big, small) in _SHAPES.items()}
for _size in SIZES:
    _seen = {MASKS[s][_size].tobytes(): s for s in SUBJECTS}
    assert len(_seen) == len(SUBJECTS), f"duplicate {_size} subject masks"


class WorldError(ValueError):
    """An unknown subject, attribute value, concept, instruction or category; the message lists what is known."""


@dataclass(frozen=True)
class Spec:
    """What an image shows. ``None`` fields are drawn from the render seed; ``top``/``left`` are the subject's cell
    position (filled by the renderer)."""

    subject: str | None = None
    colour: str | None = None
    material: str | None = None
    style: str | None = None
    accessory: str | None = None
    background: str | None = None
    size: str | None = None
    top: int | None = None
    left: int | None = None

    def __post_init__(self) -> None:
        for name, known in ATTRIBUTES.items():
            v = getattr(self, name)
            if v is not None and v not in known:
                raise WorldError(f"unknown {name} {v!r}; known: {', '.join(known)}")

    def attributes(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in ATTRIBUTES}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Spec:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise WorldError(f"unknown spec field(s) {bad}; known: {sorted(known)}")
        return cls(**d)


def _f(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32)


def _mix(a, b, t: float) -> np.ndarray:
    return _f(a) * (1 - t) + _f(b) * t


def _material_patch(colour: str, material: str) -> np.ndarray:
    c = _f(COLOURS[colour])
    p = np.broadcast_to(c, (CELL, CELL, 3)).copy()
    if material == "ice":
        p[:] = _mix(c, (200, 235, 255), 0.55)
        for i in range(CELL):
            p[i, i] = (250, 255, 255)
    elif material == "wood":
        p[:] = _mix(c, (140, 85, 35), 0.45)
        p[1] = _mix(c, (80, 45, 15), 0.6)
        p[3] = _mix(c, (80, 45, 15), 0.6)
    elif material == "metal":
        base = _mix(c, (165, 170, 180), 0.5)
        for i in range(CELL):
            p[i] = base * (1.25 - 0.17 * i)
    elif material == "gold":
        p[:] = _mix(c, (230, 180, 40), 0.6)
        p[1, 2] = p[2, 1] = (255, 250, 190)
    elif material == "glass":
        p[:] = _mix(c, (255, 255, 255), 0.7)
        p[0, :] = c
        p[:, 0] = c
    elif material == "stone":
        p[:] = _mix(c, (125, 125, 125), 0.5)
        for i, j in ((0, 2), (2, 0), (3, 3), (1, 1)):
            p[i, j] = _mix(c, (50, 50, 50), 0.7)
    return p


def _background_patch(background: str) -> np.ndarray:
    p = np.zeros((CELL, CELL, 3), np.float32)
    if background == "grass":
        p[:] = (110, 190, 90)
        p[1, 1] = p[3, 2] = p[2, 3] = (60, 120, 50)
    elif background == "sky":
        p[:] = (150, 205, 250)
        p[0, 3] = (235, 245, 255)
    elif background == "snow":
        p[:] = (238, 242, 250)
        p[2, 1] = p[0, 3] = (190, 210, 240)
    elif background == "room":
        p[:] = (205, 180, 145)
        p[3, :] = (150, 115, 80)
    return p


def _accessory_patch(kind: str, bg: np.ndarray) -> np.ndarray:
    p = bg.copy()
    if kind == "crown":
        p[2:] = (245, 200, 30)
        p[1, 0] = p[1, 2] = p[0, 0] = p[0, 2] = (245, 200, 30)
        p[3, 1] = (200, 30, 60)
    elif kind == "hat":
        p[1:] = (20, 20, 25)
        p[2, :] = (120, 20, 20)
    elif kind == "sparkle":
        p[1, :3] = p[:3, 1] = (255, 255, 200)
        p[1, 1] = (255, 255, 255)
    elif kind == "border":
        p[:] = (252, 252, 252)
        p[0, 0] = p[3, 3] = p[0, 3] = p[3, 0] = (170, 170, 170)
    return p


_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
_GRAIN = np.array([[18, -22, 10, -14], [-10, 24, -18, 6], [22, -8, 14, -24], [-16, 12, -20, 20]], np.float32)


def _style(p: np.ndarray, style: str, is_subject: bool) -> np.ndarray:
    if style == "normal":
        return p
    if style == "pixel":
        q = np.round(p / 36.0) * 36.0
        q[3, :] *= 0.55
        q[:, 3] *= 0.55
        return q
    if style == "grainy":
        gray = p.mean(-1, keepdims=True)
        q = 0.5 * p + 0.5 * gray + _GRAIN[..., None]
        q[1::2] *= 0.75
        return q * _f((0.9, 1.05, 0.9))
    if style == "night":
        q = p * 0.38 + _f((0, 5, 45))
        if not is_subject:
            q[1, 2] = (255, 250, 170)  # a star in every sky cell: a cue that survives any colour
        return q
    if style == "sketch":
        if is_subject:
            q = _mix(p, (255, 255, 255), 0.5)
            for i in range(CELL):
                q[i, CELL - 1 - i] = (70, 70, 70)
        else:
            q = 0.3 * p + 0.7 * _f((245, 240, 228))
        return q
    if style == "sepia":
        return 0.45 * p + 0.55 * (p @ _SEPIA.T)
    raise WorldError(f"unknown style {style!r}; known: {', '.join(STYLES)}")


@lru_cache(maxsize=4096)
def cell_patch(kind: str, colour: str, material: str, background: str, style: str) -> np.ndarray:
    """The 4x4x3 uint8 pixels of one cell; ``kind`` is 'subject', 'background' or an accessory cell kind."""
    bg = _background_patch(background)
    if kind == "subject":
        p = _material_patch(colour, material)
    elif kind == "background":
        p = bg
    else:
        p = _accessory_patch(kind, bg)
    out = np.clip(np.rint(_style(p, style, kind == "subject")), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def positions(size: str) -> list[tuple[int, int]]:
    """Allowed (top, left) cell positions: one free row above the subject for a crown or hat."""
    n = 5 if size == "large" else 3
    return [(t, left) for t in range(1, GRID - n + 1) for left in range(0, GRID - n + 1)]


# Where the subject sits when a spec does not say: one fixed, centred cell position per size. A generator then
# only has to learn *what* to draw, not to commit to one of 20-30 positions (at step 900 of a trial run with random
# positions the tiny UMM drew backgrounds only); explicit ``top``/``left`` are still honoured (the oracle is trained
# on random positions so that it reads shifted generations too).
DEFAULT_POSITION = {"large": (2, 2), "small": (3, 3)}


def complete(spec: Spec, seed: int, random_position: bool = False) -> Spec:
    """Fill every ``None`` attribute of ``spec`` from ``seed`` (uniformly); the position is the size's default
    (or drawn from the seed with ``random_position``)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7])
    vals = {}
    for name, known in ATTRIBUTES.items():
        v = getattr(spec, name)
        vals[name] = v if v is not None else known[int(rng.integers(len(known)))]
    top, left = spec.top, spec.left
    pos = positions(vals["size"])
    if top is None or left is None or (top, left) not in pos:
        top, left = pos[int(rng.integers(len(pos)))] if random_position else DEFAULT_POSITION[vals["size"]]
    return replace(spec, **vals, top=top, left=left)


def cell_map(spec: Spec, seed: int = 0) -> list[list[str]]:
    """The 8x8 grid of cell kinds for a complete spec."""
    m = MASKS[spec.subject][spec.size]
    n = m.shape[0]
    kinds = [["background"] * GRID for _ in range(GRID)]
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                kinds[spec.top + i][spec.left + j] = "subject"
    if spec.accessory in ("crown", "hat"):
        row = spec.top - 1
        top_cols = [j for j in range(n) if m[0, j]] or list(range(n))
        mid = top_cols[len(top_cols) // 2]
        cols = [mid] if spec.size == "small" else [c for c in (mid - 1, mid, mid + 1) if 0 <= c < n]
        for c in cols:
            kinds[row][spec.left + c] = spec.accessory
    elif spec.accessory == "border":
        for i in range(GRID):
            for j in range(GRID):
                if kinds[i][j] != "background":
                    continue
                near = any(
                    0 <= i + di < GRID and 0 <= j + dj < GRID and kinds[i + di][j + dj] == "subject"
                    for di in (-1, 0, 1) for dj in (-1, 0, 1)
                )
                if near:
                    kinds[i][j] = "border"
    elif spec.accessory == "sparkles":  # five background cells, fixed for a given subject, size and position
        free = [(i, j) for i in range(GRID) for j in range(GRID) if kinds[i][j] == "background"]
        rng = np.random.default_rng([SUBJECTS.index(spec.subject), spec.top, spec.left, 11])
        for k in rng.choice(len(free), size=min(5, len(free)), replace=False):
            i, j = free[int(k)]
            kinds[i][j] = "sparkle"
    return kinds


def render(spec: Spec | None = None, seed: int = 0, random_position: bool = False) -> tuple[np.ndarray, Spec]:
    """Draw ``spec`` (missing attributes drawn from ``seed``): a (32, 32, 3) uint8 image and its complete spec."""
    spec = complete(spec or Spec(), seed, random_position)
    kinds = cell_map(spec, seed)
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i in range(GRID):
        for j in range(GRID):
            img[i * CELL : (i + 1) * CELL, j * CELL : (j + 1) * CELL] = cell_patch(
                kinds[i][j], spec.colour, spec.material, spec.background, spec.style
            )
    return img, spec


def render_many(specs: list[Spec | None], seeds: list[int]) -> tuple[np.ndarray, list[Spec]]:
    out = [render(s, sd) for s, sd in zip(specs, seeds, strict=True)]
    return np.stack([o[0] for o in out]), [o[1] for o in out]


def all_patches() -> np.ndarray:
    """Every distinct cell patch the renderer can draw, (N, 4, 4, 3) uint8: what the codebook is fitted on."""
    kinds = ("subject", "background", "crown", "hat", "sparkle", "border")
    seen = {}
    for style in STYLES:
        for bg in BACKGROUNDS:
            for kind in kinds:
                cols = COLOURS if kind == "subject" else ("red",)
                mats = MATERIALS if kind == "subject" else ("plain",)
                for c in cols:
                    for m in mats:
                        p = cell_patch(kind, c, m, bg, style)
                        seen.setdefault(p.tobytes(), p)
    return np.stack(list(seen.values()))
