"""The shortcut-proof Table 1: evaluator accuracy on a test set that "prefer the edited image" cannot pass.

The paper's Table 1 pairs (A.1.4) always set an edited image against the plain image of p0, so an evaluator that only
sees which image was changed scores like one that reads the instruction (``seer.eval.shortcut`` measured it). This set,
built by ``seer world build-data`` beside the paper-style quadruplets from the test instructions only and labelled by
the judge, holds four kinds of pairs in equal counts (every test case that enters gives one pair of each kind):

* ``right_vs_plain``: the right edit vs the plain p0 image (the paper's pair; the edit wins);
* ``right_vs_other``: the right edit vs an edit made for another test instruction, same subject (both edited);
* ``right_vs_wrong``: the right edit vs an edit with a wrong value of a targeted attribute (both edited);
* ``plain_vs_lost``: the plain p0 image vs an edit that meets the instruction but loses the subject (the plain
  image wins: the judge ranks keeping p0 first, as the paper's "while preserving p0").

Each pair is judged in both orders, so on it "always prefer the edit" scores exactly 0.5 (1 + ½ + ½ + 0 over the kinds,
answering A where both images are edited) and so does "always A". Records are :class:`seer.data.Quadruplet`
(``image_chosen`` = the judge's winner) with ids ``sp-<kind>-<test case id>``. seer's; the paper has no such set.

Two reference rows come with each evaluator, from its own greedy traces (``image A shows … image B shows …``): the
true rule (the judge's: p0 kept first, then the instruction met) applied to the trace's reads, and "prefer the edit"
applied to the same reads (the image whose read differs more from the plain p0). They show what the trace knew and
what the verdict made of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seer.data import DataError, Quadruplet, load_quadruplets
from seer.eval.stats import bootstrap_ci

PAIRS_FILE = "pairs_shortcut_test.jsonl"
KINDS = ("right_vs_plain", "right_vs_other", "right_vs_wrong", "plain_vs_lost")
KIND_LABELS = {"right_vs_plain": "right vs plain (paper's pair)", "right_vs_other": "right vs other instruction's edit",
               "right_vs_wrong": "right vs wrong value", "plain_vs_lost": "plain vs edit that loses the subject"}
# whether (image_chosen, image_rejected) is an edit of p0: what "prefer the edit" sees
EDITED = {"right_vs_plain": (True, False), "right_vs_other": (True, True), "right_vs_wrong": (True, True),
          "plain_vs_lost": (False, True)}
SPLITS = ("id_simple", "id_hard", "ood_simple", "ood_hard")
_ID = re.compile(rf"^sp-({'|'.join(KINDS)})-(.+)$")


def make_command(data_dir: str | Path, base: str | Path | None = None, seed: int = 0) -> str:
    """The command that adds this set to an existing build-data folder (nothing else in it is touched); ``base`` and
    ``seed`` are the ones the folder was built with."""
    import shlex

    extra = (f" --base {shlex.quote(str(base))}" if base else "") + (f" --seed {seed}" if seed else "")
    return f"seer world build-data --shortcut-set-only --out {shlex.quote(str(data_dir))}{extra}"


def missing_message(path: Path, base: str | Path | None = None, seed: int = 0) -> str:
    return (f"{path}: missing — the shortcut-proof Table 1 set (four pair kinds from the test instructions) that "
            f"build-data writes since issue 21; this data folder is from an older build-data. Make it with "
            f"`{make_command(path.parent, base, seed)}` (adds only this file and its images), then rerun")


def pair_id(kind: str, case: str) -> str:
    return f"sp-{kind}-{case}"


def kind_of(q: Quadruplet) -> str:
    m = _ID.match(q.id)
    if m is None:
        raise ValueError(f"{q.id!r} is not a shortcut-proof pair id (sp-<kind>-<case>)")
    return m.group(1)


def case_of(q: Quadruplet) -> str:
    m = _ID.match(q.id)
    if m is None:
        raise ValueError(f"{q.id!r} is not a shortcut-proof pair id (sp-<kind>-<case>)")
    return m.group(2)


def split_of(q: Quadruplet) -> str:
    return f"{q.distribution}_{q.difficulty}"


def load_pairs(path: str | Path, *, check_images: bool = True, base: str | Path | None = None,
               seed: int = 0) -> list[Quadruplet]:
    """Load the set; a missing file names the command that makes it (with ``base`` and ``seed``); a bad id, or kinds
    in unequal counts (the set would no longer score "prefer the edit" at 0.5), raise ``FILE:LINE: field …``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(missing_message(path, base, seed))
    pairs = load_quadruplets(path, check_images=check_images)
    for line, q in enumerate(pairs, 1):
        if _ID.match(q.id) is None:
            raise DataError(f"{path}:{line}: field 'id' is {q.id!r}; expected sp-<kind>-<case> with kind one of "
                            f"{', '.join(KINDS)}")
    check_balanced(pairs, str(path))
    return pairs


