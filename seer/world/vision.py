"""The world's vision encoder (world v2, issue 20): Janus's SigLIP in miniature, for the understanding path.

A unified model that reads images as arbitrary VQ ids learns nothing about one code from another that shares its
colour or material (the v1 base read material at 55%; a linear probe of its code embeddings recovered material 0.44,
the same cells' raw pixels 0.93). Real UMMs decouple the two paths: Janus feeds understanding from a pretrained SigLIP
encoder through an aligner and generation from VQ codes; Harmon from an MAE encoder. The world does the same:

* :class:`VisionEncoder` reads the 8x8 grid of 4x4-pixel cells: a per-patch **stem** (an MLP over a cell's 48 pixel
  values) and a small transformer over the 64 cells. It is trained once, here, on the renderer's own labels (as SigLIP
  is pretrained elsewhere): the stem on what one cell shows (its kind, the subject's colour and material where the
  cell is a subject cell, the style, the background where it shows), and every cell of the transformer's output on
  every attribute of the image, so that a linear read-out of any cell's feature recovers all of them
  (:func:`probe_accuracy` measures it on held-out renders: the issue's gate is >= 98% per attribute).
* It is then frozen and shipped with the base (ϕ, like the VQ codebook). The aligner that maps its features into the
  language model (:class:`Aligner`, two layers, as Janus's) is trained with the language model in pretraining and in RL
  (θ: it is understanding-side, and Janus trains its understanding aligner with the LLM).
* The stem's feature of each VQ code's centroid is also what the generation side's code embeddings and output rows are
  built from during pretraining (:mod:`seer.world.pretrain`), so a colour word's gradient reaches every code of that
  colour, not one id.

Determinism: :func:`train_encoder` draws its renders from ``numpy.random.default_rng(seed)`` and initialises from
``torch.manual_seed(seed)`` under a forked RNG; the same seed gives the same weights on the same machine.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seer.world.render import ATTRIBUTES, CELL, GRID, IMAGE_SIZE, all_patches, cell_map, render

ENCODER_FILE = "vision_encoder.safetensors"
ENCODER_CONFIG = "vision_encoder.json"
CELL_KINDS = ("background", "subject", "crown", "hat", "sparkle", "border")
# what one cell shows on its own (the stem's targets); None where the cell does not show it
LOCAL_ATTRIBUTES = ("kind", "colour", "material", "style", "background")
PATCH_DIM = CELL * CELL * 3


@dataclass
class EncoderConfig:
    dim: int = 64  # feature width
    layers: int = 2  # transformer layers over the 64 cells
    heads: int = 4
    steps: int = 2000  # training steps (the subject's shape is read only after a plateau: probe 0.76 at 1000 steps)
    batch: int = 96  # images per step
    pool: int = 12000  # renders drawn once (with their labels), from which each batch samples
    lr: float = 2e-3
    seed: int = 0
    noise_cells: float = 0.3  # share of training renders with 1-3 cells replaced by a random patch (generations stray)
    cells: int = GRID * GRID  # patches per image (the world's 8x8; tests use smaller images)
    patch_dim: int = PATCH_DIM  # values per patch (4x4 RGB)


def image_patches(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 → (N, 64, 48) float in [0, 1], cells in raster order."""
    x = torch.as_tensor(np.asarray(images)).float() / 255.0
    n = x.shape[0]
    x = x.reshape(n, GRID, CELL, GRID, CELL, 3).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, GRID * GRID, PATCH_DIM)


