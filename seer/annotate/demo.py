"""A small synthetic pairs file for trying the app, its tests and its screenshot: drawn shapes (no dependency), or
images from seer's world renderer where the system's image carries the instruction's attribute and the opponent's
does not (``images="world"``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from seer.data import CATEGORIES

_SUBJECTS = ("a cat", "a teapot", "a house", "a bicycle", "a tree", "a lamp")
_INSTRUCTIONS = {
    "material_synthesis": "Make it look carved entirely out of ice.",
    "perspective_shift": "Show it from directly above.",
    "semantic_edit": "Give it a bright red scarf.",
    "attribute_reasoning": "Paint it the colour of a ripe lemon.",
    "constraint_reasoning": "Show it so that it would float on water.",
    "conceptual_reasoning": "Render it as it would look in the deep of winter.",
}


# category → (instruction, subject, the system image's attribute, the opponent image's) for images="world"
_WORLD = {
    "material_synthesis": (
        "Make it look carved entirely out of ice.",
        "cat",
        {"material": "ice"},
        {"material": "plain"},
    ),
    "perspective_shift": ("Show it far away, as a tiny figure.", "dog", {"size": "small"}, {"size": "large"}),
    "semantic_edit": ("Give it a crown.", "bird", {"accessory": "crown"}, {"accessory": "none"}),
    "attribute_reasoning": ("Paint it the colour of a ripe lemon.", "fish", {"colour": "yellow"}, {"colour": "red"}),
    "constraint_reasoning": (
        "Put it where it is deep winter.",
        "house",
        {"background": "snow"},
        {"background": "grass"},
    ),
    "conceptual_reasoning": (
        "Make it look like a very old photograph.",
        "tree",
        {"style": "sepia"},
        {"style": "normal"},
    ),
}


def _world_pair(category: str, seed: int) -> tuple[str, str, object, object]:
    from seer.world.render import Spec, render

    instruction, subject, mine, theirs = _WORLD[category]
    base = {"subject": subject, "material": "plain", "style": "normal", "accessory": "none", "size": "large"}
    if subject != "fish":
        base["colour"] = "blue"
    system, _ = render(Spec(**{**base, **mine}), seed)
    opponent, _ = render(Spec(**{**base, **theirs}), seed)
    return instruction, f"a {subject}", system, opponent


def _draw(path: Path, rgb: tuple[int, int, int], shape: int, size: int) -> None:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), (236, 238, 242))
    d = ImageDraw.Draw(im)
    m = size // 6
    box = (m, m, size - m, size - m)
    [d.ellipse, d.rectangle, d.polygon][shape % 3](
        box if shape % 3 != 2 else [(size // 2, m), (size - m, size - m), (m, size - m)], fill=rgb
    )
    im.save(path)


def write_demo_pairs(
    folder: str | Path,
    n_cases: int = 12,
    opponents: tuple[str, ...] = ("naive", "base_cot"),
    system: str = "seer",
    seed: int = 0,
    size: int = 96,
    images: str = "shapes",
) -> Path:
    """Write ``folder/pairs.jsonl`` and its images: ``n_cases`` cases (categories and ID/OOD cycled) × opponents.
    Returns the pairs file."""
    from seer.data import save_image

    if images not in ("shapes", "world"):
        raise ValueError(f"images must be 'shapes' or 'world', got {images!r}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_cases):
        category = CATEGORIES[i % len(CATEGORIES)]
        case_id = f"test-{i:04d}"
        sys_img = f"images/{case_id}-{system}.png"
        instruction, prompt = _INSTRUCTIONS[category], _SUBJECTS[i % len(_SUBJECTS)]
        if images == "world":
            instruction, prompt, sys_arr, opp_arr = _world_pair(category, seed + i)
            save_image(folder / sys_img, sys_arr)
        else:
            _draw(folder / sys_img, tuple(int(x) for x in rng.integers(40, 220, 3)), i, size)
        for opponent in opponents:
            opp_img = f"images/{case_id}-{opponent}.png"
            if images == "world":
                save_image(folder / opp_img, opp_arr)
            else:
                _draw(folder / opp_img, tuple(int(x) for x in rng.integers(40, 220, 3)), i + 1, size)
            lines.append(
                {
                    "case_id": case_id,
                    "instruction": instruction,
                    "prompt": prompt,
                    "category": category,
                    "distribution": "id" if (i // len(CATEGORIES)) % 2 == 0 else "ood",
                    "system": system,
                    "opponent": opponent,
                    "image_system": sys_img,
                    "image_opponent": opp_img,
                }
            )
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return path
