"""The world's image tokenizer: a :class:`PatchCodebook` (4x4 patches, K = 1024 → 64 tokens per image) fitted on
renders. The renderer draws every cell from a finite set of patches (a few hundred), fewer than K, so k-means finds
them all and the round trip is exact (measured by ``seer world report``: oracle accuracy on round-trips)."""

from __future__ import annotations

import numpy as np

from seer.backends.image_tokenizer import PatchCodebook
from seer.world.render import CELL, GRID, all_patches, render

NUM_CODES = 1024


def fit_codebook(seed: int = 0, n_images: int = 3000, num_codes: int = NUM_CODES,
                 order: str = "raster") -> PatchCodebook:
    """k-means over the patches of ``n_images`` random renders plus an atlas of every patch the renderer can draw
    (a few images tiling :func:`all_patches`), so rare combinations are never left to a neighbouring centroid."""
    rng = np.random.default_rng(seed)
    images = np.stack([render(None, int(s))[0] for s in rng.integers(0, 2**31, n_images)])
    images = np.concatenate([images, _atlas()])
    return PatchCodebook.fit(images, num_codes, CELL, seed=seed).with_order(order)


def _atlas() -> np.ndarray:
    """Every renderable patch, tiled row-major into (M, 32, 32, 3) images (the last one padded with repeats)."""
    p = all_patches()
    per = GRID * GRID
    p = np.concatenate([p, p[: (-len(p)) % per]])
    m = len(p) // per
    return p.reshape(m, GRID, GRID, CELL, CELL, 3).transpose(0, 1, 3, 2, 4, 5).reshape(m, GRID * CELL, GRID * CELL, 3)


class LookupCodebook(PatchCodebook):
    """The same codebook with a fast exact path for pretraining: a patch equal to a centroid is looked up in a table
    (the code ``PatchCodebook.encode`` would pick: the first of equal centroids); any other patch falls back to the
    nearest-centroid search. Renders consist of centroid patches only, so the corpus encodes ~10x faster."""

    def __init__(self, codebook: PatchCodebook):
        super().__init__(codebook.centroids, codebook.image_size, codebook.patch, codebook.order)
        exact = np.rint(self.centroids).astype(np.uint8)
        self._lut: dict[bytes, int] = {}
        for k in range(self.num_codes):
            if np.array_equal(exact[k].astype(np.float32), self.centroids[k]):
                self._lut.setdefault(exact[k].tobytes(), k)

    def encode(self, images: np.ndarray) -> np.ndarray:
        x = self._to_patches(images)  # (N, L, D) float32
        n, L, d = x.shape
        flat = x.reshape(-1, d)
        u8 = flat.astype(np.uint8)
        out = np.array([self._lut.get(row.tobytes(), -1) for row in u8], dtype=np.int64)
        miss = np.nonzero(out < 0)[0]
        if miss.size:
            out[miss] = self._nearest(flat[miss])
        return out.reshape(n, L)

    def _nearest(self, flat: np.ndarray) -> np.ndarray:
        dist = self._c_sq[None, :] - 2.0 * flat @ self.centroids.T
        return dist.argmin(1)
