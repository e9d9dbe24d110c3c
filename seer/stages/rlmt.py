"""Stage 2 — RLMT, the reprompting policy (paper Sec. 3.4.2, Eq. 9–11).

The policy sees only text, ``(instruction a, prompt p0)``, and writes reasoning then a reprompt p. For each valid
reprompt p_i the generator draws ``x_i = G(p_i)`` and the baseline ``x0 = G(a ⊕ p0)`` with the *same* seed
(one seed per query), so a comparison isolates the prompt. G is the policy's own (its frozen generation parameters ϕ
on the shared backbone being trained, as in the paper) unless ``generator`` names a checkpoint that draws every
image and is never trained. The evaluator — the frozen RLVR checkpoint, or the live
policy with ``self_judge`` — judges each pair ``(x_i, x0)`` greedily, shown in a seeded random order; Eq. 9 gives
reward 1 when it prefers x_i. With ``judge_both_orders`` (the world recipe's default, seer's) it judges both orders
and the reward is the mean of the two, so a verdict naming one position for both images earns 0.5: an evaluator that
names the same position on most pairs made one order's reward a coin flip; the share of such pairs is logged per step
as ``position_inconsistent_rate``. An unparseable reprompt earns 0 and no image is drawn for it. The reference policy is
the initial policy; ϕ is checked bit-identical at every checkpoint. Writes the policy checkpoint ``<run>/model/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from seer.backends.base import BackendError, Context, SamplingParams
from seer.config import ConfigError, RLMTConfig, resolve_checkpoint
from seer.data import DataError, Sample, load_samples
from seer.prompts import parse_reprompt, parse_verdict
from seer.rewards import preference_reward, reprompt_format_reward, total_reward
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

EXTRA_METRICS = {  # metric (a summed counter) -> the counter it is divided by
    "win_rate_vs_naive": "valid_reprompts",  # Eq. 9 rewards of valid reprompts: how often x beats x0
    "reprompt_words_mean": "valid_reprompts",
    "judge_format_failure_rate": "judgements",
}
# with ``judge_both_orders``: the share of pairs whose two verdicts name the same position (so the same letter for two
# different images: a position bias, not a reading); each such pair's reward is 0.5, a coin flip in one order
BOTH_ORDERS_METRICS = {"position_inconsistent_rate": "valid_reprompts"}


def reprompt_context(cfg: RLMTConfig, sample: Sample) -> Context:
    return Context(cfg.templates.reprompt_text(sample.instruction, sample.prompt))


def judge_contexts(cfg: RLMTConfig, sample: Sample, x0: np.ndarray, xs: list[np.ndarray], seed: int
                   ) -> tuple[list[Context], list[str]]:
    """The evaluator contexts of Eq. 9 for each reprompt image in ``xs`` against the baseline ``x0``: the pair in a
    seeded random order (or both orders), with the position of the reprompt's image in each."""
    text = cfg.templates.evaluator_text(sample.instruction, sample.prompt)
    contexts, positions = [], []
    for j, x in enumerate(xs):
        first = "A" if np.random.default_rng(derive_seed(seed, 0xB0, j)).random() < 0.5 else "B"
        orders = (first, "B" if first == "A" else "A") if cfg.judge_both_orders else (first,)
        for pos in orders:
            contexts.append(Context(text, (x, x0) if pos == "A" else (x0, x)))
            positions.append(pos)
    return contexts, positions


