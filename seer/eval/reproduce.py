"""``seer reproduce``: the paper's pipeline and tables from the shipped base world model, in one resumable command.

Steps, in order, each leaving ``<out>/steps/<name>.json`` (its result and wall time) when it finishes, so a rerun with
``--resume`` skips what is done and an interrupted training stage continues from its own checkpoint:

    data        seer world build-data                → <out>/data/
    rlvr        RLVR phase 1 → phase 2 (evaluator)   → <out>/runs/seer/rlvr/{phase1_model,model}
    rlmt        RLMT (reprompting policy)            → <out>/runs/seer/rlmt/model
    rlmt_from_base  the ablation "SEER, policy from base": RLMT with the policy initialised from the base, the same
                RLVR evaluator as the judge      → <out>/runs/seer_policy_base/rlmt/model
    table1      evaluator accuracy: zero-shot, phase-1 only, SEER-Eval (the paper-style pairs)
    table1_shortcut_proof  the same evaluators on the shortcut-proof set (four pair kinds; the headline)
    shortcut    seer's probe: does each evaluator read the instruction or prefer the edited image?
    systems     every reprompt source's reprompts and images (one generator, same seeds)
    win_ratio   Tables 2–3 with the oracle judge; pairs.jsonl for `seer annotate`
    failure     failure modes of the base policy and of SEER (App. A.4.3)
    general     generation and understanding accuracy of base / RLVR / RLMT
    report      figures, report.json, REPORT.md

``--quick`` runs a reduced protocol (fewer epochs, fewer test cases and bootstrap draws) for a first look; the
default is the full protocol (the paper's 10 epochs per stage). ``--generator`` picks the generator G that draws
every image, in RLMT's rollouts and for every system compared: ``base`` (default) is the base world model's, fixed
as the paper's G; ``seer`` is SEER's own checkpoint, whose shared backbone RL has trained (only the image-token rows
ϕ are frozen). Nothing here tunes anything on the test set.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seer.eval.common import balanced_subset
from seer.io import atomic_write_json, atomic_write_text

RUN_NAME = "seer"
ABLATION_RUN = "seer_policy_base"  # RLMT with the policy initialised from the base, judged by the same RLVR evaluator
GENERATORS = ("base", "seer")


@dataclass(frozen=True)
class Protocol:
    """How much of everything a reproduction runs."""

    epochs_phase1: int = 10  # paper: 10 epochs per stage
    epochs_phase2: int = 10
    epochs_rlmt: int = 10
    train_limit: int = 0  # train on the first N quadruplets per phase and N samples (0 = all; balanced by cell)
    test_limit: int = 0  # 0 = the whole test set
    verdict_max_new_tokens: int = 64  # greedy evaluator verdicts at evaluation
    reprompt_max_new_tokens: int = 96  # greedy reprompts at evaluation
    n_boot: int = 10_000
    general_per_column: int = 50
    understanding_per_column: int = 50
    grid_cases_per_category: int = 3
    stage_overrides: dict[str, Any] = field(default_factory=dict)  # extra config keys for both stages
    # which generator G draws every image, in RLMT's rollouts and for every system at evaluation: "base" = the base
    # world model's, never trained (the paper's "Generator G … (Fixed)", Sec. 3.1); "seer" = SEER's own checkpoint,
    # whose shared backbone RL trained around the frozen image-token rows ϕ (RLMT then draws with the live policy)
    generator: str = "base"
    # seer's, not the paper's (A.1.4 uses only the image of p0 as the phase-2 negative): one more phase-2 training
    # pair per sample, the positive against a wrongly edited image (``seer world build-data --wrong-edit-negatives``)
    wrong_edit_negatives: bool = False
    # seer's too: one more phase-2 training pair per sample that the plain image of p0 wins, against a right edit of
    # another subject (``seer world build-data --plain-wins-pairs``)
    plain_wins_pairs: bool = False
    # seer's (issue 21): RLMT judges each pair in both orders, the reward the mean of the two Eq. 9 rewards (the
    # world recipe's default); False = the paper's one seeded order (``--rlmt-single-order``)
    rlmt_both_orders: bool = True

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"protocol generator {self.generator!r}: expected one of {', '.join(GENERATORS)}")


FULL = Protocol()
QUICK = Protocol(epochs_phase1=1, epochs_phase2=1, epochs_rlmt=1, train_limit=48, test_limit=24, n_boot=2000,
                 general_per_column=12, understanding_per_column=12, grid_cases_per_category=2)


@dataclass
class Reproduction:
    """One reproduction run: where it writes and with what protocol."""

    out: Path
    protocol: Protocol
    quick: bool = False
    seed: int = 0
    base: Path | None = None  # the base world model; default: the shipped one
    command: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)

    # -- paths --------------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    @property
    def rlvr_dir(self) -> Path:
        return self.runs_dir / RUN_NAME / "rlvr"

    @property
    def rlmt_dir(self) -> Path:
        return self.runs_dir / RUN_NAME / "rlmt"

    @property
    def rlmt_base_dir(self) -> Path:
        return self.runs_dir / ABLATION_RUN / "rlmt"

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    def marker(self, name: str) -> Path:
        return self.out / "steps" / f"{name}.json"

    def base_dir(self) -> Path:
        """The world base (UMM checkpoint in ``umm/``, oracle weights, world.json)."""
        from seer.world import base_dir

        return Path(base_dir(self.base))

    def base_model(self) -> Path:
        """The base UMM's checkpoint directory inside the world base."""
        from seer.world.pretrain import UMM_DIR

        d = self.base_dir()
        return d / UMM_DIR if (d / UMM_DIR).is_dir() else d