class VisionEncoder(nn.Module):
    """Per-cell features (N, 64, dim) of (N, 32, 32, 3) images; heads used only to train it."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.stem = nn.Sequential(nn.Linear(cfg.patch_dim, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        if round(cfg.cells ** 0.5) ** 2 != cfg.cells:
            raise ValueError(f"cells: expected a square grid of patches, got {cfg.cells}")
        self.pos = nn.Parameter(torch.zeros(cfg.cells, d))
        # the subject is a shape anywhere on the grid: 3x3 convs over the cells and a global pool read it translation
        # invariantly (as the oracle does); without them a 2-layer transformer left the subject at chance (probe 0.08
        # after 800 steps) while reading every local attribute at 97-100%
        self.side = int(round(cfg.cells ** 0.5))
        # they read the stem's cell-kind probabilities (a clean mask, as the oracle's shape convs do) beside the stem
        self.shape = nn.Sequential(nn.Conv2d(d + len(CELL_KINDS), d, 3, padding=1), nn.GELU(),
                                   nn.Conv2d(d, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, d, 3, padding=1), nn.GELU())
        self.pool = nn.Linear(2 * d, d)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        sizes = {"kind": len(CELL_KINDS), **{k: len(v) for k, v in ATTRIBUTES.items()}}
        self.local_heads = nn.ModuleDict({k: nn.Linear(d, sizes[k]) for k in LOCAL_ATTRIBUTES})
        self.image_heads = nn.ModuleDict({k: nn.Linear(d, n) for k, n in sizes.items()})

    def patch_features(self, patches: torch.Tensor) -> torch.Tensor:
        """The stem: (..., 48) pixel values in [0, 1] → (..., dim), one cell on its own."""
        return self.stem(patches)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 64, 48) → (N, 64, dim): every cell's feature carries its own content and the whole image's."""
        stem = self.patch_features(patches)  # (N, P, d)
        n, p, d = stem.shape
        kinds = self.local_heads["kind"](stem).softmax(-1)  # (N, P, kinds)
        grid = torch.cat([stem, kinds], -1).transpose(1, 2).reshape(n, -1, self.side, self.side)
        g = self.shape(grid).flatten(2)  # (N, d, P)
        g = self.pool(torch.cat([g.amax(-1), g.mean(-1)], -1))  # (N, d): the whole image
        return self.norm(self.blocks(stem + self.pos + g[:, None]))

    def encode_images(self, images) -> torch.Tensor:
        return self(image_patches(images))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(path / ENCODER_FILE))
        (path / ENCODER_CONFIG).write_text(json.dumps(asdict(self.cfg), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> VisionEncoder:
        from safetensors.torch import load_file

        from seer.backends.base import BackendError

        path = Path(path)
        for f in (ENCODER_FILE, ENCODER_CONFIG):
            if not (path / f).is_file():
                raise BackendError(f"{path / f}: missing; a world v2 base ships its vision encoder as {ENCODER_FILE} "
                                   f"+ {ENCODER_CONFIG} (written by `seer world pretrain`)")
        try:
            cfg = EncoderConfig(**json.loads((path / ENCODER_CONFIG).read_text()))
        except (TypeError, ValueError) as e:
            raise BackendError(f"{path / ENCODER_CONFIG}: not a vision encoder config ({e})") from e
        enc = cls(cfg)
        try:
            enc.load_state_dict(load_file(str(path / ENCODER_FILE)))
        except (RuntimeError, OSError) as e:
            raise BackendError(f"{path / ENCODER_FILE}: does not match {path / ENCODER_CONFIG} ({e})") from e
        enc.requires_grad_(False)
        enc.eval()
        return enc


class Aligner(nn.Module):
    """Encoder features → the language model's embedding width (two layers with a GELU, as Janus's aligner)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------------------------
# labels and training
# ---------------------------------------------------------------------------------------------------------------
def _labels(specs, kinds_maps) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-cell local labels (N, 64) with -100 where a cell does not show the attribute, and image labels (N,)."""
    n = len(specs)
    local = {k: torch.full((n, GRID * GRID), -100, dtype=torch.long) for k in LOCAL_ATTRIBUTES}
    image = {k: torch.empty(n, dtype=torch.long) for k in ("kind", *ATTRIBUTES)}
    for b, (spec, kinds) in enumerate(zip(specs, kinds_maps, strict=True)):
        for k, vals in ATTRIBUTES.items():
            image[k][b] = vals.index(getattr(spec, k))
        for c, kind in enumerate(x for row in kinds for x in row):
            if kind is None:  # a replaced (noise) cell
                continue
            local["kind"][b, c] = CELL_KINDS.index(kind)
            local["style"][b, c] = ATTRIBUTES["style"].index(spec.style)
            if kind == "subject":
                local["colour"][b, c] = ATTRIBUTES["colour"].index(spec.colour)
                local["material"][b, c] = ATTRIBUTES["material"].index(spec.material)
            elif kind != "border":  # a border cell is plain white: its background does not show
                local["background"][b, c] = ATTRIBUTES["background"].index(spec.background)
    image.pop("kind")
    return local, image


@lru_cache(maxsize=1)
def _patch_pool() -> np.ndarray:
    return all_patches()


def render_pool(rng: np.random.Generator, n: int):
    """``n`` renders (half at a random position) with their labels: images (n, 32, 32, 3), per-cell local labels
    {attr: (n, 64)} (-100 where a cell does not show it) and image labels {attr: (n,)}."""
    images, specs, maps = [], [], []
    for _ in range(n):
        img, spec = render(None, int(rng.integers(0, 2**31)), random_position=bool(rng.random() < 0.5))
        images.append(img)
        specs.append(spec)
        maps.append(cell_map(spec))
    local, image = _labels(specs, maps)
    return np.stack(images), local, image


def training_batch(rng: np.random.Generator, pool, n: int, noise_cells: float = 0.0):
    """``n`` images drawn from a :func:`render_pool`; ``noise_cells`` of them get 1-3 cells replaced by a random
    renderable patch (its local labels unknown), as a stray cell in a generated image."""
    images, local, image = pool
    idx = rng.integers(0, len(images), n)
    imgs = images[idx].copy()
    loc = {k: v[idx].clone() for k, v in local.items()}
    patches = _patch_pool()
    for b in np.nonzero(rng.random(n) < noise_cells)[0]:
        for c in rng.choice(GRID * GRID, size=int(rng.integers(1, 4)), replace=False):
            i, j = divmod(int(c), GRID)
            imgs[b, i * CELL:(i + 1) * CELL, j * CELL:(j + 1) * CELL] = patches[int(rng.integers(len(patches)))]
            for v in loc.values():
                v[b, c] = -100
    return imgs, loc, {k: v[idx] for k, v in image.items()}


def _loss(enc: VisionEncoder, patches, local, image) -> torch.Tensor:
    ce = nn.functional.cross_entropy
    stem = enc.patch_features(patches)  # (N, 64, d)
    feats = enc(patches)
    loss = sum(ce(enc.local_heads[k](stem).flatten(0, 1), local[k].flatten(), ignore_index=-100)
               for k in LOCAL_ATTRIBUTES)
    loss = loss + ce(enc.image_heads["kind"](feats).flatten(0, 1), local["kind"].flatten(), ignore_index=-100)
    for k, y in image.items():  # every cell predicts every attribute of the image
        logits = enc.image_heads[k](feats)  # (N, 64, C)
        loss = loss + ce(logits.flatten(0, 1), y[:, None].expand(-1, GRID * GRID).flatten())
    return loss


def train_encoder(cfg: EncoderConfig | None = None, log=None) -> VisionEncoder:
    """Train the encoder on a pool of renders (``cfg.pool``; ``cfg.steps`` batches drawn from it with fresh stray
    cells)."""
    from tqdm import tqdm

    cfg = cfg or EncoderConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        enc = VisionEncoder(cfg)
    rng = np.random.default_rng([cfg.seed, 20])
    pool = render_pool(rng, cfg.pool)
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    enc.train()
    t0 = time.time()
    for step in tqdm(range(cfg.steps), desc="vision encoder", mininterval=10):
        images, local, image = training_batch(rng, pool, cfg.batch, cfg.noise_cells)
        loss = _loss(enc, image_patches(images), local, image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % 100 == 0:
            log({"step": step + 1, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - t0, 1)})
    enc.requires_grad_(False)
    enc.eval()
    return enc


@torch.no_grad()
def probe_accuracy(enc: VisionEncoder, n_train: int = 1500, n_test: int = 500, seed: int = 1) -> dict:
    """A *linear probe* fitted afresh (not the training heads) on the frozen features of held-out renders: per
    attribute, the accuracy of reading it from one cell's feature (every cell of every test image), and of reading a
    cell's own kind. Ridge regression on one-hot targets, closed form, so the measurement has no training knobs."""
    rng = np.random.default_rng([seed, 21])

    def feats(n):
        images, local, image = render_pool(rng, n)
        f = enc(image_patches(images))  # (n, 64, d)
        return f.reshape(-1, f.shape[-1]).double(), local, image

    ftr, ltr, itr = feats(n_train)
    fte, lte, ite = feats(n_test)
    x = torch.cat([ftr, torch.ones(len(ftr), 1, dtype=torch.float64)], 1)
    xt = torch.cat([fte, torch.ones(len(fte), 1, dtype=torch.float64)], 1)
    gram = x.T @ x + 1e-3 * torch.eye(x.shape[1], dtype=torch.float64)
    out = {}
    targets = {k: (itr[k][:, None].expand(-1, GRID * GRID).flatten(), ite[k][:, None].expand(-1, GRID * GRID).flatten())
               for k in ATTRIBUTES}
    targets["cell_kind"] = (ltr["kind"].flatten(), lte["kind"].flatten())
    for k, (ytr, yte) in targets.items():
        n_cls = int(max(ytr.max(), yte.max())) + 1
        onehot = torch.nn.functional.one_hot(ytr, n_cls).double()
        w = torch.linalg.solve(gram, x.T @ onehot)
        pred = (xt @ w).argmax(-1)
        out[k] = round(float((pred == yte).double().mean()), 4)
    out["n_test_images"] = n_test
    return out


def code_features(enc: VisionEncoder, centroids: np.ndarray) -> torch.Tensor:
    """(K, dim) stem features of each VQ code's centroid patch ((K, 4, 4, 3) or (K, 48) pixel values 0-255)."""
    c = torch.as_tensor(np.asarray(centroids, dtype=np.float32)).reshape(len(centroids), -1) / 255.0
    # the codebook flattens a patch as (row, col, rgb), the same order as image_patches
    with torch.no_grad():
        return enc.patch_features(c)


assert IMAGE_SIZE == GRID * CELL
