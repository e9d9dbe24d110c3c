"""Discrete image tokenizers for token UMMs (the Janus/Chameleon family in miniature).

An image tokenizer turns an (H, W, 3) uint8 RGB image into ``tokens_per_image`` integer codes in
``[0, num_codes)`` and back. It belongs to the generation parameters ϕ: it is fitted once and never trained by SEER.

:class:`PatchCodebook` is the simplest faithful one: non-overlapping ``patch x patch`` RGB patches, each replaced
by its nearest centroid of a k-means codebook. It is what the world testbed ships. The token order is ``"raster"``
(row by row, as Janus's VQ tokens), ``"centre"``: the centre cell first, then ring after ring outwards (each ring
clockwise from its top-left corner), or ``"centre_first"``: the centre cell, then the others row by row, so the
first token generated belongs to an object drawn at the centre.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from seer.backends.base import BackendError


@runtime_checkable
class ImageTokenizer(Protocol):
    num_codes: int
    tokens_per_image: int
    image_size: tuple[int, int]  # (H, W)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, tokens_per_image) int64 codes."""
        ...

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(N, tokens_per_image) int codes → (N, H, W, 3) uint8."""
        ...

    def save(self, path: str | Path) -> None: ...


ORDERS = ("raster", "centre", "centre_first")


def patch_order(order: str, grid: tuple[int, int]) -> np.ndarray:
    """The raster indices of a ``grid`` of patches in token order ``order`` (one of :data:`ORDERS`)."""
    gh, gw = grid
    ci, cj = gh // 2, gw // 2
    if order == "raster":
        return np.arange(gh * gw)
    if order == "centre_first":
        centre = ci * gw + cj
        return np.array([centre] + [k for k in range(gh * gw) if k != centre])
    if order != "centre":
        raise BackendError(f"image token order {order!r}: expected one of {', '.join(ORDERS)}")

    def key(k: int) -> tuple[int, float]:
        i, j = divmod(k, gw)
        di, dj = i - ci, j - cj
        # ring, then the clockwise angle from the ring's top-left corner
        return max(abs(di), abs(dj)), (np.arctan2(dj, -di) - np.arctan2(-1, 1)) % (2 * np.pi)

    return np.array(sorted(range(gh * gw), key=key))


class PatchCodebook:
    """k-means codebook over non-overlapping RGB patches; tokens in ``order`` (:data:`ORDERS`)."""

    FILE = "image_tokenizer.npz"

    def __init__(self, centroids: np.ndarray, image_size: tuple[int, int], patch: int, order: str = "raster"):
        centroids = np.asarray(centroids, dtype=np.float32)
        h, w = image_size
        if h % patch or w % patch:
            raise BackendError(f"image size {image_size} is not a multiple of the patch size {patch}")
        if centroids.ndim != 2 or centroids.shape[1] != patch * patch * 3:
            raise BackendError(f"centroids must be (K, {patch * patch * 3}), got {centroids.shape}")
        self.centroids = centroids  # (K, p*p*3) in [0, 255]
        self.image_size = (int(h), int(w))
        self.patch = int(patch)
        self.num_codes = int(centroids.shape[0])
        self.tokens_per_image = (h // patch) * (w // patch)
        self.order = order
        self._perm = patch_order(order, (h // patch, w // patch))  # token t is raster patch _perm[t]
        self._inv = np.argsort(self._perm)
        self._c_sq = (centroids**2).sum(1)

    def with_order(self, order: str) -> PatchCodebook:
        """The same codebook emitting tokens in another order."""
        return PatchCodebook(self.centroids, self.image_size, self.patch, order)

    # -- patches <-> images -------------------------------------------------------------------------------------
    def _to_patches(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        n, h, w, c = images.shape
        if (h, w) != self.image_size or c != 3:
            raise BackendError(f"image tokenizer expects (N, {self.image_size[0]}, {self.image_size[1]}, 3) images, "
                               f"got {tuple(images.shape)}")
        p = self.patch
        x = images.reshape(n, h // p, p, w // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(n, (h // p) * (w // p), p * p * 3)[:, self._perm].astype(np.float32)

    def _from_patches(self, patches: np.ndarray) -> np.ndarray:
        n = patches.shape[0]
        h, w = self.image_size
        p = self.patch
        patches = patches[:, self._inv]
        x = patches.reshape(n, h // p, w // p, p, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, 3)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    def encode(self, images: np.ndarray) -> np.ndarray:
        x = self._to_patches(images)  # (N, L, D)
        n, L, d = x.shape
        flat = x.reshape(-1, d)
        out = np.empty(flat.shape[0], dtype=np.int64)
        for s in range(0, flat.shape[0], 8192):  # bounded memory: (chunk, K) distance matrix
            f = flat[s : s + 8192]
            dist = self._c_sq[None, :] - 2.0 * f @ self.centroids.T
            out[s : s + 8192] = dist.argmin(1)
        return out.reshape(n, L)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim == 1:
            codes = codes[None]
        if codes.shape[1] != self.tokens_per_image:
            raise BackendError(f"expected {self.tokens_per_image} codes per image, got {codes.shape[1]}")
        if codes.min(initial=0) < 0 or codes.max(initial=0) >= self.num_codes:
            raise BackendError(f"image codes must lie in [0, {self.num_codes}), got [{codes.min()}, {codes.max()}]")
        return self._from_patches(self.centroids[codes])

    def roundtrip(self, images: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(images))

    # -- fitting and persistence ---------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        images: np.ndarray,
        num_codes: int,
        patch: int,
        *,
        iters: int = 20,
        seed: int = 0,
        max_patches: int = 200_000,
    ) -> PatchCodebook:
        """k-means (k-means++ init on a subsample, Lloyd iterations) over the patches of ``images``."""
        images = np.asarray(images)
        tmp = cls(np.zeros((1, patch * patch * 3), np.float32), images.shape[1:3], patch)
        x = tmp._to_patches(images).reshape(-1, patch * patch * 3)
        rng = np.random.default_rng(seed)
        if x.shape[0] > max_patches:
            x = x[rng.choice(x.shape[0], max_patches, replace=False)]
        uniq = np.unique(x, axis=0)
        if uniq.shape[0] <= num_codes:  # fewer distinct patches than codes: exact codebook, padded
            pad = uniq[rng.integers(0, uniq.shape[0], num_codes - uniq.shape[0])]
            return cls(np.concatenate([uniq, pad]), tmp.image_size, patch)
        # k-means++ seeding on a subsample keeps this O(K * S)
        sub = uniq[rng.choice(uniq.shape[0], min(uniq.shape[0], 20 * num_codes), replace=False)]
        cents = [sub[rng.integers(sub.shape[0])]]
        d2 = ((sub - cents[0]) ** 2).sum(1)
        for _ in range(1, num_codes):
            probs = d2 / d2.sum() if d2.sum() > 0 else np.full_like(d2, 1 / d2.size)
            c = sub[rng.choice(sub.shape[0], p=probs)]
            cents.append(c)
            d2 = np.minimum(d2, ((sub - c) ** 2).sum(1))
        c = np.stack(cents).astype(np.float32)
        for _ in range(iters):
            cb = cls(c, tmp.image_size, patch)
            assign = np.concatenate(
                [((cb._c_sq[None] - 2.0 * x[s : s + 8192] @ c.T).argmin(1)) for s in range(0, x.shape[0], 8192)]
            )
            sums = np.zeros_like(c)
            np.add.at(sums, assign, x)
            counts = np.bincount(assign, minlength=num_codes)
            empty = counts == 0
            c = np.where(empty[:, None], c, sums / np.maximum(counts, 1)[:, None])
            if empty.any():  # re-seed dead codes on random patches
                c[empty] = x[rng.choice(x.shape[0], int(empty.sum()), replace=False)]
        return cls(c, tmp.image_size, patch)

    @classmethod
    def random(cls, num_codes: int, image_size: tuple[int, int], patch: int, seed: int = 0) -> PatchCodebook:
        """A random codebook (for tests of model code paths that do not care what images look like)."""
        rng = np.random.default_rng(seed)
        return cls(rng.uniform(0, 255, (num_codes, patch * patch * 3)), image_size, patch)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / self.FILE, centroids=self.centroids, image_size=np.array(self.image_size),
                 patch=np.array(self.patch), order=np.array(self.order))
        (path / "image_tokenizer.json").write_text(json.dumps(
            {"kind": "patch_codebook", "num_codes": self.num_codes, "patch": self.patch, "order": self.order,
             "image_size": list(self.image_size), "tokens_per_image": self.tokens_per_image}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> PatchCodebook:
        f = Path(path) / cls.FILE
        if not f.is_file():
            raise BackendError(f"{f}: image tokenizer file missing")
        try:
            z = np.load(f)
            order = str(z["order"]) if "order" in z.files else "raster"  # files written before orders existed
            return cls(z["centroids"], tuple(int(v) for v in z["image_size"]), int(z["patch"]), order)
        except BackendError as e:
            raise BackendError(f"{f}: {e}") from e
        except (KeyError, ValueError, OSError) as e:
            raise BackendError(f"{f}: corrupted image tokenizer ({e})") from e