def check_balanced(pairs: Sequence[Quadruplet], where: str) -> None:
    """Every test case gives one pair of each kind, so each kind has the same count in every split."""
    by_case: dict[str, set[str]] = {}
    for q in pairs:
        by_case.setdefault(case_of(q), set()).add(kind_of(q))
    for case, kinds in by_case.items():
        if kinds != set(KINDS):
            raise DataError(f"{where}: test case {case!r} has pair kinds {sorted(kinds)}; every case needs one "
                            f"pair of each kind ({', '.join(KINDS)}) so the kinds stay in equal counts")


def subset_cases(pairs: Sequence[Quadruplet], n: int) -> list[Quadruplet]:
    """All four pairs of ``n`` test cases, balanced over (distribution, category) cells (``n = 0``: all)."""
    from seer.eval.common import balanced_subset

    firsts = [q for q in pairs if kind_of(q) == KINDS[0]]
    keep = {case_of(q) for q in balanced_subset(firsts, n)}
    return [q for q in pairs if case_of(q) in keep]


# -- scoring --------------------------------------------------------------------------------------------------------
# A "pick" is the credit of one pair's two judgements: (chosen shown as A, chosen shown as B), each 1 (named the
# judge's winner), 0 (the other) or 0.5 (a reference rule that cannot tell the two apart).
Picks = tuple[float, float]


def _summary(credits: Sequence[float], n_boot: int, seed: int) -> dict[str, Any] | None:
    """Mean credit with a percentile bootstrap CI over pairs (a pair's two orders are not independent)."""
    if not credits:
        return None
    arr = np.asarray(credits, dtype=np.float64)
    lo, hi = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
    return {"accuracy": float(arr.mean()), "ci_low": lo, "ci_high": hi, "n_pairs": int(arr.size)}


def score(pairs: Sequence[Quadruplet], picks: Sequence[Picks], *, n_boot: int = 10_000,
          seed: int = 0) -> dict[str, Any]:
    """``overall``, ``by_kind`` and ``by_split`` (ID/OOD × Simple/Hard) accuracy with bootstrap CIs."""
    if len(pairs) != len(picks):
        raise ValueError(f"{len(pairs)} pairs but {len(picks)} picks")
    credit = [(a + b) / 2 for a, b in picks]
    kinds = [kind_of(q) for q in pairs]
    splits = [split_of(q) for q in pairs]
    return {
        "overall": _summary(credit, n_boot, seed),
        "by_kind": {k: _summary([c for c, x in zip(credit, kinds, strict=True) if x == k], n_boot, seed)
                    for k in KINDS},
        "by_split": {s: _summary([c for c, x in zip(credit, splits, strict=True) if x == s], n_boot, seed)
                     for s in SPLITS},
    }


def verdict_picks(judgments: Sequence[Any]) -> list[Picks]:
    """An evaluator's verdicts (``QuadJudgment``s): right or not in each order; an unparseable verdict is wrong."""
    return [(float(a), float(b)) for a, b in (j.correct for j in judgments)]


def prefer_edit_picks(pairs: Sequence[Quadruplet]) -> list[Picks]:
    """"Always the edit", answering A when both images (or neither) are edited: the shortcut's ceiling."""
    out = []
    for q in pairs:
        chosen_edited, rejected_edited = EDITED[kind_of(q)]
        if chosen_edited != rejected_edited:
            out.append((float(chosen_edited), float(chosen_edited)))
        else:
            out.append((1.0, 0.0))  # answers A: right when the winner is shown first, wrong when second
    return out


def always_a_picks(pairs: Sequence[Quadruplet]) -> list[Picks]:
    return [(1.0, 0.0) for _ in pairs]


# -- the trace's reads ----------------------------------------------------------------------------------------------
_IMAGE_SHOWS = re.compile(r"image ([AB]) shows ([^.<]*)")


def world_trace_reads(text: str) -> dict[str, dict[str, str]]:
    """The attributes a world evaluator's trace states for each image (``image A shows <caption> .``), with the
    world's defaults for the ones a caption leaves out; an image the trace does not read is absent."""
    from seer.world import semantics as S

    return {x: {**S.DEFAULTS, **S.parse_caption(cap.strip())} for x, cap in _IMAGE_SHOWS.findall(text)}


def world_rule(instruction: str, prompt: str, read: dict[str, str]) -> tuple[bool, bool]:
    """The true rule on a read, ranked as the judge ranks (``OracleJudge.preference``): p0 kept (its subject and every
    attribute it states) first, then the instruction met; the higher key wins. (The judge grades compliance and
    breaks ties on quality; a trace states neither, so those pairs tie here.)"""
    from seer.world import semantics as S

    if "subject" not in read:
        return (False, False)
    kept = all(read.get(k) == v for k, v in S.prompt_attributes(prompt).items())
    return (kept, bool(S.satisfies(read, S.instruction(instruction).rule)))


