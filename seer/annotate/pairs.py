"""The pairs file a study is made from: one blind comparison per line (``seer eval export-pairs`` writes it).

::

    {"case_id": "test-0007", "instruction": "Make it look carved out of ice.", "prompt": "a cat",
     "category": "material_synthesis",   # one of seer.data.CATEGORIES; Simple/Hard follows seer.data.difficulty
     "distribution": "id",               # "id" | "ood"
     "system": "seer", "opponent": "naive",
     "image_system": "images/test-0007-seer.png", "image_opponent": "images/test-0007-naive.png"}

Exactly these nine fields, all non-empty strings. Image paths are relative to the JSONL file's folder and must stay
inside it (no ``..``, absolute path or symlink leading out) unless ``allow_outside``; two paths that resolve to one
file are the same image. One line per
(case, system, opponent); lines that share a ``case_id`` must agree on instruction, prompt, category and distribution.
Every mistake is reported with the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from seer.data import CATEGORIES, DISTRIBUTIONS, DataError, iter_jsonl


@dataclass(frozen=True)
class Pair:
    """One blind comparison: the system's image against the opponent's for one test case."""

    case_id: str
    instruction: str
    prompt: str
    category: str
    distribution: str
    system: str
    opponent: str
    image_system: str
    image_opponent: str


PAIR_FIELDS = tuple(f.name for f in fields(Pair))
_CASE_FIELDS = ("instruction", "prompt", "category", "distribution")


def _check_record(obj: dict[str, Any], where: str) -> Pair:
    unknown = sorted(set(obj) - set(PAIR_FIELDS))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; expected exactly: {', '.join(PAIR_FIELDS)}")
    for name in PAIR_FIELDS:
        if name not in obj:
            raise DataError(f"{where}: missing field {name!r}; expected exactly: {', '.join(PAIR_FIELDS)}")
        value = obj[name]
        if not isinstance(value, str):
            raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise DataError(f"{where}: field {name!r} is empty")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON's "\ud800": a lone surrogate, which no file or database can store
            raise DataError(f"{where}: field {name!r} holds a lone surrogate ({value[e.start]!r} at character "
                            f"{e.start + 1}), not text") from None
    if obj["category"] not in CATEGORIES:
        raise DataError(f"{where}: field 'category' is {obj['category']!r}; expected one of {', '.join(CATEGORIES)}")
    if obj["distribution"] not in DISTRIBUTIONS:
        raise DataError(f"{where}: field 'distribution' is {obj['distribution']!r}; expected one of {DISTRIBUTIONS}")
    if obj["system"] == obj["opponent"]:
        raise DataError(f"{where}: fields 'system' and 'opponent' are both {obj['system']!r}; a pair needs two systems")
    if obj["image_system"] == obj["image_opponent"]:
        raise DataError(f"{where}: 'image_system' and 'image_opponent' are the same file {obj['image_system']!r}")
    return Pair(**obj)


def load_pairs(path: str | Path, allow_outside: bool = False) -> list[tuple[int, Pair]]:
    """Read and validate a pairs file: ``[(line number, Pair), ...]``; image files must exist, inside the file's
    folder unless ``allow_outside``.

    Image contents are checked later, when :func:`seer.annotate.study.create_study` copies them."""
    path = Path(path)
    folder = path.parent.resolve()
    out: list[tuple[int, Pair]] = []
    seen: dict[tuple[str, str, str], int] = {}
    cases: dict[str, tuple[int, Pair]] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        pair = _check_record(obj, where)
        key = (pair.case_id, pair.system, pair.opponent)
        if key in seen:
            raise DataError(
                f"{where}: duplicate pair case_id={pair.case_id!r} system={pair.system!r} "
                f"opponent={pair.opponent!r} (first on line {seen[key]})"
            )
        seen[key] = lineno
        if pair.case_id in cases:
            first_line, first = cases[pair.case_id]
            for name in _CASE_FIELDS:
                if getattr(first, name) != getattr(pair, name):
                    raise DataError(
                        f"{where}: field {name!r} is {getattr(pair, name)!r} but line {first_line} gives case "
                        f"{pair.case_id!r} {name}={getattr(first, name)!r}; one case must have one {name}"
                    )
        else:
            cases[pair.case_id] = (lineno, pair)
        resolved = {}
        for name in ("image_system", "image_opponent"):
            image = path.parent / getattr(pair, name)
            if not image.is_file():
                raise DataError(f"{where}: field {name!r}: image file {image} not found")
            resolved[name] = image.resolve()  # follows symlinks and folds ./ and ../
            if not allow_outside and not resolved[name].is_relative_to(folder):
                raise DataError(f"{where}: field {name!r}: image {getattr(pair, name)!r} is outside the pairs file's "
                                f"folder {folder} (it resolves to {resolved[name]}); image paths are relative to that "
                                "folder, or pass --allow-outside")
        if resolved["image_system"] == resolved["image_opponent"]:
            raise DataError(f"{where}: 'image_system' {pair.image_system!r} and 'image_opponent' "
                            f"{pair.image_opponent!r} are the same file {resolved['image_system']}")
        out.append((lineno, pair))
    if not out:
        raise DataError(f"{path}: no pairs; expected one JSON object per line with fields {', '.join(PAIR_FIELDS)}")
    return out