# -- the step runner ------------------------------------------------------------------------------------------------
def run_step(rep: Reproduction, name: str, fn: Callable[[Reproduction], Any], log: Callable[[str], None]) -> Any:
    """Run ``fn`` unless its marker exists; record the wall time either way. Returns the step's result."""
    marker = rep.marker(name)
    if marker.is_file():
        rec = json.loads(marker.read_text())
        rep.steps.append({"name": name, "wall_time_s": rec["wall_time_s"], "status": "done (earlier run)"})
        log(f"[reproduce] {name}: already done ({rec['wall_time_s']:.1f} s), skipped")
        return rec["result"]
    log(f"[reproduce] {name} ...")
    t0 = time.perf_counter()
    result = fn(rep)
    wall = time.perf_counter() - t0
    atomic_write_json(marker, {"name": name, "wall_time_s": wall, "finished": _now(), "result": result})
    rep.steps.append({"name": name, "wall_time_s": wall, "status": "done"})
    log(f"[reproduce] {name}: done in {wall:.1f} s")
    return result


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- steps ----------------------------------------------------------------------------------------------------------
def step_data(rep: Reproduction) -> dict[str, Any]:
    from seer.world.build_data import BuildConfig, build_data

    summary = build_data(BuildConfig(out=str(rep.data_dir), base=str(rep.base) if rep.base else "", seed=rep.seed,
                                     wrong_edit_negatives=rep.protocol.wrong_edit_negatives,
                                     plain_wins_pairs=rep.protocol.plain_wins_pairs))
    return {"data_dir": str(rep.data_dir), "summary": summary if isinstance(summary, dict) else None}


def _stage_flags(rep: Reproduction, run_dir: Path) -> dict[str, Any]:
    """Common stage keys; an interrupted stage resumes from its own checkpoint, a half-created one restarts."""
    from seer.run import find_checkpoints

    flags: dict[str, Any] = {"name": RUN_NAME, "output_dir": str(rep.runs_dir), "seed": rep.seed,
                             **rep.protocol.stage_overrides}
    if find_checkpoints(run_dir):  # state/, or an older state.N when a kill fell between two renames
        flags["resume"] = True
    elif run_dir.exists():
        flags["overwrite"] = True
    return flags


def _training_file(rep: Reproduction, name: str) -> Path:
    """The training file, or (``train_limit``) a balanced subset of it written beside it, so image paths stay
    relative to the same folder. Records of the train split only."""
    from seer.data import load_quadruplets, load_samples, write_jsonl

    path = rep.data_dir / name
    n = rep.protocol.train_limit
    if not n:
        return path
    if name.startswith("quadruplets"):
        records = [q for q in load_quadruplets(path) if q.split == "train"]
        subset = [q for ph in (1, 2) for q in balanced_subset([q for q in records if q.phase == ph], n)]
    else:
        subset = balanced_subset([s for s in load_samples(path) if s.split == "train"], n)
    out = path.with_name(f"{path.stem}_first{n}.jsonl")
    write_jsonl(out, subset)
    return out


