"""``seer world build-data``: Visual Instruction Elaboration data for the world, built like the paper's App. A.1.

Training set (A.1.2): the 60 training instructions (6 categories x 10) x ``prompts_per_instruction`` minimal prompts
with TRAIN subjects = 600 candidates. For each, the base UMM generates an image from a correct concrete rewrite
(``reference_reprompt``; up to ``1 + train_retries`` seeds until one passes — the paper draws one image per
candidate, the world's tiny generator needs a few tries); the oracle (the world's annotator) keeps candidates whose
image satisfies the instruction and keeps the prompt's subject; the top ``keep`` (up to 50 per category, ranked by
compliance then quality, then the best remaining feasible ones) become ``samples.jsonl``. Quadruplets (A.1.4):

* phase 1 (basic alignment, ``"instruction": ""``): chosen = the base UMM's image of p0 (verified to show p0's
  subject), rejected = an image of p0 with the subject swapped for another TRAIN subject;
* phase 2 (instruction supervision): chosen = the verified positive, rejected = the image of p0 (verified not to
  satisfy the instruction: a hard negative); with ``wrong_edit_negatives`` (seer's, off by default) also the
  positive vs the image of a rewrite with a wrong value of a targeted attribute (verified to fail); with
  ``plain_wins_pairs`` (seer's, off by default) also a pair the plain image wins: the image of p0 (chosen) vs an
  image of the correct rewrite with another subject (verified to satisfy the instruction and to lose the prompt).

Test set (A.1.3): 40 instructions — 20 ID (training instructions, 8 Simple + 12 Hard) and 20 OOD (the OOD registry:
unseen phrasings and unseen concepts, 8 Simple + 12 Hard), Simple:Hard = 2:3 in each — each with
``test_prompts_per_instruction`` prompts of TEST subjects only. ``quadruplets_test.jsonl``: a verified positive vs the
p0 image, both from the base generator, labels from the oracle. Test samples are not filtered for feasibility
(A.1.3): a test instruction stays even when the base generator cannot realise it.

Files (schema = :mod:`seer.data`; image paths relative to the JSONL's folder)::

    samples.jsonl            Sample: id, instruction, prompt, category, split "train", distribution "id",
                             image (verified positive), reference_reprompt
    quadruplets_train.jsonl  Quadruplet: phase 1 and 2, split "train"
    samples_test.jsonl       Sample: split "test", distribution "id" | "ood", reference_reprompt
    quadruplets_test.jsonl   Quadruplet: phase 2, split "test"
    pairs_shortcut_test.jsonl  Quadruplet: the shortcut-proof Table 1 set (``seer.eval.shortcut_proof``): per test
                             quadruplet four pairs, ids ``sp-<kind>-<qt id>``, made by :func:`shortcut_set`
    images/*.png             32x32 RGB
    manifest.json            counts, filter statistics, seed, the base's world fingerprint

Deterministic per seed (the base generator's sampling is seeded per image).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seer.data import CATEGORIES, HARD_CATEGORIES, SIMPLE_CATEGORIES, Quadruplet, Sample, save_image, write_jsonl
from seer.io import atomic_write_json
from seer.world import semantics as S
from seer.world.corpus import faithful_reprompt, minimal_prompt
from seer.world.render import TEST_SUBJECTS, TRAIN_SUBJECTS


@dataclass
class BuildConfig:
    """Configuration of ``seer world build-data``."""

    out: str = "data/world"  # output directory
    base: str = ""  # base directory written by `seer world pretrain` (empty = the shipped base)
    seed: int = 0  # seeds prompts and image sampling
    prompts_per_instruction: int = 10  # training candidates per training instruction (60 x 10 = 600)
    keep: int = 300  # training samples kept after the feasibility filter (balanced over categories)
    test_prompts_per_instruction: int = 3  # test samples per test instruction (40 instructions)
    retries: int = 4  # extra generation seeds tried for a test positive / a hard negative
    train_retries: int = 2  # extra generation seeds tried per training candidate before the feasibility filter
    wrong_edit_negatives: bool = False  # also a phase-2 pair per sample: the positive vs a wrongly edited image
    plain_wins_pairs: bool = False  # also a phase-2 pair per sample: the p0 image vs a right edit of another subject


def test_instructions(seed: int = 0) -> list[S.Instruction]:
    """20 ID (8 Simple: 3+3+2, 12 Hard: 4 per category) + 20 OOD instructions, deterministic per seed."""
    rng = np.random.default_rng([seed, 40])
    chosen: list[S.Instruction] = []
    quota = dict(zip(SIMPLE_CATEGORIES, (3, 3, 2), strict=True)) | {c: 4 for c in HARD_CATEGORIES}
    for cat in CATEGORIES:
        pool = [i for i in S.TRAIN_INSTRUCTIONS if i.category == cat]
        chosen += [pool[int(k)] for k in sorted(rng.choice(len(pool), quota[cat], replace=False))]
    return chosen + list(S.OOD_INSTRUCTIONS)


class _Generator:
    """Batched generation from the base UMM with per-image seeds."""

    def __init__(self, backend):
        self.backend = backend

    def __call__(self, prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        from tqdm import tqdm

        out: list[np.ndarray] = []
        step = 64
        for s in tqdm(range(0, len(prompts), step), desc="generate", mininterval=10, leave=False):
            out += self.backend.generate_images(prompts[s : s + step], seeds[s : s + step])
        return out


def _score(a) -> tuple:
    return (a.satisfied and a.subject_kept, a.compliance, a.quality)


def _is_build_output(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"config", "train_kept", "world_fingerprint"} <= set(manifest)


def build_data(cfg: BuildConfig) -> dict:
    """Build the data set into ``cfg.out``: only a new or empty folder, or one holding an earlier build-data output
    (its manifest.json), is accepted; the set is built in a staging folder beside it and renamed into place, so a
    kill midway leaves the folder as it was."""
    import shutil
    import sys

    from seer.io import atomic_replace_dir, claim_output_dir, staging_dir

    final = Path(cfg.out)
    replacing = claim_output_dir(final, _is_build_output, "seer world build-data")
    out = staging_dir(final)
    try:
        manifest = _build_into(cfg, out)
        atomic_replace_dir(out, final)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if replacing:
        print(f"seer world build-data: replaced the earlier data set in {final}", file=sys.stderr)
    return manifest


def _build_into(cfg: BuildConfig, out: Path) -> dict:
    from seer.world import load_base

    backend, oracle, _ = load_base(cfg.base or None)
    gen = _Generator(backend)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)

    # -- training candidates ----------------------------------------------------------------------------------------
    cands = []
    for instr in S.TRAIN_INSTRUCTIONS:
        for _ in range(cfg.prompts_per_instruction):
            subj = TRAIN_SUBJECTS[int(rng.integers(len(TRAIN_SUBJECTS)))]
            p0 = minimal_prompt(rng, subj, set(instr.rule))
            cands.append((instr, p0, faithful_reprompt(instr, p0, rng)))
    probe = [Sample(id=f"c{i}", instruction=c[0].text, prompt=c[1], category=c[0].category, reference_reprompt=c[2])
             for i, c in enumerate(cands)]
    pos_imgs, _ = _positives(gen, oracle, probe, rng, cfg.train_retries)
    pos_ass = oracle.assess_many(probe, pos_imgs)
    feasible = [i for i, a in enumerate(pos_ass) if a.satisfied and a.subject_kept]
    per_cat = cfg.keep // len(CATEGORIES)
    kept: list[int] = []
    for cat in CATEGORIES:
        idx = sorted((i for i in range(len(cands)) if cands[i][0].category == cat),
                     key=lambda i: _score(pos_ass[i]), reverse=True)
        kept += [i for i in idx if pos_ass[i].satisfied and pos_ass[i].subject_kept][:per_cat]
    # categories with fewer than keep/6 feasible candidates leave room: fill it with the best remaining feasible ones
    taken = set(kept)
    rest = sorted((i for i in feasible if i not in taken), key=lambda i: _score(pos_ass[i]), reverse=True)
    kept += rest[: max(0, cfg.keep - len(kept))]
    kept.sort()

    # p0 images (hard negatives) and subject-swapped images for the kept candidates
    p0_imgs, p0_ok = _negatives(gen, oracle, [probe[i] for i in kept], rng, cfg.retries)
    swap_prompts = []
    for i in kept:
        subj = S.prompt_attributes(cands[i][1])["subject"]
        other = TRAIN_SUBJECTS[int(rng.integers(len(TRAIN_SUBJECTS)))]
        while other == subj:
            other = TRAIN_SUBJECTS[int(rng.integers(len(TRAIN_SUBJECTS)))]
        swap_prompts.append(cands[i][1].replace(subj, other))
    swap_imgs = gen(swap_prompts, [int(s) for s in rng.integers(0, 2**31, len(kept))])

    samples, quads = [], []
    p0_rel: dict[str, str] = {}  # sample id -> its p0 image, when verified (it keeps the prompt, fails the instruction)
    for n, i in enumerate(kept, 1):
        instr, p0, rep = cands[i]
        sid = f"train-{n:04d}"
        pos_rel, neg_rel, swap_rel = f"images/{sid}-pos.png", f"images/{sid}-p0.png", f"images/{sid}-swap.png"
        save_image(out / pos_rel, pos_imgs[i])
        save_image(out / neg_rel, p0_imgs[n - 1])
        save_image(out / swap_rel, swap_imgs[n - 1])
        if p0_ok[n - 1]:
            p0_rel[sid] = neg_rel
        samples.append(Sample(id=sid, instruction=instr.text, prompt=p0, category=instr.category, split="train",
                              distribution="id", image=pos_rel, reference_reprompt=rep))
        quads.append(Quadruplet(id=f"q1-{n:04d}", phase=1, instruction="", prompt=p0, category=instr.category,
                                image_chosen=neg_rel, image_rejected=swap_rel, split="train", distribution="id"))
        quads.append(Quadruplet(id=f"q2-{n:04d}", phase=2, instruction=instr.text, prompt=p0,
                                category=instr.category, image_chosen=pos_rel, image_rejected=neg_rel,
                                split="train", distribution="id"))
    wrong_ok: list[bool] = []
    if cfg.wrong_edit_negatives:
        quads, wrong_ok = _with_wrong_edits(gen, oracle, out, samples, quads, cfg)
    plain_ok: list[bool] = []
    if cfg.plain_wins_pairs:
        quads, plain_ok = _with_plain_wins(gen, oracle, out, samples, quads, cfg, p0_rel)
    write_jsonl(out / "samples.jsonl", samples)
    write_jsonl(out / "quadruplets_train.jsonl", sorted(quads, key=lambda q: (q.phase, q.id)))

    # -- test set -----------------------------------------------------------------------------------------------
    tests = []
    for instr in test_instructions(cfg.seed):
        for _ in range(cfg.test_prompts_per_instruction):
            subj = TEST_SUBJECTS[int(rng.integers(len(TEST_SUBJECTS)))]
            p0 = minimal_prompt(rng, subj, set(instr.rule))
            tests.append(Sample(id=f"test-{len(tests) + 1:04d}", instruction=instr.text, prompt=p0,
                                category=instr.category, split="test", distribution=instr.distribution,
                                reference_reprompt=faithful_reprompt(instr, p0, rng)))
    write_jsonl(out / "samples_test.jsonl", tests)
    t_pos, t_pos_ok = _positives(gen, oracle, tests, rng, cfg.retries)
    t_neg, t_neg_ok = _negatives(gen, oracle, tests, rng, cfg.retries)
    tquads = []
    for k, s in enumerate(tests):
        if not (t_pos_ok[k] and t_neg_ok[k]):
            continue
        qid = f"qt-{len(tquads) + 1:04d}"
        pos_rel, neg_rel = f"images/{qid}-pos.png", f"images/{qid}-p0.png"
        save_image(out / pos_rel, t_pos[k])
        save_image(out / neg_rel, t_neg[k])
        tquads.append(Quadruplet(id=qid, phase=2, instruction=s.instruction, prompt=s.prompt, category=s.category,
                                 image_chosen=pos_rel, image_rejected=neg_rel, split="test",
                                 distribution=s.distribution))
    write_jsonl(out / "quadruplets_test.jsonl", tquads)
    shortcut = shortcut_set(gen, oracle, out, tquads, cfg.seed, cfg.retries)

    from seer.world import read_world_meta

    manifest = {
        "config": asdict(cfg),
        "world_fingerprint": read_world_meta(cfg.base or None).get("world_fingerprint"),
        "train_candidates": len(cands),
        "train_feasible": len(feasible),
        "train_feasible_by_category": {c: sum(cands[i][0].category == c for i in feasible) for c in CATEGORIES},
        "train_kept": len(samples),
        "train_hard_negative_verified": int(sum(p0_ok)),
        "quadruplets_train": {"phase1": len(kept), "phase2": sum(q.phase == 2 for q in quads)},
        "train_wrong_edit_negatives_verified": int(sum(wrong_ok)),
        "train_plain_wins_verified": int(sum(plain_ok)),
        "test_samples": len(tests),
        "test_samples_by_distribution": {d: sum(s.distribution == d for s in tests) for d in ("id", "ood")},
        "test_quadruplets": len(tquads),
        "test_quadruplets_dropped_no_positive": int(sum(not ok for ok in t_pos_ok)),
        "test_quadruplets_dropped_no_negative": int(sum(not ok for ok in t_neg_ok)),
        "shortcut_proof_test": shortcut,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def _with_wrong_edits(gen, oracle, out: Path, samples: list[Sample], quads: list[Quadruplet],
                      cfg: BuildConfig) -> tuple[list[Quadruplet], list[bool]]:
    """One more phase-2 pair per training sample: the verified positive vs an image of a rewrite that states a wrong
    value of a targeted attribute (the policy's Type II), verified to keep the subject and fail the instruction. With
    only p0 images as negatives, "the edited image wins" answers every phase-2 pair, and the world's RLVR evaluator
    learned exactly that (``seer world probe evaluator_shortcut``). Measured with them (docs/world_log.md): 200
    phase-2 steps picked the edited image on 69% of the probe's ties (92% without), 400 steps on 89% again, so they
    slow the shortcut but do not remove it. Drawn from their own random stream, so the rest of the data is the same
    with or without them."""
    rng = np.random.default_rng([cfg.seed, 0x5EED])
    prompts = [faithful_reprompt(S.instruction(s.instruction), s.prompt, rng, wrong=True) for s in samples]
    imgs, ok = _retry(gen, oracle, samples, prompts, rng, cfg.retries,
                      lambda a: a.subject_kept and not a.satisfied)
    extra = []
    for s, im, good in zip(samples, imgs, ok, strict=True):
        if not good:
            continue
        rel = f"images/{s.id}-wrong.png"
        save_image(out / rel, im)
        extra.append(Quadruplet(id=f"q2w-{s.id.removeprefix('train-')}", phase=2, instruction=s.instruction,
                                prompt=s.prompt, category=s.category, image_chosen=s.image, image_rejected=rel,
                                split="train", distribution="id"))
    return quads + extra, ok


def _with_plain_wins(gen, oracle, out: Path, samples: list[Sample], quads: list[Quadruplet],
                     cfg: BuildConfig, p0_rel: dict[str, str]) -> tuple[list[Quadruplet], list[bool]]:
    """One more phase-2 pair per training sample whose p0 image was verified (``p0_rel``: sample id -> that image,
    which keeps the prompt and fails the instruction), one the plain image wins: the image of p0 (chosen) vs an image of
    the sample's correct rewrite with the subject swapped for another TRAIN subject, verified to satisfy the
    instruction and to lose the prompt (the judge ranks keeping the prompt first, as the paper's "while preserving
    p0"). In every other phase-2 pair the edited image wins, so "prefer the edited image" answers them all; in these
    it is wrong. Drawn from their own random stream, so the rest of the data is the same with or without them."""
    rng = np.random.default_rng([cfg.seed, 0x91A1])
    prompts = []
    for s in samples:
        subj = S.prompt_attributes(s.prompt)["subject"]
        others = [t for t in TRAIN_SUBJECTS if t != subj]
        other = others[int(rng.integers(len(others)))]
        prompts.append(re.sub(rf"\b{subj}\b", other, s.reference_reprompt or s.prompt))
    imgs, ok = _retry(gen, oracle, samples, prompts, rng, cfg.retries, lambda a: a.satisfied and not a.subject_kept)
    extra = []
    ok = [good and s.id in p0_rel for s, good in zip(samples, ok, strict=True)]
    for s, im, good in zip(samples, imgs, ok, strict=True):
        if not good:
            continue
        rel = f"images/{s.id}-other.png"
        save_image(out / rel, im)
        extra.append(Quadruplet(id=f"q2p-{s.id.removeprefix('train-')}", phase=2, instruction=s.instruction,
                                prompt=s.prompt, category=s.category, image_chosen=p0_rel[s.id], image_rejected=rel,
                                split="train", distribution="id"))
    return quads + extra, ok


def _retry(gen, oracle, samples, prompts, rng, retries, good) -> tuple[list[np.ndarray], list[bool]]:
    """Generate one image per prompt; regenerate (new seed) up to ``retries`` times until ``good(assessment)``."""
    imgs: list = [None] * len(samples)
    ok = [False] * len(samples)
    todo = list(range(len(samples)))
    for _ in range(retries + 1):
        if not todo:
            break
        new = gen([prompts[k] for k in todo], [int(s) for s in rng.integers(0, 2**31, len(todo))])
        ass = oracle.assess_many([samples[k] for k in todo], new)
        left = []
        for k, im, a in zip(todo, new, ass, strict=True):
            if imgs[k] is None or good(a):
                imgs[k] = im
            if good(a):
                ok[k] = True
            else:
                left.append(k)
        todo = left
    return imgs, ok


def _positives(gen, oracle, samples, rng, retries):
    return _retry(gen, oracle, samples, [s.reference_reprompt for s in samples], rng, retries,
                  lambda a: a.satisfied and a.subject_kept)


def _negatives(gen, oracle, samples, rng, retries):
    return _retry(gen, oracle, samples, [s.prompt for s in samples], rng, retries,
                  lambda a: a.subject_kept and not a.satisfied)


def shortcut_set(gen, oracle, out: Path, tquads: list[Quadruplet], seed: int, retries: int) -> dict:
    """The shortcut-proof Table 1 set (``seer.eval.shortcut_proof``), from the test quadruplets only: for each, the
    paper's pair (its positive vs its p0 image) and three more, each image drawn by the base generator and verified by
    the oracle: the positive vs an edit made for another test instruction (same subject, p0 kept, instruction i not
    met), vs an edit with a wrong value of a targeted attribute (p0 kept, not met), and the p0 image vs an edit that
    meets the instruction with another TEST subject. A quadruplet enters only when all three are verified and the
    judge prefers the intended image in all four pairs, so the four kinds have equal counts in every split and
    "prefer the edit" scores exactly 0.5. Drawn from its own random stream and from the images on disk, so the rest
    of the data is the same with or without it, and adding it to an older folder gives the same file."""
    from seer.data import load_image
    from seer.eval.shortcut_proof import KINDS, PAIRS_FILE, pair_id
    from seer.world.render import IMAGE_SIZE

    rng = np.random.default_rng([seed, 0x5C07])
    quads = [q for q in tquads if q.phase == 2 and q.split == "test"]
    samples = [Sample(id=q.id, instruction=q.instruction, prompt=q.prompt, category=q.category, split="test",
                      distribution=q.distribution) for q in quads]
    instrs = [S.instruction(q.instruction) for q in quads]
    pool = list(dict.fromkeys(instrs))  # the test instructions, in order, once each

    def other_edit(k: int) -> str:
        others = [j for j in pool if j.rule != instrs[k].rule]
        return faithful_reprompt(others[int(rng.integers(len(others)))], quads[k].prompt, rng)

    def wrong_edit(k: int) -> str:
        return faithful_reprompt(instrs[k], quads[k].prompt, rng, wrong=True)

    def lost_edit(k: int) -> str:
        subj = S.prompt_attributes(quads[k].prompt)["subject"]
        others = [t for t in TEST_SUBJECTS if t != subj]
        p0 = re.sub(rf"\b{subj}\b", others[int(rng.integers(len(others)))], quads[k].prompt)
        return faithful_reprompt(instrs[k], p0, rng)

    kept_p0 = lambda a: a.subject_kept and not a.satisfied  # noqa: E731
    made = {name: _retry_fresh(gen, oracle, samples, fn, rng, retries, good)
            for name, fn, good in (("other", other_edit, kept_p0), ("wrong", wrong_edit, kept_p0),
                                   ("lost", lost_edit, lambda a: a.satisfied and not a.subject_kept))}
    size = (IMAGE_SIZE, IMAGE_SIZE)
    pairs: list[Quadruplet] = []
    undecided = 0
    for k, (q, smp) in enumerate(zip(quads, samples, strict=True)):
        if not all(made[name][1][k] for name in made):
            continue
        pos, p0 = (load_image(out / rel, size) for rel in (q.image_chosen, q.image_rejected))
        imgs = {"pos": pos, "p0": p0, **{name: made[name][0][k] for name in made}}
        spec = dict(zip(KINDS, (("pos", "p0"), ("pos", "other"), ("pos", "wrong"), ("p0", "lost")), strict=True))
        if any(oracle.compare(smp, imgs[a], imgs[b]) != 1.0 for a, b in spec.values()):
            undecided += 1
            continue
        rel = {"pos": q.image_chosen, "p0": q.image_rejected}
        for name in made:
            rel[name] = f"images/sp-{q.id}-{name}.png"
            save_image(out / rel[name], imgs[name])
        pairs += [Quadruplet(id=pair_id(kind, q.id), phase=2, instruction=q.instruction, prompt=q.prompt,
                             category=q.category, image_chosen=rel[a], image_rejected=rel[b], split="test",
                             distribution=q.distribution) for kind, (a, b) in spec.items()]
    write_jsonl(out / PAIRS_FILE, pairs)
    cases = [q for q in quads if any(p.id == pair_id(KINDS[0], q.id) for p in pairs)]
    return {"test_quadruplets": len(quads), "cases": len(cases), "pairs": len(pairs),
            "dropped_not_verified": {name: int(sum(not ok for ok in made[name][1])) for name in made},
            "dropped_judge_undecided": undecided,
            "cases_by_split": {f"{d}_{h}": sum(q.distribution == d and q.difficulty == h for q in cases)
                               for d in ("id", "ood") for h in ("simple", "hard")}}


def add_shortcut_set(cfg: BuildConfig) -> dict:
    """``seer world build-data --shortcut-set-only``: add the shortcut-proof set to an existing build-data folder
    (one from before it existed) without touching anything else in it; the same file a full build writes."""
    from seer.cli import UserError
    from seer.data import load_quadruplets
    from seer.world import load_base

    out = Path(cfg.out)
    if not _is_build_output(out):
        raise UserError(f"{out / 'manifest.json'}: not a `seer world build-data` output; --shortcut-set-only adds "
                        "the shortcut-proof set to one")
    tquads = load_quadruplets(out / "quadruplets_test.jsonl")
    backend, oracle, _ = load_base(cfg.base or None)
    return shortcut_set(_Generator(backend), oracle, out, tquads, cfg.seed, cfg.retries)


def _retry_fresh(gen, oracle, samples, make_prompt, rng, retries, good) -> tuple[list[np.ndarray], list[bool]]:
    """Like :func:`_retry`, but each try draws a new prompt (``make_prompt(k)``: another instruction, another wrong
    value, another subject), since a prompt whose image cannot pass rarely passes on another seed."""
    imgs: list = [None] * len(samples)
    ok = [False] * len(samples)
    todo = list(range(len(samples)))
    for _ in range(retries + 1):
        if not todo:
            break
        prompts = [make_prompt(k) for k in todo]
        new = gen(prompts, [int(s) for s in rng.integers(0, 2**31, len(todo))])
        ass = oracle.assess_many([samples[k] for k in todo], new)
        left = []
        for k, im, a in zip(todo, new, ass, strict=True):
            if imgs[k] is None or good(a):
                imgs[k] = im
            if good(a):
                ok[k] = True
            else:
                left.append(k)
        todo = left
    return imgs, ok
