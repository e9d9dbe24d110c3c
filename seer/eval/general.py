"""General capabilities (paper Sec. 4.3, Tables 4–5 analogues): SEER must not erode what the base model could do.

* **Generation** (Table 4, GenEval-like): direct prompt → image on concrete captions, no reprompting — single object,
  colour, material, style, accessory, and two-attribute composition. A case is correct when the judge reads the
  subject *and* every attribute the caption states. In a token UMM the transformer body is shared by understanding
  and generation, so RL on θ can move generation even though the image-token rows (ϕ) are frozen: this is the test.
  The **tokenizer ceiling** per column is the judge's accuracy on codebook round-trips of renders of the same
  specifications: no model can beat what the tokenizer can show.
* **Understanding** (Table 5): captioning and question answering on renders, in the world's pretraining formats
  (``seer.world`` supplies the probes: context, image, expected answer).

The test cases are fixed by a seed and shared by every checkpoint compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seer.backends.base import Context, SamplingParams

GENERATION_COLUMNS = ("single object", "colour", "material", "style", "accessory", "two attributes")
# which attributes each column states (beside the subject); "two attributes" draws two distinct ones
_STATED = {
    "single object": (),
    "colour": ("colour",),
    "material": ("material",),
    "style": ("style",),
    "accessory": ("accessory",),
}
_COMPOSABLE = ("colour", "material", "style", "accessory", "background")


@dataclass(frozen=True)
class GenerationCase:
    column: str
    caption: str
    expected: dict[str, str]  # attribute -> value the image must show (subject included)
    seed: int


def generation_cases(n_per_column: int, seed: int = 0) -> list[GenerationCase]:
    """Concrete-caption test cases from the world's grammar, ``n_per_column`` per column, deterministic."""
    from seer.world import render as R
    from seer.world import semantics as S

    rng = np.random.default_rng(seed)
    non_default = {k: [v for v in R.ATTRIBUTES[k] if S.DEFAULTS.get(k) != v] for k in _COMPOSABLE}
    cases = []
    for column in GENERATION_COLUMNS:
        for _ in range(n_per_column):
            subject = str(rng.choice(R.SUBJECTS))
            if column == "two attributes":
                stated = tuple(str(a) for a in rng.choice(_COMPOSABLE, 2, replace=False))
            else:
                stated = _STATED[column]
            attrs = {"subject": subject, **{k: str(rng.choice(non_default[k])) for k in stated}}
            caption = S.caption(attrs, mention=stated)
            cases.append(GenerationCase(column, caption, attrs, int(rng.integers(0, 2**31 - 1))))
    return cases


def _score_reads(cases: Sequence[GenerationCase], reads: Sequence[dict[str, str]]) -> dict[str, float]:
    per: dict[str, list[bool]] = {c: [] for c in GENERATION_COLUMNS}
    for case, attrs in zip(cases, reads, strict=True):
        per[case.column].append(all(attrs.get(k) == v for k, v in case.expected.items()))
    out = {c: float(np.mean(v)) for c, v in per.items() if v}
    out["overall"] = float(np.mean([out[c] for c in GENERATION_COLUMNS if c in out]))
    return out


def generation_accuracy(
    backend: Any, read_attributes: Callable[[list[np.ndarray]], list[dict[str, str]]],
    cases: Sequence[GenerationCase], *, batch_size: int = 64, desc: str = "generation",
) -> dict[str, float]:
    """Per column: fraction of direct generations whose judged attributes match the caption; plus ``overall``."""
    images: list[np.ndarray] = []
    for s in tqdm(range(0, len(cases), batch_size), desc=desc, unit="batch", leave=False):
        chunk = cases[s : s + batch_size]
        images += backend.generate_images([c.caption for c in chunk], [c.seed for c in chunk])
    return _score_reads(cases, read_attributes(images))


