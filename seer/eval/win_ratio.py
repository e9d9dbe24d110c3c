"""Tables 2–3: SEER's win ratio against other reprompt sources, every image from the same generator.

Protocol (paper Sec. 4.2.2, App. A.2, with the world's oracle standing in for the annotators):

1. Each *system* turns a test sample (instruction a, prompt p0) into the prompt the generator sees: SEER's policy
   (greedy), the base model's own reasoning reprompts before RL ("Base (CoT)"), the RLVR-only model, naive
   concatenation a ⊕ p0, or an external reprompter (``seer.world.reprompters``). A policy completion without a
   parseable reprompt falls back to a ⊕ p0 — what a deployment would feed the generator — and is counted in the
   system's ``format_failures``.
2. One generator renders every system's prompt with the **same seed per case** (``case_seed``): SEER's own checkpoint
   by default, as the paper feeds every reprompter into SEER-Gen; the generation parameters ϕ are frozen, so this
   isolates the reprompt.
3. The judge compares SEER's image with the opponent's, presented in a seeded random order; score 1 / 0.5 / 0.
4. Per opponent: win ratio in the Table 1–3 breakdown, bootstrap 95% CI, sign test, average words per reprompt.

Every reprompt and image is written under ``<out>/systems/<name>/`` (so ``seer annotate`` can take the pairs and an
interrupted evaluation reuses what it has), and :func:`export_pairs` writes the annotation app's pairs JSONL.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seer.backends.base import Context, SamplingParams
from seer.data import Sample, load_image, naive_concat, save_image, write_jsonl
from seer.eval.common import case_seed, safe_name, word_count
from seer.eval.judge import check_judge_images
from seer.eval.stats import breakdown_table, summarize_wins
from seer.io import atomic_write_text
from seer.prompts import DEFAULT_TEMPLATES, Templates, parse_reprompt


@dataclass
class SystemOutput:
    """What one system produced for one test case."""

    id: str
    prompt_used: str  # what the generator was given
    reprompt: str | None  # the parsed reprompt (None: unparseable, a ⊕ p0 used instead)
    completion: str  # the raw completion (policies) or the reprompt (external systems)
    seed: int
    image: str  # path relative to the system folder


@dataclass
class System:
    """A reprompt source and its outputs on the test set."""

    name: str
    label: str
    outputs: dict[str, SystemOutput] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def format_failures(self) -> int:
        return sum(o.reprompt is None for o in self.outputs.values())

    def avg_words(self) -> float:
        words = [word_count(o.prompt_used) for o in self.outputs.values()]
        return float(np.mean(words)) if words else float("nan")

    def image(self, case_id: str) -> np.ndarray:
        assert self.folder is not None
        return load_image(self.folder / self.outputs[case_id].image)


# -- 1. reprompts ---------------------------------------------------------------------------------------------------
def policy_reprompts(
    backend: Any,
    samples: Sequence[Sample],
    *,
    templates: Templates = DEFAULT_TEMPLATES,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    desc: str = "reprompting",
) -> list[tuple[str, str | None]]:
    """(completion, parsed reprompt or None) per sample, greedy decoding."""
    sampling = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    out: list[tuple[str, str | None]] = []
    for s in tqdm(range(0, len(samples), batch_size), desc=desc, unit="batch", leave=False):
        chunk = samples[s : s + batch_size]
        contexts = [Context(templates.reprompt_text(x.instruction, x.prompt)) for x in chunk]
        for comps in backend.generate_text(contexts, 1, sampling, seed=0):
            text = comps[0].text
            out.append((text, parse_reprompt(text).answer))
    return out


def external_reprompts(reprompter: Any, samples: Sequence[Sample]) -> list[tuple[str, str | None]]:
    """An external reprompter's (reprompt, reprompt) per sample; an empty reprompt counts as unparseable."""
    out = []
    for s in samples:
        text = " ".join(str(reprompter.reprompt(s)).split())
        out.append((text, text or None))
    return out


def naive_reprompts(samples: Sequence[Sample]) -> list[tuple[str, str | None]]:
    return [(s.naive_prompt, s.naive_prompt) for s in samples]