def world_edit_size(prompt: str, read: dict[str, str]) -> int:
    """How far a read is from the plain p0 image: the attributes that differ from p0's stated values and defaults."""
    from seer.world import semantics as S

    plain = {**S.DEFAULTS, **S.prompt_attributes(prompt)}
    return sum(read.get(k) != v for k, v in plain.items())


def trace_reference(pairs: Sequence[Quadruplet], judgments: Sequence[Any], *,
                    reads_of: Callable[[str], dict[str, dict[str, str]]] = world_trace_reads,
                    rule: Callable[[str, str, dict[str, str]], Any] = world_rule,
                    edit_size: Callable[[str, dict[str, str]], int] = world_edit_size,
                    n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The two reference rows from an evaluator's own traces: the true rule and "prefer the edit" applied to the
    trace's reads of the two images (a tie, or an image the trace did not read, gives 0.5)."""
    by_rule: list[Picks] = []
    by_edit: list[Picks] = []
    both = []
    for q, j in zip(pairs, judgments, strict=True):
        r_pair, e_pair = [], []
        for text, winner in ((j.completion_first, "A"), (j.completion_second, "B")):
            try:
                reads = reads_of(text)
                passes = {x: rule(q.instruction, q.prompt, r) for x, r in reads.items()}
                size = {x: edit_size(q.prompt, r) for x, r in reads.items()}
            except ValueError:  # a prompt or instruction outside the world's grammar: nothing to score the reads by
                reads, passes, size = {}, {}, {}
            both.append(len(reads) == 2)
            loser = "B" if winner == "A" else "A"
            if len(reads) < 2 or passes[winner] == passes[loser]:
                r_pair.append(0.5)
            else:
                r_pair.append(float(passes[winner] > passes[loser]))
            if len(reads) < 2 or size[winner] == size[loser]:
                e_pair.append(0.5)
            else:
                e_pair.append(float(size[winner] > size[loser]))
        by_rule.append((r_pair[0], r_pair[1]))
        by_edit.append((e_pair[0], e_pair[1]))
    return {"true_rule_on_reads": score(pairs, by_rule, n_boot=n_boot, seed=seed),
            "prefer_edit_on_reads": score(pairs, by_edit, n_boot=n_boot, seed=seed),
            "traces_reading_both_images": float(np.mean(both)) if both else None}


def evaluator_entry(key: str, label: str, pairs: Sequence[Quadruplet], judgments: Sequence[Any], *,
                    n_boot: int = 10_000, seed: int = 0, paper_style: Any = None) -> dict[str, Any]:
    """One evaluator's entry of ``table1_shortcut_proof``: its verdicts scored, the reference rows from its
    traces, the position consistency, and the paper-style accuracy beside it (labelled as such)."""
    from seer.eval.stats import position_consistency_rate

    verdicts = [v for j in judgments for v in (j.verdict_chosen_first, j.verdict_chosen_second)]
    return {
        "key": key, "label": label,
        **score(pairs, verdict_picks(judgments), n_boot=n_boot, seed=seed),
        "reference": trace_reference(pairs, judgments, n_boot=n_boot, seed=seed),
        "position_consistency": position_consistency_rate(
            (j.verdict_chosen_first, j.verdict_chosen_second) for j in judgments) if judgments else None,
        "answers_a": (sum(v == "A" for v in verdicts) / len(verdicts)) if verdicts else None,
        "unparseable": (sum(v is None for v in verdicts) / len(verdicts)) if verdicts else None,
        "paper_style_table1": paper_style,
    }


def evaluate(backend: Any, pairs: Sequence[Quadruplet], root: str | Path, *, key: str, label: str,
             max_new_tokens: int = 64, n_boot: int = 10_000, seed: int = 0, paper_style: Any = None,
             judgments_path: str | Path | None = None) -> dict[str, Any]:
    """Judge every pair in both orders with ``backend`` (greedy, Table 1's judging) and build its entry."""
    from dataclasses import asdict

    from seer.eval.evaluator import judge_quadruplets

    judgments = judge_quadruplets(backend, pairs, root, max_new_tokens=max_new_tokens,
                                  desc=f"Table 1 (shortcut-proof): {label}")
    if judgments_path is not None:
        from seer.data import write_jsonl

        write_jsonl(judgments_path, [asdict(j) for j in judgments])
    return evaluator_entry(key, label, pairs, judgments, n_boot=n_boot, seed=seed, paper_style=paper_style)


def shortcut_rows(pairs: Sequence[Quadruplet], *, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """What the two blind strategies score on this set (0.5 each, by construction; reported so a reader sees it)."""
    return {"always_the_edit": score(pairs, prefer_edit_picks(pairs), n_boot=n_boot, seed=seed)["overall"],
            "always_a": score(pairs, always_a_picks(pairs), n_boot=n_boot, seed=seed)["overall"]}
