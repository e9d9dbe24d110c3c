"""Visual Instruction Elaboration data (paper Sec. 3.3, App. A.1): samples, quadruplets, and their JSONL schema.

Two record kinds, one JSON object per line:

``samples.jsonl`` — what RLMT trains on and what win ratios are measured on::

    {"id": "train-0001", "instruction": "Transform it so it is carved entirely out of ice.",
     "prompt": "a cat", "category": "material_synthesis", "split": "train",
     "distribution": "id",               # "id" | "ood"; training samples are "id"
     "image": "images/train-0001.png",   # optional: the verified positive image (RLVR phase 2)
     "reference_reprompt": "an ice cat"} # optional: a correct concrete rewrite, when the data builder knows one

``quadruplets.jsonl`` — what the RLVR evaluator trains and is scored on (paper: (a, p0, (x1, x2), y))::

    {"id": "q-0001", "phase": 2, "instruction": "...", "prompt": "a cat", "category": "material_synthesis",
     "split": "train", "distribution": "id",
     "image_chosen": "images/q-0001-pos.png", "image_rejected": "images/q-0001-neg.png"}

Phase 1 (basic alignment) records have ``"instruction": ""``: the question is only which image matches the prompt.
Image paths are relative to the JSONL file's folder. The label y is which position the chosen image lands in after
the stage shuffles the pair, so it is balanced between positions by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

SIMPLE_CATEGORIES = ("material_synthesis", "perspective_shift", "semantic_edit")
HARD_CATEGORIES = ("attribute_reasoning", "constraint_reasoning", "conceptual_reasoning")
CATEGORIES = SIMPLE_CATEGORIES + HARD_CATEGORIES
SPLITS = ("train", "test")
DISTRIBUTIONS = ("id", "ood")


class DataError(ValueError):
    """Malformed data: the message names the file, the line and the field, and what was expected."""


def difficulty(category: str) -> str:
    """'simple' or 'hard' for one of the six categories (paper Table 6)."""
    if category in SIMPLE_CATEGORIES:
        return "simple"
    if category in HARD_CATEGORIES:
        return "hard"
    raise DataError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")


@dataclass(frozen=True)
class Sample:
    """One (instruction a, minimal prompt p0) pair of the Visual Instruction Elaboration task."""

    id: str
    instruction: str
    prompt: str
    category: str
    split: str = "train"
    distribution: str = "id"
    image: str | None = None
    reference_reprompt: str | None = None

    @property
    def difficulty(self) -> str:
        return difficulty(self.category)

    @property
    def naive_prompt(self) -> str:
        """The naive concatenation a ⊕ p0 that RLMT's baseline image is generated from (paper Sec. 3.4.2)."""
        return naive_concat(self.instruction, self.prompt)


@dataclass(frozen=True)
class Quadruplet:
    """One pairwise evaluator example: the chosen image better satisfies the instruction (or, in phase 1, the
    prompt) than the rejected one."""

    id: str
    phase: int
    instruction: str
    prompt: str
    category: str
    image_chosen: str
    image_rejected: str
    split: str = "train"
    distribution: str = "id"

    @property
    def difficulty(self) -> str:
        return difficulty(self.category)


def naive_concat(instruction: str, prompt: str) -> str:
    """a ⊕ p0: the instruction and the prompt joined as they are, with no reasoning."""
    return f"{instruction.strip()} {prompt.strip()}".strip()


_REQUIRED = {
    Sample: ("id", "instruction", "prompt", "category"),
    Quadruplet: ("id", "phase", "prompt", "category", "image_chosen", "image_rejected"),
}