# -- 2. images ------------------------------------------------------------------------------------------------------
def build_system(
    name: str,
    label: str,
    samples: Sequence[Sample],
    reprompts: Sequence[tuple[str, str | None]],
    generator: Any,
    folder: str | Path,
    *,
    seed: int = 0,
    batch_size: int = 64,
) -> System:
    """Render every case's prompt with ``generator`` (seed per case) and write images + ``outputs.jsonl``."""
    folder = Path(folder)
    system = System(name, label, folder=folder)
    prompts = [r if r is not None else naive_concat(s.instruction, s.prompt) for s, (_, r) in zip(samples, reprompts,
                                                                                                  strict=True)]
    seeds = [case_seed(s.id, seed) for s in samples]
    bar = tqdm(total=len(samples), desc=f"images: {label}", unit="img", leave=False)
    for start in range(0, len(samples), batch_size):
        sl = slice(start, start + batch_size)
        images = generator.generate_images(prompts[sl], seeds[sl])
        for s, (completion, reprompt), p, sd, img in zip(samples[sl], reprompts[sl], prompts[sl], seeds[sl], images,
                                                         strict=True):
            rel = f"images/{safe_name(s.id)}.png"
            save_image(folder / rel, img)
            system.outputs[s.id] = SystemOutput(s.id, p, reprompt, completion, sd, rel)
        bar.update(len(images))
    bar.close()
    write_jsonl(folder / "outputs.jsonl", [asdict(o) for o in system.outputs.values()])
    atomic_write_text(folder / "system.json", json.dumps({"name": name, "label": label}) + "\n")
    return system


def load_system(folder: str | Path) -> System:
    """A system written by :func:`build_system`."""
    folder = Path(folder)
    meta = json.loads((folder / "system.json").read_text())
    system = System(meta["name"], meta["label"], folder=folder)
    for line in (folder / "outputs.jsonl").read_text().splitlines():
        if line.strip():
            o = SystemOutput(**{"reprompt": None, **json.loads(line)})
            system.outputs[o.id] = o
    return system


# -- 3–4. judging and the table row ---------------------------------------------------------------------------------
def judge_pairs(
    judge: Any, samples: Sequence[Sample], seer: System, opponent: System, *, seed: int = 0
) -> list[float]:
    """SEER's score per case (1 win, 0.5 tie, 0 loss), the two images shown to the judge in a seeded random order."""
    scores = []
    for s in tqdm(samples, desc=f"judging vs {opponent.label}", unit="pair", leave=False):
        a, b = seer.image(s.id), opponent.image(s.id)
        check_judge_images(judge, (a, b), f"case {s.id!r} ({seer.name} vs {opponent.name})")
        flip = bool(np.random.default_rng(case_seed(f"{s.id}/{opponent.name}", seed)).integers(2))
        score = 1.0 - float(judge.compare(s, b, a)) if flip else float(judge.compare(s, a, b))
        scores.append(score)
    return scores


