"""Stage 1 — RLVR, evaluator activation (paper Sec. 3.4.1, App. A.1.4).

The evaluator sees ``(instruction a, prompt p0, image A, image B)`` and writes a reasoning trace then a verdict;
the reward is 1 if the verdict names the chosen image (plus the format reward). Each pair is shuffled with a seeded
coin so the chosen image is A or B with equal probability. Curriculum: phase 1, basic alignment (the image of p0 vs
one with its object or scene masked or swapped, no instruction), then phase 2, visual-instruction supervision (the
verified image of a applied to p0 vs the image of p0 alone as a hard negative), each with its own learning rate and
epochs. Writes ``<run>/phase1_model/`` after phase 1 and the evaluator checkpoint ``<run>/model/`` at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seer.backends.base import Context
from seer.config import RLVRConfig
from seer.data import DataError, Quadruplet, load_image, load_quadruplets
from seer.prompts import parse_verdict
from seer.rewards import total_reward, verdict_format_reward, verdict_reward
from seer.run import check_run_dir, set_threads
from seer.stages.common import (
    Dist,
    Group,
    Phase,
    check_contexts,
    derive_seed,
    describe_backend,
    expected_image_size,
    open_model,
    run_stage,
    sampling_params,
    timed,
)

PHASE_NAMES = ("basic_alignment", "visual_instruction")


def load_pair_images(path: str | Path, quads: list[Quadruplet], size: tuple[int, int] | None) -> dict[str, Any]:
    """Every quadruplet's (chosen, rejected) images, checked against the backend's image size, loaded up front so
    a bad file fails before training."""
    folder = Path(path).parent
    images = {}
    for q in quads:
        images[q.id] = tuple(
            load_image(folder / getattr(q, name), size, where=f"{path}: record {q.id!r} field {name!r}")
            for name in ("image_chosen", "image_rejected")
        )
    return images


def present_pair(q: Quadruplet, images: dict[str, Any], seed: int) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """Shuffle the pair with a seeded coin: returns ((image A, image B), label) where label names the chosen one."""
    chosen, rejected = images[q.id]
    label = "A" if np.random.default_rng(derive_seed(seed, 0xA8)).random() < 0.5 else "B"
    return ((chosen, rejected) if label == "A" else (rejected, chosen)), label


def evaluator_context(cfg: RLVRConfig, q: Quadruplet, pair: tuple[np.ndarray, np.ndarray]) -> Context:
    return Context(cfg.templates.evaluator_text(q.instruction, q.prompt), pair)


def rollouts(backend: Any, cfg: RLVRConfig, images: dict[str, Any], qs: list[Quadruplet], seeds: list[int],
             timings: dict[str, float]) -> list[Group]:
    """Sample G verdicts for each quadruplet (one batched call, a seed per query) and score them against the
    labels. With ``both_orders``, G/2 verdicts see the pair as shuffled and G/2 see it swapped."""
    presented = [present_pair(q, images, seed) for q, seed in zip(qs, seeds, strict=True)]
    views = []  # per query: [(context, label), ...] — one view, or the shuffled and the swapped one
    for q, ((a, b), label) in zip(qs, presented, strict=True):
        view = [(evaluator_context(cfg, q, (a, b)), label)]
        if cfg.both_orders:
            view.append((evaluator_context(cfg, q, (b, a)), "B" if label == "A" else "A"))
        views.append(view)
    n = cfg.group_size // 2 if cfg.both_orders else cfg.group_size  # completions per view
    flat = [ctx for view in views for ctx, _ in view]
    flat_seeds = [derive_seed(seed, k) if k else seed for seed, view in zip(seeds, views, strict=True)
                  for k in range(len(view))]
    with timed(timings, "rollout"):
        sampled = backend.generate_text(flat, n, sampling_params(cfg), seed=flat_seeds)
    groups, at = [], 0
    for q, view in zip(qs, views, strict=True):
        completions, labels, contexts = [], [], []
        for ctx, label in view:
            completions += sampled[at]
            labels += [label] * n
            contexts += [ctx] * n
            at += 1
        accuracy = [verdict_reward(c.text, y) for c, y in zip(completions, labels, strict=True)]
        fmt = [verdict_format_reward(c.text) for c in completions]
        verdicts = [parse_verdict(c.text).answer for c in completions]
        groups.append(Group(
            query_id=q.id,
            context=view[0][0],
            completions=completions,
            accuracy=accuracy,
            format=fmt,
            reward=[total_reward(a, f, cfg.format_weight) for a, f in zip(accuracy, fmt, strict=True)],
            info=[{"phase": q.phase, "label": y, "verdict": v} for y, v in zip(labels, verdicts, strict=True)],
            extra_sums={"label_is_A": sum(y == "A" for y in labels) / len(labels),
                        "verdict_A": float(sum(v == "A" for v in verdicts))},
            contexts=contexts if cfg.both_orders else None,
        ))
    return groups


def rollout(backend: Any, cfg: RLVRConfig, images: dict[str, Any], q: Quadruplet, seed: int,
            timings: dict[str, float]) -> Group:
    """:func:`rollouts` for one quadruplet."""
    return rollouts(backend, cfg, images, [q], [seed], timings)[0]


def split_phases(cfg: RLVRConfig, quads: list[Quadruplet]) -> tuple[list[Quadruplet], list[Quadruplet]]:
    """The training quadruplets of each curriculum phase; a phase that should run but has none is a DataError."""
    chosen = [q for q in quads if q.split == cfg.split]
    by_phase = ([q for q in chosen if q.phase == 1], [q for q in chosen if q.phase == 2])
    for i, (qs, epochs) in enumerate(zip(by_phase, (cfg.epochs_phase1, cfg.epochs_phase2), strict=True)):
        if epochs > 0 and not qs:
            raise DataError(f"{cfg.quadruplets}: no phase-{i + 1} quadruplets with split {cfg.split!r}, but "
                            f"epochs_phase{i + 1} is {epochs}; add them or set epochs_phase{i + 1}: 0")
    return by_phase


def train(cfg: RLVRConfig) -> Path:
    """Run stage 1 and return the run directory (``<output_dir>/<name>/rlvr``)."""
    dist = Dist(cpu=cfg.device == "cpu")
    check_run_dir(cfg)
    set_threads(cfg.threads)
    quads = load_quadruplets(cfg.quadruplets)
    phase1, phase2 = split_phases(cfg, quads)
    backend = open_model(cfg.model, cfg, "model")
    images = load_pair_images(cfg.quadruplets, phase1 + phase2, expected_image_size(backend))
    contexts = [(f"{cfg.quadruplets}: record {q.id!r}", evaluator_context(cfg, q, images[q.id]))
                for q in phase1 + phase2]
    summary = {
        "run_dir": str(cfg.run_dir),
        "model": cfg.model,
        "backend": getattr(backend, "kind", type(backend).__name__),
        "model_summary": describe_backend(backend),
        "phase1_quadruplets": len(phase1),
        "phase2_quadruplets": len(phase2),
        "steps": sum(-(-len(qs) // cfg.queries_per_step) * e
                     for qs, e in ((phase1, cfg.epochs_phase1), (phase2, cfg.epochs_phase2))),
        "image_size": expected_image_size(backend),
        "contexts": check_contexts(backend, contexts, cfg.max_new_tokens),
    }
    phases = [
        Phase(PHASE_NAMES[0], phase1, cfg.lr_phase1, cfg.epochs_phase1,
              on_end=lambda run: run.save_model(backend, "phase1_model")),
        Phase(PHASE_NAMES[1], phase2, cfg.lr_phase2, cfg.epochs_phase2),
    ]
    return run_stage(cfg, backend, dist, phases, lambda qs, seeds, t: rollouts(backend, cfg, images, qs, seeds, t),
                     summary,
                     extra_metrics={"label_is_A": "queries", "verdict_A": "completions"})