def _validate(record: dict[str, Any], cls: type, where: str, categories: Iterable[str]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; expected fields: {sorted(known)}")
    for name in _REQUIRED[cls]:
        if name not in record:
            raise DataError(f"{where}: missing field {name!r}")
    for name in ("id", "instruction", "prompt", "category", "image_chosen", "image_rejected", "split", "distribution"):
        if name in record and not isinstance(record[name], str):
            raise DataError(f"{where}: field {name!r} must be a string, got {type(record[name]).__name__}")
    for name in ("image", "reference_reprompt"):  # optional strings: absent or null mean none
        if record.get(name) is not None and not isinstance(record[name], str):
            raise DataError(f"{where}: field {name!r} must be a string or null, got {type(record[name]).__name__}")
    if not record["prompt"].strip():
        raise DataError(f"{where}: field 'prompt' is empty; expected a minimal prompt such as 'a cat'")
    categories = tuple(categories)
    if record["category"] not in categories:
        raise DataError(f"{where}: field 'category' is {record['category']!r}; known: {', '.join(categories)}")
    if record.get("split", "train") not in SPLITS:
        raise DataError(f"{where}: field 'split' is {record['split']!r}; expected one of {SPLITS}")
    if record.get("distribution", "id") not in DISTRIBUTIONS:
        raise DataError(f"{where}: field 'distribution' is {record['distribution']!r}; expected one of {DISTRIBUTIONS}")
    if cls is Quadruplet:
        # `True == 1` in Python: without the type check "phase": true would be read as phase 1
        if type(record["phase"]) is not int or record["phase"] not in (1, 2):
            raise DataError(f"{where}: field 'phase' is {json.dumps(record['phase'])}; expected 1 or 2")
        record.setdefault("instruction", "")
        if record["phase"] == 2 and not record["instruction"].strip():
            raise DataError(f"{where}: field 'instruction' is empty; phase-2 quadruplets need a visual instruction")
    elif not record["instruction"].strip():
        raise DataError(f"{where}: field 'instruction' is empty; expected a visual instruction")
    return cls(**record)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a folder, a byte that is not UTF-8, bad JSON or a
    non-object raise naming the file and line."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a JSONL file (one JSON object per line)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8; "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
            except RecursionError:  # json.loads of thousands of nested brackets
                raise DataError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _load(path: str | Path, cls: type, categories: Iterable[str], check_images: bool) -> list[Any]:
    path = Path(path)
    categories = tuple(categories)
    records, seen = [], {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rec = _validate(obj, cls, where, categories)
        if rec.id in seen:
            raise DataError(f"{where}: duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        seen[rec.id] = lineno
        if check_images:
            for name in ("image", "image_chosen", "image_rejected"):
                rel = getattr(rec, name, None)
                if rel is not None and not (path.parent / rel).is_file():
                    raise DataError(f"{where}: field {name!r}: image file {path.parent / rel} not found")
        records.append(rec)
    if not records:
        raise DataError(f"{path}: no records; expected one JSON object per line")
    return records


def load_samples(path: str | Path, categories: Iterable[str] = CATEGORIES, check_images: bool = True) -> list[Sample]:
    """Load and validate ``samples.jsonl``: every error names the file, line and field."""
    return _load(path, Sample, categories, check_images)


def load_quadruplets(
    path: str | Path, categories: Iterable[str] = CATEGORIES, check_images: bool = True
) -> list[Quadruplet]:
    """Load and validate ``quadruplets.jsonl``: every error names the file, line and field."""
    return _load(path, Quadruplet, categories, check_images)


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Write dataclass records (or dicts) as JSONL, atomically: a crash leaves the old file whole."""
    from seer.io import atomic_write_text

    lines = []
    for r in records:
        d = asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r)
        lines.append(json.dumps({k: v for k, v in d.items() if v is not None}, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_image(path: str | Path, size: tuple[int, int] | None = None, where: str | None = None) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8; with ``size`` = (H, W), a different shape is an error naming the file."""
    from PIL import Image

    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise DataError(f"{where}: image file {path} not found")
    try:
        with Image.open(path) as im:
            if size is not None and im.size != (size[1], size[0]):  # from the header: a huge image is never decoded
                raise DataError(f"{where}: image {path} is {im.size[0]}x{im.size[1]}; expected {size[1]}x{size[0]}")
            arr = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise DataError(f"{where}: image {path} is too large to read ({e})") from None
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for a broken or non-image file
        raise DataError(f"{where}: cannot read image {path} ({e})") from e
    if size is not None and arr.shape[:2] != tuple(size):
        raise DataError(f"{where}: image {path} is {arr.shape[1]}x{arr.shape[0]}; expected {size[1]}x{size[0]}")
    return arr


def save_image(path: str | Path, image: np.ndarray) -> None:
    import io as _io

    from PIL import Image

    from seer.io import atomic_write_bytes

    buf = _io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