def tokenizer_ceiling(
    codebook: Any, read_attributes: Callable[[list[np.ndarray]], list[dict[str, str]]],
    cases: Sequence[GenerationCase],
) -> dict[str, float]:
    """The judge's accuracy on codebook round-trips of renders that show exactly each case's attributes."""
    from seer.world import render as R

    images = []
    for c in cases:
        img, _ = R.render(R.Spec(**c.expected), c.seed)
        images.append(img)
    return _score_reads(cases, read_attributes(list(codebook.roundtrip(np.stack(images)))))


@dataclass(frozen=True)
class UnderstandingProbe:
    """One understanding question: a context with one image, and a checker of the completion."""

    column: str  # e.g. "captioning", "qa (concrete)", "qa (abstract)"
    text: str  # context text with one <image> placeholder
    image: np.ndarray
    expected: str
    check: Callable[[str, str], bool]  # (completion, expected) -> correct


def understanding_accuracy(
    backend: Any, probes: Sequence[UnderstandingProbe], *, max_new_tokens: int = 32, batch_size: int = 64,
    desc: str = "understanding",
) -> dict[str, float]:
    """Per column: fraction of greedy completions the probe's checker accepts; plus ``overall``."""
    sampling = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    per: dict[str, list[bool]] = {}
    for s in tqdm(range(0, len(probes), batch_size), desc=desc, unit="batch", leave=False):
        chunk = probes[s : s + batch_size]
        outs = backend.generate_text([Context(p.text, (p.image,)) for p in chunk], 1, sampling, seed=0)
        for p, comps in zip(chunk, outs, strict=True):
            per.setdefault(p.column, []).append(bool(p.check(comps[0].text, p.expected)))
    out = {c: float(np.mean(v)) for c, v in per.items()}
    if out:
        out["overall"] = float(np.mean(list(out.values())))
    return out


def _caption_check(completion: str, expected: str) -> bool:
    """A caption is right when it states every attribute of the image (unsaid ones read as the world's defaults)."""
    from seer.world import semantics as S

    return {**S.DEFAULTS, **S.parse_caption(completion)} == json.loads(expected)


def _answer_check(completion: str, expected: str) -> bool:
    return completion.strip() == expected


UNDERSTANDING_COLUMNS = ("captioning", "qa concrete", "qa abstract")


def world_understanding_probes(n_per_column: int, seed: int = 0) -> list[UnderstandingProbe]:
    """Understanding probes on fresh renders, in the world's pretraining formats (``seer.world.corpus``):
    captioning (``<image> describe the image .``), a concrete question about one attribute, and an abstract-concept
    yes/no question (half the images built to satisfy the concept, ID and OOD concepts alike)."""
    from seer.world import semantics as S
    from seer.world.corpus import QUESTIONS
    from seer.world.render import ATTRIBUTES, Spec, render

    rng = np.random.default_rng([seed, 7])
    probes = []
    for _ in range(n_per_column):
        img, spec = render(None, int(rng.integers(0, 2**31 - 1)))
        attrs = {k: v for k, v in spec.attributes().items() if k in ATTRIBUTES}
        probes.append(UnderstandingProbe("captioning", "<image> describe the image .", img,
                                         json.dumps(attrs, sort_keys=True), _caption_check))
    for _ in range(n_per_column):
        img, spec = render(None, int(rng.integers(0, 2**31 - 1)))
        k = list(QUESTIONS)[int(rng.integers(len(QUESTIONS)))]
        probes.append(UnderstandingProbe("qa concrete", f"<image> {QUESTIONS[k]}", img, getattr(spec, k),
                                         _answer_check))
    concepts = list(S.CONCEPTS.values())
    for i in range(n_per_column):
        c = concepts[int(rng.integers(len(concepts)))]
        want = Spec(**{k: vs[int(rng.integers(len(vs)))] for k, vs in c.target.items()}) if i % 2 else None
        img, spec = render(want, int(rng.integers(0, 2**31 - 1)))
        answer = "yes" if S.satisfies(spec.attributes(), c.target) else "no"
        probes.append(UnderstandingProbe("qa abstract", f"<image> does it look {c.name} ?", img, answer,
                                         _answer_check))
    return probes
