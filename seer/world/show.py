"""``seer world show``: one PNG that shows the world and its gap.

Rows: (1) renders, (2) their codebook round-trips, then per category one row of pairs — the base UMM's image from the
naive prompt ``a ⊕ p0`` and from a correct concrete rewrite — each labelled with the oracle's verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seer.data import CATEGORIES, Sample
from seer.world import semantics as S
from seer.world.corpus import faithful_reprompt, minimal_prompt
from seer.world.render import TEST_SUBJECTS, render

SCALE = 3
LABEL_W = 230


def _row(images: list[np.ndarray], label: str, marks: list[str] | None = None):
    from PIL import Image, ImageDraw

    tile = 32 * SCALE
    row = Image.new("RGB", (LABEL_W + len(images) * (tile + 4), tile + 14), "white")
    d = ImageDraw.Draw(row)
    d.text((4, tile // 2 - 6), label[:36], fill="black")
    for k, im in enumerate(images):
        x = LABEL_W + k * (tile + 4)
        row.paste(Image.fromarray(im).resize((tile, tile), Image.NEAREST), (x, 0))
        if marks:
            d.text((x + 2, tile + 1), marks[k], fill="darkgreen" if marks[k].endswith("ok") else "darkred")
    return row


def show(out: str | Path, base: str | None = None, seed: int = 0, per_category: int = 3) -> None:
    from PIL import Image

    from seer.io import atomic_write_bytes
    from seer.world import load_base

    backend, oracle, _ = load_base(base)
    rng = np.random.default_rng(seed)
    renders = [render(None, int(s))[0] for s in rng.integers(0, 2**31, 8)]
    rows = [_row(renders, "renders"), _row(list(backend.image_tokenizer.roundtrip(np.stack(renders))),
                                          "decoded tokens (round trip)")]
    for cat in CATEGORIES:
        instrs = [i for i in S.TRAIN_INSTRUCTIONS if i.category == cat]
        imgs, marks, labels = [], [], []
        for k in range(per_category):
            instr = instrs[int(rng.integers(len(instrs)))]
            p0 = minimal_prompt(rng, TEST_SUBJECTS[k % len(TEST_SUBJECTS)], set(instr.rule))
            sample = Sample(id=f"show-{cat}-{k}", instruction=instr.text, prompt=p0, category=cat)
            rewrite = faithful_reprompt(instr, p0, rng)
            pair = backend.generate_images([sample.naive_prompt, rewrite], [seed + k, seed + k])
            for tag, im in zip(("naive", "rewrite"), pair, strict=True):
                a = oracle.assess(sample, im)
                imgs.append(im)
                marks.append(f"{tag} {'ok' if a.satisfied and a.subject_kept else 'no'}")
            labels.append(instr.concept or instr.text.split(" ")[-2])
        rows.append(_row(imgs, f"{cat}: {', '.join(labels)}", marks))
    w = max(r.width for r in rows)
    sheet = Image.new("RGB", (w, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
