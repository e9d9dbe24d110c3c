"""The world's image tokenizer: a :class:`PatchCodebook` (4x4 patches, K = 1024 → 64 tokens per image) fitted on
renders. The renderer draws every cell from a finite set of patches (a few hundred), fewer than K, so k-means finds
them all and the round trip is exact (measured by ``seer world report``: oracle accuracy on round-trips)."""

from __future__ import annotations

import numpy as np

from seer.backends.image_tokenizer import PatchCodebook
from seer.world.render import CELL, render

NUM_CODES = 1024


def fit_codebook(seed: int = 0, n_images: int = 3000, num_codes: int = NUM_CODES) -> PatchCodebook:
    """k-means over the patches of ``n_images`` random renders."""
    rng = np.random.default_rng(seed)
    images = np.stack([render(None, int(s))[0] for s in rng.integers(0, 2**31, n_images)])
    return PatchCodebook.fit(images, num_codes, CELL, seed=seed)