def world_recipe(stage: str) -> Path | None:
    """The world's tuned recipe for a stage (``recipes/world/<stage>.yaml`` in the source tree), if there is one;
    the reproduction's own keys (model, data, epochs, run dir, seed) override it."""
    path = Path(__file__).resolve().parents[2] / "recipes" / "world" / f"{stage}.yaml"
    return path if path.is_file() else None


def step_rlvr(rep: Reproduction) -> dict[str, Any]:
    from seer.config import RLVRConfig, load_config
    from seer.stages import rlvr

    p = rep.protocol
    cfg = load_config(RLVRConfig, world_recipe("rlvr"), flags={
        **_stage_flags(rep, rep.rlvr_dir), "model": str(rep.base_model()),
        "quadruplets": str(_training_file(rep, "quadruplets_train.jsonl")),
        "epochs_phase1": p.epochs_phase1, "epochs_phase2": p.epochs_phase2,
    })
    return {"run_dir": str(rlvr.train(cfg)), "recipe": str(world_recipe("rlvr"))}


def step_rlmt(rep: Reproduction) -> dict[str, Any]:
    from seer.config import RLMTConfig, load_config
    from seer.stages import rlmt

    p = rep.protocol
    cfg = load_config(RLMTConfig, world_recipe("rlmt"), flags={
        **_stage_flags(rep, rep.rlmt_dir), "evaluator": str(rep.rlvr_dir),
        "samples": str(_training_file(rep, "samples.jsonl")), "epochs": p.epochs_rlmt,
        "judge_both_orders": p.rlmt_both_orders,
        **({"generator": str(rep.base_model())} if p.generator == "base" else {}),
    })
    return {"run_dir": str(rlmt.train(cfg)), "recipe": str(world_recipe("rlmt"))}


def step_rlmt_from_base(rep: Reproduction) -> dict[str, Any]:
    """The ablation the paper implies: the same RLMT, the same RLVR evaluator as the judge, but the policy starts from
    the base model instead of the RLVR checkpoint, so what RLVR's training did to the policy can be told apart from
    what RLMT did."""
    from seer.config import RLMTConfig, load_config
    from seer.stages import rlmt

    p = rep.protocol
    cfg = load_config(RLMTConfig, world_recipe("rlmt"), flags={
        **_stage_flags(rep, rep.rlmt_base_dir), "name": ABLATION_RUN, "evaluator": str(rep.rlvr_dir),
        "init": str(rep.base_model()),
        "samples": str(_training_file(rep, "samples.jsonl")), "epochs": p.epochs_rlmt,
        "judge_both_orders": p.rlmt_both_orders,
        **({"generator": str(rep.base_model())} if p.generator == "base" else {}),
    })
    return {"run_dir": str(rlmt.train(cfg)), "recipe": str(world_recipe("rlmt"))}


def _checkpoints(rep: Reproduction) -> dict[str, Path]:
    return {"base": rep.base_model(), "phase1": rep.rlvr_dir / "phase1_model", "rlvr": rep.rlvr_dir / "model",
            "rlmt": rep.rlmt_dir / "model", "rlmt_base": rep.rlmt_base_dir / "model"}


def _open(rep: Reproduction, which: str) -> Any:
    from seer.eval.common import open_checkpoint

    ck = _checkpoints(rep)
    return open_checkpoint(ck[which], reference=ck["base"])


def _test_quadruplets(rep: Reproduction) -> Path:
    return rep.data_dir / "quadruplets_test.jsonl"


def _test_samples(rep: Reproduction) -> list[Any]:
    from seer.data import load_samples

    samples = load_samples(rep.data_dir / "samples_test.jsonl")
    return balanced_subset(samples, rep.protocol.test_limit)


# Table 1's evaluators: report key, checkpoint key, label
EVALUATORS = (("zero_shot", "base", "Zero-shot (base)"), ("phase1", "phase1", "Phase 1 Only"),
              ("seer_eval", "rlvr", "SEER-Eval"))


