"""Shared helpers of the evaluations: opening checkpoints that must match one another, image sizes, seeds."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from seer.backends.base import BACKEND_FILE, BackendError, load_backend, read_backend_meta

# backend.json fields that must agree between checkpoints compared in one table (same vocabulary, same images)
COMPAT_FIELDS = ("kind", "vocab_size", "num_image_codes", "tokens_per_image", "image_size")


def resolve_model_dir(path: str | Path) -> Path:
    """A checkpoint directory: ``path`` itself, its ``model/`` when given a stage run directory, or its ``umm/``
    when given a world base."""
    path = Path(path)
    for candidate in (path, path / "model", path / "umm"):
        if (candidate / BACKEND_FILE).is_file():
            return candidate
    raise BackendError(f"{path}: not a seer checkpoint (no {BACKEND_FILE} in it, in {path / 'model'} or in "
                       f"{path / 'umm'})")


def check_compatible(reference: str | Path, other: str | Path) -> None:
    """Raise naming both files if two checkpoints differ in backend kind, vocabulary or image format."""
    ref_dir, other_dir = resolve_model_dir(reference), resolve_model_dir(other)
    ref, oth = read_backend_meta(ref_dir), read_backend_meta(other_dir)
    for key in COMPAT_FIELDS:
        if key in ref and ref.get(key) != oth.get(key):
            raise BackendError(
                f"{other_dir / BACKEND_FILE}: {key} is {oth.get(key)!r} but the reference checkpoint "
                f"{ref_dir / BACKEND_FILE} has {ref[key]!r}; every model compared in one evaluation must share the "
                f"backend kind, vocabulary and image format"
            )


def open_checkpoint(path: str | Path, reference: str | Path | None = None, **kwargs: Any) -> Any:
    """Load a backend from a checkpoint (or a stage run dir), checked against ``reference`` when given."""
    model_dir = resolve_model_dir(path)
    if reference is not None:
        check_compatible(reference, model_dir)
    return load_backend(model_dir, **kwargs)


def backend_image_size(backend: Any) -> tuple[int, int] | None:
    """(H, W) of the images a backend reads and writes, when it says."""
    for obj in (backend, getattr(backend, "image_tokenizer", None), getattr(backend, "codebook", None)):
        size = getattr(obj, "image_size", None) if obj is not None else None
        if size is not None:
            return int(size[0]), int(size[1])
    return None


def case_seed(case_id: str, base_seed: int = 0) -> int:
    """A stable image seed per test case (the same for every system compared on that case)."""
    digest = hashlib.sha256(f"{base_seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def word_count(text: str) -> int:
    """Words in a reprompt, as the paper's '# Avg. Words': whitespace-separated tokens that hold a letter or digit."""
    return sum(1 for w in text.split() if re.search(r"\w", w))


def safe_name(text: str) -> str:
    """A file-name-safe version of an id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def balanced_subset(items: list[Any], n: int) -> list[Any]:
    """The first ``n`` items taking (distribution, category) cells in turn, so a reduced set keeps every cell of the
    tables; original order kept. ``n = 0`` or ``n ≥ len(items)`` keeps everything."""
    if not n or n >= len(items):
        return list(items)
    buckets: dict[tuple[str, str], list[Any]] = {}
    for it in items:
        buckets.setdefault((it.distribution, it.category), []).append(it)
    chosen: list[Any] = []
    while len(chosen) < n:
        for b in buckets.values():
            if b and len(chosen) < n:
                chosen.append(b.pop(0))
    keep = {id(x) for x in chosen}
    return [it for it in items if id(it) in keep]