def win_row(
    samples: Sequence[Sample], scores: Sequence[float], opponent: System, *, n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """One row of Tables 2–3."""
    items = list(zip(samples, scores, strict=True))
    cells = breakdown_table(
        items,
        lambda g: summarize_wins([sc for _, sc in g], n_boot=n_boot, seed=seed).to_dict(),
        distribution=lambda x: x[0].distribution,
        category=lambda x: x[0].category,
    )
    return {
        "key": opponent.name,
        "label": f"vs. {opponent.label}",
        "cells": cells,
        "avg_words": opponent.avg_words(),
        "format_failures": opponent.format_failures,
    }


def judge_scores_table(
    judge: Any,
    samples: Sequence[Sample],
    seer: System,
    opponents: Sequence[System],
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Rows for every opponent, and the raw per-case scores (for the report and pairs export)."""
    rows, raw = [], {}
    for opp in opponents:
        scores = judge_pairs(judge, samples, seer, opp, seed=seed)
        raw[opp.name] = scores
        rows.append(win_row(samples, scores, opp, n_boot=n_boot, seed=seed))
    return rows, raw


def judged_rates(judge: Any, samples: Sequence[Sample], system: System) -> dict[str, Any]:
    """What the judge reads in one system's images, each on its own (not a pair): the share that satisfy the
    instruction, that keep the prompt (the judge's ``subject_kept``: its subject and stated attributes), and both (the
    paper's success), by the Table 1–3 breakdown's Total / Simple / Hard."""
    rows = []
    for s in samples:
        image = system.image(s.id)
        check_judge_images(judge, (image,), f"case {s.id!r} ({system.name})")
        a = judge.assess(s, image)
        rows.append((s, bool(a.satisfied), bool(a.subject_kept)))

    def rates(group: list[tuple[Sample, bool, bool]]) -> dict[str, Any]:
        return {"n": len(group), "satisfied": float(np.mean([r[1] for r in group])),
                "subject_kept": float(np.mean([r[2] for r in group])),
                "success": float(np.mean([r[1] and r[2] for r in group]))}

    out = {"label": system.label, "total": rates(rows) if rows else None}
    for difficulty in ("simple", "hard"):
        group = [r for r in rows if r[0].difficulty == difficulty]
        out[difficulty] = rates(group) if group else None
    return out


def right_on_own(judge: Any, samples: Sequence[Sample], systems: dict[str, System], *, reference: str = "base_cot",
                 n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The share of each system's images that are right on their own (the judge: the instruction met and the prompt
    kept), Total / Simple / Hard, each with a bootstrap CI over cases, and a paired test against ``reference`` on the
    same cases: the exact two-sided sign test (McNemar's exact test) on the cases where one is right and the other
    not. What Tables 2–3 lead with: a win ratio against an opponent that is itself wrong nearly always says little."""
    from seer.eval.stats import bootstrap_ci, sign_test

    right: dict[str, dict[str, bool]] = {}
    for name, system in systems.items():
        images = [system.image(s.id) for s in samples]
        check_judge_images(judge, images, f"system {name!r}")
        right[name] = {s.id: bool(a.satisfied and a.subject_kept)
                       for s, a in zip(samples, (judge.assess(s, im) for s, im in zip(samples, images, strict=True)),
                                       strict=True)}
    groups = {"total": list(samples), **{d: [s for s in samples if s.difficulty == d] for d in ("simple", "hard")}}
    rows = []
    for name, system in systems.items():
        cells: dict[str, Any] = {}
        for col, group in groups.items():
            if not group:
                cells[col] = None
                continue
            x = np.array([right[name][s.id] for s in group], dtype=np.float64)
            lo, hi = bootstrap_ci(x, n_boot=n_boot, seed=seed)
            cell = {"n": int(x.size), "rate": float(x.mean()), "ci_low": lo, "ci_high": hi}
            if reference in right and name != reference:
                y = np.array([right[reference][s.id] for s in group], dtype=np.float64)
                cell["reference_rate"] = float(y.mean())
                cell["ratio_to_reference"] = float(x.mean() / y.mean()) if y.mean() > 0 else None
                cell["only_this_right"] = int(((x == 1) & (y == 0)).sum())
                cell["only_reference_right"] = int(((x == 0) & (y == 1)).sum())
                cell["p_value"] = sign_test(0.5 + (x - y) / 2)  # 1 = only this right, 0 = only the reference
            cells[col] = cell
        rows.append({"key": name, "label": system.label, "cells": cells})
    return {"reference": reference, "rows": rows}


def added_word_shares(samples: Sequence[Sample], system: System) -> dict[str, float]:
    """Every word a system puts into the generator's prompt that is neither in the sample's prompt p0 nor in its
    instruction, with the share of test cases whose prompt has it, most frequent first. One word in nearly every
    prompt, whatever the instruction, is what a policy hacking its reward looks like (an evaluator that prefers any
    change rewards any change)."""
    counts: dict[str, int] = {}
    for s in samples:
        given = {w.lower() for w in re.findall(r"\w+", f"{s.prompt} {s.instruction}")}
        used = {w.lower() for w in re.findall(r"\w+", system.outputs[s.id].prompt_used)}
        for w in used - given:
            counts[w] = counts.get(w, 0) + 1
    return {w: c / len(samples) for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def evaluator_agreement(
    evaluator_compare: Callable[[Sequence[Sample], Sequence[np.ndarray], Sequence[np.ndarray]], list[float]],
    samples: Sequence[Sample],
    seer: System,
    naive: System,
    judge_scores: Sequence[float],
) -> dict[str, float]:
    """How often the RLMT reward's evaluator agrees with the judge on SEER-vs-naive pairs (the pairs RLMT's reward
    is computed on): the evaluator-error diagnostic. Cases the judge calls a tie are left out."""
    ev = evaluator_compare(samples, [seer.image(s.id) for s in samples], [naive.image(s.id) for s in samples])
    decided = [(e, j) for e, j in zip(ev, judge_scores, strict=True) if j != 0.5]
    agree = [(e > 0.5) == (j > 0.5) for e, j in decided if e != 0.5]
    return {
        "evaluator_vs_judge_agreement": float(np.mean(agree)) if agree else float("nan"),
        "evaluator_undecided_rate": (sum(e == 0.5 for e, _ in decided) / len(decided)) if decided else float("nan"),
        "evaluator_prefers_seer_rate": float(np.mean(ev)) if ev else float("nan"),
        "judge_decided_pairs": len(decided),
    }


# -- pairs for the annotation app -----------------------------------------------------------------------------------
def export_pairs(path: str | Path, samples: Sequence[Sample], seer: System, opponents: Sequence[System]) -> Path:
    """The pairs JSONL of ``seer annotate create``: one line per (case, opponent), image paths relative to the file."""
    path = Path(path)
    base = path.parent.resolve()
    records = []
    for opp in opponents:
        for s in samples:
            assert seer.folder is not None and opp.folder is not None
            records.append({
                "case_id": s.id,
                "instruction": s.instruction,
                "prompt": s.prompt,
                "category": s.category,
                "distribution": s.distribution,
                "system": seer.name,
                "opponent": opp.name,
                "image_system": os.path.relpath((seer.folder / seer.outputs[s.id].image).resolve(), base),
                "image_opponent": os.path.relpath((opp.folder / opp.outputs[s.id].image).resolve(), base),
            })
    write_jsonl(path, records)
    return path