def step_table1(rep: Reproduction) -> dict[str, Any]:
    from seer.eval.evaluator import evaluate_evaluator

    rows = []
    for key, which, label in EVALUATORS:
        backend = _open(rep, which)
        rows.append(evaluate_evaluator(
            backend, _test_quadruplets(rep), key=key, label=label, limit=rep.protocol.test_limit or None,
            max_new_tokens=rep.protocol.verdict_max_new_tokens,
            n_boot=rep.protocol.n_boot, seed=rep.seed,
            judgments_path=rep.eval_dir / "table1" / f"{key}.jsonl"))
        del backend
    atomic_write_json(rep.eval_dir / "table1.json", {"rows": rows})
    return {"rows": rows}


def step_table1_shortcut_proof(rep: Reproduction) -> dict[str, Any]:
    """Table 1 on the shortcut-proof set (``seer.eval.shortcut_proof``), the paper-style accuracy beside it. A data
    folder from an older build-data lacks the set: the error names the file and the command that adds it, and every
    step already done stays done."""
    from seer.cli import UserError
    from seer.data import DataError
    from seer.eval import shortcut_proof as SP

    try:
        pairs = SP.load_pairs(rep.data_dir / SP.PAIRS_FILE, base=rep.base, seed=rep.seed)
    except DataError as e:
        raise UserError(f"{e} (`seer reproduce --resume` then continues from this step)") from e
    pairs = SP.subset_cases(pairs, rep.protocol.test_limit)
    paper_rows = {r["key"]: r for r in (_result(rep, "table1") or {}).get("rows", [])}
    out: dict[str, Any] = {}
    for key, which, label in EVALUATORS:
        backend = _open(rep, which)
        paper_total = ((paper_rows.get(key) or {}).get("accuracy") or {}).get("total")
        out[key] = SP.evaluate(backend, pairs, rep.data_dir, key=key, label=label,
                               max_new_tokens=rep.protocol.verdict_max_new_tokens, n_boot=rep.protocol.n_boot,
                               seed=rep.seed, paper_style=paper_total,
                               judgments_path=rep.eval_dir / "table1_shortcut_proof" / f"{key}.jsonl")
        del backend
    result = {"evaluators": out, "blind": SP.shortcut_rows(pairs, n_boot=rep.protocol.n_boot, seed=rep.seed),
              "n_pairs": len(pairs), "n_cases": len(pairs) // len(SP.KINDS)}
    atomic_write_json(rep.eval_dir / "table1_shortcut_proof.json", result)
    return result


def _subject_of(prompt: str) -> str:
    """The prompt's subject by the world's grammar; a prompt outside it stands for itself."""
    from seer.world import semantics as S

    try:
        return S.prompt_attributes(prompt)["subject"]
    except ValueError:  # seer.world.render.WorldError
        return prompt


def step_shortcut(rep: Reproduction) -> dict[str, Any]:
    """seer's probe (``seer.eval.shortcut``): does each Table 1 evaluator read the instruction, or prefer the edited
    image? Pairs of two edits, and an edit against the plain image, labelled by the judge."""
    from seer.data import load_quadruplets
    from seer.eval import shortcut as SC

    quads = [q for q in load_quadruplets(_test_quadruplets(rep)) if q.phase == 2]
    quads = balanced_subset(quads, rep.protocol.test_limit)
    pairs = SC.probe_pairs(quads, rep.data_dir, _judge(rep), _subject_of)
    rows = []
    for key, which, label in EVALUATORS:
        backend = _open(rep, which)
        rows.append({"key": key, "label": label, **SC.probe_evaluator(
            backend, pairs, rep.data_dir, max_new_tokens=rep.protocol.verdict_max_new_tokens)})
        del backend
    result = {"judge": SC.judge_summary(pairs), "rows": rows}
    atomic_write_json(rep.eval_dir / "shortcut.json", result)
    return result


SYSTEMS = (
    # name, label, source: a checkpoint key for a policy, or "naive" / an external reprompter's class name
    ("seer", "SEER", "rlmt"),
    ("naive", "Naive concatenation", "naive"),
    ("base_cot", "Base (CoT)", "base"),
    ("rlvr_only", "RLVR-only", "rlvr"),
    ("seer_policy_base", "SEER, policy from base", "rlmt_base"),  # the ablation (issue 21)
    ("verbose_expander", "VerboseExpander", "VerboseExpander"),
    ("knowledgeable_rewriter", "KnowledgeableRewriter", "KnowledgeableRewriter"),
)
TABLE2_OPPONENTS = ("verbose_expander", "knowledgeable_rewriter")
TABLE3_OPPONENTS = ("naive", "base_cot", "rlvr_only", "seer_policy_base")


def step_systems(rep: Reproduction) -> dict[str, Any]:
    from seer.eval import win_ratio as W

    samples = _test_samples(rep)
    opened = {"rlmt": _open(rep, "rlmt")}  # checkpoint key -> backend, each loaded once
    if rep.protocol.generator == "base":
        opened["base"] = _open(rep, "base")
    # every system's prompt goes through one generator G (Protocol.generator)
    generator = opened["base" if rep.protocol.generator == "base" else "rlmt"]
    out = {}
    for name, label, source in SYSTEMS:
        if source in ("base", "rlvr", "rlmt", "rlmt_base"):
            policy = opened[source] if source in opened else _open(rep, source)
            reprompts = W.policy_reprompts(policy, samples, max_new_tokens=rep.protocol.reprompt_max_new_tokens,
                                           desc=f"reprompts: {label}")
        elif source == "naive":
            reprompts = W.naive_reprompts(samples)
        else:
            from seer.world import reprompters

            reprompts = W.external_reprompts(getattr(reprompters, source)(), samples)
        system = W.build_system(name, label, samples, reprompts, generator, rep.eval_dir / "systems" / name,
                                seed=rep.seed)
        out[name] = {"label": label, "avg_words": system.avg_words(), "format_failures": system.format_failures,
                     "n": len(system.outputs)}
    return out


def _systems(rep: Reproduction) -> dict[str, Any]:
    from seer.eval.win_ratio import load_system

    return {name: load_system(rep.eval_dir / "systems" / name) for name, _, _ in SYSTEMS}


def _judge(rep: Reproduction) -> Any:
    from seer.eval.judge import default_judge

    return default_judge(rep.base_dir())


def step_win_ratio(rep: Reproduction) -> dict[str, Any]:
    from seer.eval import win_ratio as W
    from seer.eval.judge import EvaluatorJudge

    samples = _test_samples(rep)
    systems = _systems(rep)
    judge = _judge(rep)
    seer = systems["seer"]
    result: dict[str, Any] = {}
    raw_all = {}
    for table, names in (("table2", TABLE2_OPPONENTS), ("table3", TABLE3_OPPONENTS)):
        rows, raw = W.judge_scores_table(judge, samples, seer, [systems[n] for n in names],
                                         n_boot=rep.protocol.n_boot, seed=rep.seed)
        result[table] = {"rows": rows, "seer_avg_words": seer.avg_words(),
                         "seer_format_failures": seer.format_failures}
        raw_all.update(raw)
    result["judged"] = {name: W.judged_rates(judge, samples, system) for name, system in systems.items()}
    result["right_on_own"] = W.right_on_own(judge, samples, systems, reference="base_cot",
                                            n_boot=rep.protocol.n_boot, seed=rep.seed)
    shares = {name: W.added_word_shares(samples, systems[name])
              for name in ("seer", "seer_policy_base", "base_cot", "rlvr_only")}
    seer_top = list(shares["seer"])[:3]
    result["added_words"] = {"seer_top": seer_top, "rows": [
        {"key": name, "label": systems[name].label, "top": [[w, sh] for w, sh in list(shares[name].items())[:3]],
         "seer_top_shares": [shares[name].get(w, 0.0) for w in seer_top]} for name in shares]}
    W.export_pairs(rep.eval_dir / "pairs.jsonl", samples, seer,
                   [systems[n] for n in TABLE3_OPPONENTS + TABLE2_OPPONENTS])
    # the evaluator-error diagnostic: does the RLMT reward's evaluator agree with the judge on SEER-vs-naive pairs?
    evaluator = EvaluatorJudge(_open(rep, "rlvr"), name="seer_eval",
                               max_new_tokens=rep.protocol.verdict_max_new_tokens)
    result["diagnostics"] = W.evaluator_agreement(evaluator.compare_many, samples, seer, systems["naive"],
                                                  raw_all["naive"])
    atomic_write_json(rep.eval_dir / "scores.json", {"case_ids": [s.id for s in samples], "scores": raw_all})
    return result


def step_failure(rep: Reproduction) -> dict[str, Any]:
    from seer.eval.failure_modes import classify_system, failure_mode_table

    samples = _test_samples(rep)
    systems = _systems(rep)
    judge = _judge(rep)
    return {key: failure_mode_table(classify_system(judge, samples, systems[name]))
            for key, name in (("base", "base_cot"), ("rlvr_only", "rlvr_only"), ("seer", "seer"),
                              ("seer_policy_base", "seer_policy_base"))}


def step_general(rep: Reproduction) -> dict[str, Any]:
    from seer.eval import general as G

    judge = _judge(rep)
    cases = G.generation_cases(rep.protocol.general_per_column, seed=rep.seed + 1)
    probes = G.world_understanding_probes(rep.protocol.understanding_per_column, seed=rep.seed + 2)
    gen_rows, und_rows = [], []
    ceiling = None
    for key, label in (("base", "Base"), ("rlvr", "After RLVR (Stage 1)"), ("rlmt", "After RLMT (SEER)")):
        backend = _open(rep, key)
        gen_rows.append({"key": key, "label": label,
                         "cells": G.generation_accuracy(backend, judge.read_attributes, cases, desc=f"gen: {label}")})
        if ceiling is None:
            ceiling = G.tokenizer_ceiling(backend.image_tokenizer, judge.read_attributes, cases)
        if probes:
            und_rows.append({"key": key, "label": label,
                             "cells": G.understanding_accuracy(backend, probes, desc=f"und: {label}")})
        del backend
    gen_cols = [*G.GENERATION_COLUMNS, "overall"]
    out = {"generation": {"columns": gen_cols, "rows": gen_rows, "ceiling": ceiling,
                          "n_per_column": rep.protocol.general_per_column}}
    if und_rows:
        cols = [c for c in und_rows[0]["cells"] if c != "overall"] + ["overall"]
        out["understanding"] = {"columns": cols, "rows": und_rows,
                                "n_per_column": rep.protocol.understanding_per_column}
    return out


HEALTH_KEYS = ("reward_mean", "accuracy_reward_mean", "format_failure_rate", "zero_spread_fraction", "group_std_mean",
               "kl", "truncation_rate", "win_rate_vs_naive", "position_inconsistent_rate")


def training_summary(run_dir: Path) -> dict[str, Any]:
    """What tells whether a stage trained healthily, from its metrics.jsonl, per curriculum phase: the mean of
    each health metric over the first and the last fifth of the phase's steps."""
    from seer.eval.figures import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        return {}
    out: dict[str, Any] = {"steps": len(records), "phases": {}}
    for ph in sorted({int(r.get("phase", 1)) for r in records}):
        rs = [r for r in records if int(r.get("phase", 1)) == ph]
        k = max(1, len(rs) // 5)
        first, last = {}, {}
        for key in HEALTH_KEYS:
            vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
            if vals:
                first[key], last[key] = sum(vals[:k]) / len(vals[:k]), sum(vals[-k:]) / len(vals[-k:])
        out["phases"][str(ph)] = {"steps": len(rs), "window": k, "first": first, "last": last}
    return out


def step_report(rep: Reproduction) -> dict[str, Any]:
    """Collect every step's result into report.json, draw the figures, render REPORT.md."""
    report = build_report(rep)
    write_report(rep.out, report)
    return {"report": str(rep.out / "REPORT.md")}


def _result(rep: Reproduction, name: str) -> Any:
    m = rep.marker(name)
    return json.loads(m.read_text())["result"] if m.is_file() else None


def _grids(rep: Reproduction, opponent: str = "base_cot") -> list[str]:
    from seer.data import CATEGORIES
    from seer.eval.figures import GridRow, image_grid
    from seer.eval.win_ratio import load_system

    try:
        seer, naive, opp = (load_system(rep.eval_dir / "systems" / n) for n in ("seer", "naive", opponent))
    except FileNotFoundError:
        return []
    samples = _test_samples(rep)
    paths = []
    for cat in CATEGORIES:
        cases = [s for s in samples if s.category == cat][: rep.protocol.grid_cases_per_category]
        if not cases:
            continue
        rows = [GridRow(cat, s.instruction, s.prompt, naive.image(s.id), seer.outputs[s.id].prompt_used,
                        seer.image(s.id), opp.label, opp.image(s.id), opp.outputs[s.id].prompt_used) for s in cases]
        p = image_grid(rows, rep.out / "figures" / f"grid_{cat}.png", title=cat.replace("_", " "))
        paths.append(str(p.relative_to(rep.out)))
    return paths


def _curves(rep: Reproduction) -> list[str]:
    from seer.eval.figures import plot_curves

    paths = []
    for stage, run_dir in (("rlvr", rep.rlvr_dir), ("rlmt", rep.rlmt_dir)):
        p = plot_curves(run_dir / "metrics.jsonl", rep.out / "figures" / f"curves_{stage}.png",
                        f"{stage.upper()} training")
        if p is not None:
            paths.append(str(p.relative_to(rep.out)))
    return paths


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def build_report(rep: Reproduction) -> dict[str, Any]:
    from seer.eval.report import check_targets
    from seer.run import package_versions

    data = _result(rep, "data") or {}
    samples = _test_samples(rep) if (rep.data_dir / "samples_test.jsonl").is_file() else []
    n_quads = None
    if _test_quadruplets(rep).is_file():
        from seer.data import load_quadruplets

        n_quads = sum(q.phase == 2 for q in load_quadruplets(_test_quadruplets(rep), check_images=False))
    wall = sum(s["wall_time_s"] for s in rep.steps)
    complete = all(s["status"] == "done" for s in rep.steps)
    report: dict[str, Any] = {
        "meta": {
            "command": rep.command, "date": _now(), "quick": rep.quick, "seed": rep.seed, "judge": "oracle",
            "git_commit": _git_commit(), "versions": package_versions(), "python": platform.python_version(),
            "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "protocol": asdict(rep.protocol), "wall_time_s": wall, "complete": complete,
            "steps": rep.steps, "n_test_samples": len(samples), "n_test_quadruplets": n_quads,
            "data": data.get("summary"),
        },
    }
    if (t1 := _result(rep, "table1")) is not None:
        report["table1"] = t1
    if (sp := _result(rep, "table1_shortcut_proof")) is not None:
        # one entry per evaluator (overall, by_kind, by_split, reference rows); the blind strategies and counts beside
        report["table1_shortcut_proof"] = sp["evaluators"]
        report["table1_shortcut_proof_set"] = {k: v for k, v in sp.items() if k != "evaluators"}
    if (sc := _result(rep, "shortcut")) is not None:
        report["shortcut"] = sc
    if (wr := _result(rep, "win_ratio")) is not None:
        report["table2"], report["table3"] = wr["table2"], wr["table3"]
        report["diagnostics"] = wr.get("diagnostics")
        report["judged"] = wr.get("judged")
        report["right_on_own"] = wr.get("right_on_own")
        report["added_words"] = wr.get("added_words")
    if (fm := _result(rep, "failure")) is not None:
        report["failure_modes"] = fm
    if (g := _result(rep, "general")) is not None:
        report["general"] = g
    report["training"] = {stage: training_summary(run_dir)
                          for stage, run_dir in (("rlvr", rep.rlvr_dir), ("rlmt", rep.rlmt_dir),
                                                 ("rlmt_from_base", rep.rlmt_base_dir))
                          if (run_dir / "metrics.jsonl").is_file()}
    report["figures"] = {"curves": _curves(rep), "grids": _grids(rep)}
    report["targets"] = check_targets(report)
    return report


def write_report(out: Path, report: dict[str, Any]) -> None:
    from seer.eval.report import render_report

    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "REPORT.md", render_report(report))


STEPS: tuple[tuple[str, Callable[[Reproduction], Any]], ...] = (
    ("data", step_data),
    ("rlvr", step_rlvr),
    ("rlmt", step_rlmt),
    ("rlmt_from_base", step_rlmt_from_base),
    ("table1", step_table1),
    ("table1_shortcut_proof", step_table1_shortcut_proof),
    ("shortcut", step_shortcut),
    ("systems", step_systems),
    ("win_ratio", step_win_ratio),
    ("failure", step_failure),
    ("general", step_general),
)


def _check_data_current(rep: Reproduction, only: tuple[str, ...] | None) -> None:
    """A resumed run whose data step was done by an older build-data (no shortcut-proof set): say so before any
    training runs, naming the file and the command that adds it; nothing already computed is touched."""
    from seer.cli import UserError
    from seer.eval import shortcut_proof as SP

    name = "table1_shortcut_proof"
    if (only is not None and name not in only) or rep.marker(name).is_file() or not rep.marker("data").is_file():
        return
    path = rep.data_dir / SP.PAIRS_FILE
    if not path.is_file():
        raise UserError(f"{SP.missing_message(path, rep.base, rep.seed)} with `seer reproduce --resume`")


def _settings_diff(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> str:
    """Only the settings that differ, as ``key: then → now``: the whole dict hid the one that mattered."""
    parts = []
    for k in sorted(set(before) | set(now)):
        a, b = before.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _settings_diff(a, b, f"{prefix}{k}.")
            parts += [inner] if inner else []
        elif a != b:
            parts.append(f"{prefix}{k}: {a!r} when started, {b!r} now")
    return "; ".join(parts)


def reproduce(
    out: str | Path = "runs/reproduce",
    *,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    base: str | Path | None = None,
    protocol: Protocol | None = None,
    only: tuple[str, ...] | None = None,
    threads: int = 1,
    generator: str | None = None,
    wrong_edit_negatives: bool | None = None,
    plain_wins_pairs: bool | None = None,
    rlmt_single_order: bool | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Path:
    """Run (or resume) a reproduction into ``out``; returns the path of REPORT.md. ``threads`` sets torch's intra-op
    threads (default 1: the world model is tiny, and on a shared 2-core machine one thread per process generated
    far faster than torch's default, as measured by the world's build-data; 0 leaves torch's default)."""
    from seer.cli import UserError
    from seer.run import set_threads

    set_threads(threads)

    out = Path(out)
    protocol = protocol or (QUICK if quick else FULL)
    if generator is not None:
        try:
            protocol = replace(protocol, generator=generator)  # Protocol checks the name
        except ValueError as e:
            raise UserError(f"--generator: {e}") from e
    if wrong_edit_negatives is not None:
        protocol = replace(protocol, wrong_edit_negatives=wrong_edit_negatives)
    if plain_wins_pairs is not None:
        protocol = replace(protocol, plain_wins_pairs=plain_wins_pairs)
    if rlmt_single_order is not None:
        protocol = replace(protocol, rlmt_both_orders=not rlmt_single_order)
    from seer.io import claim_output_dir, read_json_object

    # only a folder of its own (reproduce.json) is resumed or overwritten: never one it did not create
    claim_output_dir(out, lambda d: (d / "reproduce.json").is_file(), "seer reproduce")
    if (out / "steps").is_dir() and any((out / "steps").iterdir()) and not (resume or overwrite):
        raise UserError(f"{out}: a reproduction is already there; pass --resume to continue it or --overwrite to "
                        "start afresh")
    if overwrite and out.exists():
        import shutil

        shutil.rmtree(out)
    settings = {"quick": quick, "seed": seed, "protocol": asdict(protocol), "base": str(base) if base else None}
    settings_file = out / "reproduce.json"
    if settings_file.is_file():
        before = read_json_object(settings_file, UserError)
        # a protocol field added since the run started has the default the run was made with
        # except RLMT's judging: a run from before issue 21 judged one order (the recipe's default then)
        before["protocol"] = {**asdict(Protocol()), "rlmt_both_orders": False, **(before.get("protocol") or {})}
        if before != settings:
            raise UserError(f"{settings_file}: this reproduction was started with other settings "
                            f"({_settings_diff(before, settings)}); resume it with the same flags, or pass "
                            "--overwrite")
    else:
        atomic_write_json(settings_file, settings)
    rep = Reproduction(out, protocol, quick, seed, Path(base) if base else None,
                       command=" ".join(["seer", *map(shlex.quote, sys.argv[1:])]) if sys.argv else "")
    _check_data_current(rep, only)
    for name, fn in STEPS:
        if only is not None and name not in only:
            continue
        run_step(rep, name, fn, log)
    rep.marker("report").unlink(missing_ok=True)  # the report always reflects the latest state
    step_report(rep)
    log(f"[reproduce] wrote {out / 'REPORT.md'} ({sum(s['wall_time_s'] for s in rep.steps) / 60:.1f} min)")
    return out / "REPORT.md"