def judge_rewards(cfg: RLMTConfig, verdicts: list[str], positions: list[str]) -> tuple[list[float], int]:
    """Per reprompt image the reward of its verdicts (averaged over both orders: a pair whose two verdicts name the
    same position gets 1 + 0 → 0.5) and the unparseable count."""
    per_order = [preference_reward(v, pos) for v, pos in zip(verdicts, positions, strict=True)]
    k = 2 if cfg.judge_both_orders else 1
    rewards = [sum(per_order[j * k : (j + 1) * k]) / k for j in range(len(per_order) // k)]
    return rewards, sum(not parse_verdict(v).ok for v in verdicts)


def position_inconsistent(verdicts: list[str]) -> int:
    """Pairs (both orders, consecutive) whose two parsed verdicts name the same letter, i.e. different images."""
    answers = [parse_verdict(v).answer for v in verdicts]
    return sum(a is not None and a == b for a, b in zip(answers[::2], answers[1::2], strict=True))


def rollouts(policy: Any, judge: Any, cfg: RLMTConfig, samples: list[Sample], seeds: list[int],
             timings: dict[str, float], generator: Any = None) -> list[Group]:
    """For each (a, p0): sample G reprompts, draw their images and the baseline's (x_i and x0 share one image seed
    per query), and let the evaluator score them. Sampling, image generation and judging each run as one batched
    call over the step's queries; per-query seeds make the result the same as one query at a time. ``generator``
    (default: the policy) draws the images."""
    generator = policy if generator is None else generator
    contexts = [reprompt_context(cfg, s) for s in samples]
    with timed(timings, "rollout"):
        sampled = policy.generate_text(contexts, cfg.group_size, sampling_params(cfg), seed=list(seeds))
    parsed = [[parse_reprompt(c.text) for c in completions] for completions in sampled]
    valid = [[i for i, p in enumerate(ps) if p.ok] for ps in parsed]
    prompts, image_seeds = [], []
    for s, ps, ok, seed in zip(samples, parsed, valid, seeds, strict=True):
        if ok:
            prompts += [s.naive_prompt] + [ps[i].answer for i in ok]
            image_seeds += [derive_seed(seed, 0x1A6E)] * (1 + len(ok))
    with timed(timings, "images"):
        images = generator.generate_images(prompts, image_seeds) if prompts else []
    judged, positions, judge_seeds, spans, at = [], [], [], [], 0
    for s, ok, seed in zip(samples, valid, seeds, strict=True):
        if not ok:
            spans.append((0, 0))
            continue
        x0, xs = images[at], images[at + 1 : at + 1 + len(ok)]
        at += 1 + len(ok)
        ctxs, pos = judge_contexts(cfg, s, x0, xs, seed)
        spans.append((len(judged), len(judged) + len(ctxs)))
        judged += ctxs
        positions += pos
        judge_seeds += [derive_seed(seed, 0xC0)] * len(ctxs)
    verdicts: list[str] = []
    if judged:
        greedy = SamplingParams(max_new_tokens=cfg.judge_max_new_tokens, greedy=True)
        with timed(timings, "judge"):
            verdicts = [g[0].text for g in judge.generate_text(judged, 1, greedy, seed=judge_seeds)]
    groups = []
    for s, context, completions, ps, ok, (lo, hi) in zip(samples, contexts, sampled, parsed, valid, spans,
                                                          strict=True):
        accuracy = [0.0] * len(completions)
        rewards, unparseable = judge_rewards(cfg, verdicts[lo:hi], positions[lo:hi])
        for i, r in zip(ok, rewards, strict=True):
            accuracy[i] = r
        fmt = [reprompt_format_reward(c.text) for c in completions]
        groups.append(Group(
            query_id=s.id,
            context=context,
            completions=completions,
            accuracy=accuracy,
            format=fmt,
            reward=[total_reward(a, f, cfg.format_weight) for a, f in zip(accuracy, fmt, strict=True)],
            info=[{"reprompt": p.answer, "naive_prompt": s.naive_prompt} for p in ps],
            extra_sums={
                "valid_reprompts": float(len(ok)),
                "win_rate_vs_naive": float(sum(accuracy[i] for i in ok)),
                "reprompt_words_mean": float(sum(len(ps[i].answer.split()) for i in ok)),
                "judgements": float(len(ok) * (2 if cfg.judge_both_orders else 1)),
                "judge_format_failure_rate": float(unparseable),
                **({"position_inconsistent_rate": float(position_inconsistent(verdicts[lo:hi]))}
                   if cfg.judge_both_orders else {}),
            },
        ))
    return groups


def rollout(policy: Any, judge: Any, cfg: RLMTConfig, sample: Sample, seed: int, timings: dict[str, float],
            generator: Any = None) -> Group:
    """:func:`rollouts` for one (a, p0)."""
    return rollouts(policy, judge, cfg, [sample], [seed], timings, generator)[0]


def open_generator(cfg: RLMTConfig, policy: Any) -> tuple[Any, dict[str, str]]:
    """The backend that draws the training images: the policy itself, or the frozen ``generator`` checkpoint."""
    if cfg.generator is None:
        return policy, {}
    generator_dir = resolve_checkpoint(cfg.generator, "generator")
    generator = open_model(str(generator_dir), cfg, "generator", kind=None)
    if expected_image_size(generator) != expected_image_size(policy):
        raise BackendError(f"generator {generator_dir} draws images of size {expected_image_size(generator)} but the "
                           f"policy's evaluator expects {expected_image_size(policy)}")
    return generator, {"generator_dir": str(generator_dir)}


def check_rlvr_run(checkpoint: Path) -> None:
    """The frozen judge must be an RLVR evaluator: the untrained base or an RLMT policy would be accepted silently
    and give rewards that mean nothing. Its run's meta.json (``runs/x/rlvr/meta.json`` for ``runs/x/rlvr/model`` or
    ``phase1_model``; the checkpoint's own for a checkpoint copied elsewhere with it) must say stage rlvr."""
    run_dir = checkpoint.parent if checkpoint.name in ("model", "phase1_model") else checkpoint
    meta_file = run_dir / "meta.json"
    stage = None
    if meta_file.is_file():
        try:
            stage = json.loads(meta_file.read_text(encoding="utf-8")).get("stage")
        except (ValueError, AttributeError, UnicodeDecodeError) as e:
            raise ConfigError(f"evaluator {meta_file}: unreadable ({e})") from None
    if stage != "rlvr":
        what = (f"an {stage.upper()} run" if isinstance(stage, str)
                else f"not a run of `seer train rlvr` (no {meta_file})")
        raise ConfigError(f"evaluator {checkpoint}: {what}; RLMT needs the evaluator trained by `seer train rlvr` "
                          "(--evaluator runs/<name>/rlvr), or --self_judge true to let the policy judge")


def open_policy_and_judge(cfg: RLMTConfig) -> tuple[Any, Any, dict[str, str]]:
    """The policy (from ``init``, default the evaluator checkpoint) and the frozen evaluator (or the policy itself
    with ``self_judge``)."""
    evaluator_dir = resolve_checkpoint(cfg.evaluator, "evaluator")
    if not cfg.self_judge:  # with self_judge the policy judges; the evaluator checkpoint is only its start
        check_rlvr_run(evaluator_dir)
    if cfg.init is None:
        init_dir = evaluator_dir
    else:
        init_dir = Path(cfg.init) if cfg.backend else resolve_checkpoint(cfg.init, "init")
    policy = open_model(str(init_dir), cfg, "init")
    if cfg.self_judge:
        judge = policy
    else:
        share = {"share_base_with": policy} if cfg.share_evaluator_base else {}
        judge = open_model(str(evaluator_dir), cfg, "evaluator", kind=None, **share)  # backend.json names the kind
    if expected_image_size(policy) != expected_image_size(judge):
        raise BackendError(f"evaluator {evaluator_dir} expects images of size {expected_image_size(judge)} but the "
                           f"policy {init_dir} generates {expected_image_size(policy)}")
    return policy, judge, {"evaluator_dir": str(evaluator_dir), "init_dir": str(init_dir)}


def train(cfg: RLMTConfig) -> Path:
    """Run stage 2 and return the run directory (``<output_dir>/<name>/rlmt``)."""
    dist = Dist(cpu=cfg.device == "cpu")
    check_run_dir(cfg)
    set_threads(cfg.threads)
    samples = [s for s in load_samples(cfg.samples, check_images=False) if s.split == cfg.split]
    if not samples:
        raise DataError(f"{cfg.samples}: no samples with split {cfg.split!r}")
    policy, judge, paths = open_policy_and_judge(cfg)
    generator, generator_path = open_generator(cfg, policy)
    paths.update(generator_path)
    contexts = [(f"{cfg.samples}: record {s.id!r}", reprompt_context(cfg, s)) for s in samples]
    summary = {
        "run_dir": str(cfg.run_dir),
        **paths,
        "self_judge": cfg.self_judge,
        "backend": getattr(policy, "kind", type(policy).__name__),
        "model_summary": describe_backend(policy),
        "samples": len(samples),
        "steps": -(-len(samples) // cfg.queries_per_step) * cfg.epochs,
        "image_size": expected_image_size(policy),
        "contexts": check_contexts(policy, contexts, cfg.max_new_tokens),
    }
    if cfg.dry_run:  # one baseline image judged against itself: generation and the evaluator's context both work
        x0 = generator.generate_images([samples[0].naive_prompt], [cfg.seed])[0]
        text = cfg.templates.evaluator_text(samples[0].instruction, samples[0].prompt)
        summary["judge_check"] = check_contexts(judge, [("evaluator context", Context(text, (x0, x0)))],
                                                cfg.judge_max_new_tokens)
    phases = [Phase("reprompting", samples, cfg.lr, cfg.epochs)]
    return run_stage(cfg, policy, dist, phases,
                     lambda ss, seeds, t: rollouts(policy, judge, cfg, ss, seeds, t, generator), summary,
                     extra_metrics={**EXTRA_METRICS, **(BOTH_ORDERS_METRICS if cfg.judge_both_orders else {})})
