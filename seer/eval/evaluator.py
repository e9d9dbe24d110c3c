"""Table 1: evaluator accuracy on held-out quadruplets (paper Sec. 4.2.1).

Three evaluators are compared: the zero-shot base model, the phase-1-only checkpoint (basic alignment,
``<rlvr run>/phase1_model``) and the full SEER-Eval (``<rlvr run>/model``). Each test quadruplet is judged in both
image orders (chosen image as A, then as B) with greedy decoding and the RLVR evaluator prompt, so a model that
always answers "A" scores exactly 0.5; accuracy is over all judgments, an unparseable verdict is wrong. The
position-consistency rate is the fraction of quadruplets whose two verdicts pick the same image.

The paper's Table 1 is on the instruction quadruplets (its test set has no basic-alignment pairs), so only phase-2
test quadruplets enter the table; phase-1 test quadruplets, when present, are scored separately as a diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from seer.backends.base import Context, SamplingParams
from seer.data import DataError, Quadruplet, load_image, load_quadruplets
from seer.eval.common import backend_image_size, balanced_subset
from seer.eval.stats import COLUMNS, breakdown, position_consistency_rate, summarize_accuracy
from seer.prompts import DEFAULT_TEMPLATES, Templates, parse_verdict


@dataclass(frozen=True)
class QuadJudgment:
    """An evaluator's two verdicts on one quadruplet ('A'/'B', None = unparseable)."""

    id: str
    phase: int
    category: str
    distribution: str
    verdict_chosen_first: str | None  # chosen image shown as A: correct answer "A"
    verdict_chosen_second: str | None  # chosen image shown as B: correct answer "B"
    completion_first: str = ""
    completion_second: str = ""

    @property
    def correct(self) -> tuple[bool, bool]:
        return self.verdict_chosen_first == "A", self.verdict_chosen_second == "B"


def load_test_quadruplets(path: str | Path, image_size: tuple[int, int] | None = None) -> list[Quadruplet]:
    """Load test quadruplets (unknown categories and missing images raise naming file:line:field) and check every
    image can be read at the backend's size."""
    path = Path(path)
    quads = load_quadruplets(path)
    if image_size is not None:
        for q in quads[:1]:  # the data builder writes one size; check the first pair, the rest fail on load
            load_image(path.parent / q.image_chosen, image_size, where=f"{path}: quadruplet {q.id!r} image_chosen")
    return quads


def judge_quadruplets(
    backend: Any,
    quads: Sequence[Quadruplet],
    root: str | Path,
    *,
    templates: Templates = DEFAULT_TEMPLATES,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    desc: str = "judging",
) -> list[QuadJudgment]:
    """Ask ``backend`` (greedy) which image better follows each quadruplet's instruction, in both orders."""
    root = Path(root)
    size = backend_image_size(backend)
    sampling = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    out: list[QuadJudgment] = []
    bar = tqdm(total=len(quads), desc=desc, unit="quad", leave=False)
    for s in range(0, len(quads), batch_size):
        chunk = quads[s : s + batch_size]
        contexts = []
        for q in chunk:
            where = f"quadruplet {q.id!r}"
            chosen = load_image(root / q.image_chosen, size, where=f"{where} image_chosen")
            rejected = load_image(root / q.image_rejected, size, where=f"{where} image_rejected")
            text = templates.evaluator_text(q.instruction, q.prompt)
            contexts += [Context(text, (chosen, rejected)), Context(text, (rejected, chosen))]
        completions = backend.generate_text(contexts, 1, sampling, seed=0)
        for i, q in enumerate(chunk):
            first, second = completions[2 * i][0].text, completions[2 * i + 1][0].text
            out.append(QuadJudgment(q.id, q.phase, q.category, q.distribution, parse_verdict(first).answer,
                                    parse_verdict(second).answer, first, second))
        bar.update(len(chunk))
    bar.close()
    return out


def accuracy_row(judgments: Sequence[QuadJudgment], *, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """One row of Table 1: accuracy (with CI) and position consistency per column, and the unparseable rate."""
    cols = breakdown(judgments)
    acc, pc = {}, {}
    for c in COLUMNS:
        group = cols[c]
        if not group:
            acc[c], pc[c] = None, None
            continue
        acc[c] = summarize_accuracy([ok for j in group for ok in j.correct], n_boot=n_boot, seed=seed).to_dict()
        pc[c] = position_consistency_rate((j.verdict_chosen_first, j.verdict_chosen_second) for j in group)
    verdicts = [v for j in judgments for v in (j.verdict_chosen_first, j.verdict_chosen_second)]
    return {
        "accuracy": acc,
        "position_consistency": pc,
        "unparseable": (sum(v is None for v in verdicts) / len(verdicts)) if verdicts else None,
        "answers_a": (sum(v == "A" for v in verdicts) / len(verdicts)) if verdicts else None,  # position bias
    }


def evaluate_evaluator(
    backend: Any,
    quadruplets_path: str | Path,
    *,
    key: str,
    label: str,
    templates: Templates = DEFAULT_TEMPLATES,
    max_new_tokens: int = 64,
    limit: int | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
    judgments_path: str | Path | None = None,
) -> dict[str, Any]:
    """Table 1 row for one evaluator on a test quadruplet file; writes every judgment to ``judgments_path``."""
    quadruplets_path = Path(quadruplets_path)
    quads = load_test_quadruplets(quadruplets_path, backend_image_size(backend))
    instruction_quads = [q for q in quads if q.phase == 2]
    if not instruction_quads:
        raise DataError(f"{quadruplets_path}: no phase-2 (instruction) quadruplets; Table 1 needs them")
    alignment_quads = [q for q in quads if q.phase == 1]
    if limit:
        instruction_quads = balanced_subset(instruction_quads, limit)
        alignment_quads = balanced_subset(alignment_quads, limit)
    judgments = judge_quadruplets(backend, instruction_quads + alignment_quads, quadruplets_path.parent,
                                  templates=templates, max_new_tokens=max_new_tokens, desc=f"Table 1: {label}")
    if judgments_path is not None:
        from seer.data import write_jsonl

        write_jsonl(judgments_path, [asdict(j) for j in judgments])
    main = [j for j in judgments if j.phase == 2]
    row = {"key": key, "label": label, **accuracy_row(main, n_boot=n_boot, seed=seed)}
    side = [j for j in judgments if j.phase == 1]
    if side:
        row["phase1_accuracy"] = sum(ok for j in side for ok in j.correct) / (2 * len(side))
    return row
