"""``seer world pretrain``: fit the codebook, train the oracle, and pretrain the tiny UMM on the world's corpus.

The corpus and why it builds the cognitive gap in are documented in :mod:`seer.world.corpus`. Training choices:

* a Llama made by ``TokenUMMBackend.create`` over the corpus' words and the codebook's 1024 image codes: hidden 192,
  4 layers (~2.3M parameters). The design asked for hidden 256 (~3.9M); measured here, one fp32 step of 64 sequences
  took ~2.8 s at hidden 256 vs ~1.7 s at 192 on one contended core, and bf16 autocast was 3x SLOWER than fp32 (this
  CPU has AVX512 but neither AVX512-BF16 nor AMX), so the default is fp32, hidden 192, both cores;
* AdamW (β = 0.9, 0.95, weight decay 0.01), lr 7e-4 with linear warm-up and a cosine decay, batch 64, clip 1.0.
  The first shipped base used lr 2e-3 and never learned to read the subject or its colour off an image (4% and 22%,
  chance level, after 50 min) while it did learn background and style, which fill most of the image: a probe that
  trained only "what is it ?" / "what colour is it ?" stayed at chance for 400 steps at 2e-3, and read both at
  ~100% after 400 steps at 7e-4 with warm-up (the attention that finds the few subject cells never formed at 2e-3);
* each batch holds one corpus kind, so sequences in a batch have similar lengths and little padding: five warm
  phases of one kind each (``corpus.WARM_KINDS``: subject/colour questions for ``warm_steps``, material/accessory
  questions for ``detail_steps``, colour/material captions → images for ``paint_steps``; why, see there; then
  ``follow_steps`` of the paths prior's completions behind a text-only context (``corpus.FOLLOW_CONTEXT``: the verdict
  learns to name the image its trace passed, which it did not learn behind images) and ``evaluator_steps`` of the
  evaluator prior's own kind, which formed the two-image reading in a fine-tune), then
  kinds drawn by ``corpus.MIX`` (with ``distract`` > 0, that share of its "generate" batches become
  "generate_distracted": a clause of words the generator cannot draw before the caption); every batch is fresh (an
  endless stream of renders: no epoch, no overfitting to a fixed set);
* the schedule's progress is ``max(step / steps, elapsed / budget)``, so a run cut by its wall-time budget still ends
  with a fully decayed learning rate;
* the backend freezes the image-token rows (ϕ) with gradient hooks for RL; pretraining trains a hook-free copy of the
  model and wraps the result in a new backend at the end, which snapshots the trained ϕ;
* a checkpoint (model, optimizer, step, elapsed time, RNG state) is written atomically every ``checkpoint_every``
  steps; ``--resume`` continues from it.

The shipped base (``seer/world/assets/base``, since 2026-12-02) is seed 0 of these defaults, run as ``seer world
pretrain --out DIR --resume`` with the earlier base's codebook and oracle (also seed 0) copied into DIR: 3600 steps in
37.3 min of training loop on this machine's 2 cores (``world.json``, ``pretrain_log.jsonl``). Its schedule was bound by
the step count (step / steps ≥ elapsed / budget at every logged step), though narrowly (0.003 of the schedule at the
closest), so on a slower machine the wall clock would shape it. A rerun from an empty directory (``--oracle-steps 0``)
fitted the same codebook and logged the same losses and learning rates for the first 575 steps (then stopped). The base
it replaced (2026-11-21 to 2026-12-02; README "The world's base today") ran 1200 steps under the first schedule tried
(``--steps 2400 --minutes 30``), then ``--resume --steps 3600 --minutes 45``: 3375 steps, 45.0 min, its schedule bound
by the wall clock. On the same ``seer world report`` the new one generates colour 16% -> 49%, material 19% -> 33% and
the subject 82% -> 86%. In the trial notes below, "the shipped base" is that earlier base.

A candidate base, not shipped (2026-12-02, docs/world_log.md): these defaults with ``--paint-steps 300``
(3600 steps, 34.9 min) generate material 33% -> 60% and colour 49% -> 55% with the subject kept (86% -> 84%), read
material in captions 55% -> 97%, and raise the share of test instructions a correct rewrite satisfies 0.40 -> 0.55, but
read the subject less well (captions 93% -> 81%). A full ``seer reproduce`` on it (40.1 min) gave SEER-Eval 0.91 but a
zero-shot evaluator of 0.62, above the issue's 0.35-0.60. Not shipped: it trades the subject read (met) for the
material read (missed), and the subject is what prompt consistency and curriculum phase 1 rest on.

A trial base that was not shipped (2026-11-21): ``--detail-steps 300 --paint-steps 450 --evaluator-prior judged``,
45 min, then ``--resume --steps 4400 --minutes 60`` (4277 steps, 60 min). Against the shipped base (``seer world
report``): generation of colour 16% → 47% and material 19% → 80%, material read 36% → 99%, concrete QA 0.75 → 0.86,
but generation of the subject 82% → 40%, abstract QA 0.73 → 0.61, and the base policy's reprompts satisfied 2.5% of
the test instructions (6.6%). Its evaluator's traces named the prompt's subject for 8% of the chosen phase-1
images and 5% of the subject-swapped ones (``evaluator_phase1_train``), so RLVR phase 1 stayed at chance (0.47-0.52
over 70 steps). Hence the options above default to the shipped recipe.

The balanced evaluator prior (``--evaluator-prior balanced``) was tried as a fine-tune of the shipped base, not yet as
a base from scratch: 300 steps of its batches alone (lr 3e-4, 11.6 min) took ``evaluator_phase1_train`` from
captions naming the prompt's subject for 76% of the chosen and 78% of the swapped images to 92% and 5% (88% of the
traces tell the images apart, was 18%), but the verdict picked the image its caption matched 51% of the time and
RLVR phase 1 from it stayed at chance (10-step means 0.46-0.52 over 90 steps).

A fourth trial (2026-11-22, docs/world_log.md): ``--follow-steps 100 --evaluator-prior paths
--evaluator-steps 300``, 52 min then resumed to 70 min. Its sampled verdicts followed its own trace 0.97-0.98 of the
time (the shipped base's traces judge nothing), and at 70 min it read material 99% and answered concrete questions
0.95, but the checks in its traces were at chance (0.51-0.54 right where one image passes), subject generation fell
82% -> 67% and the base policy's reprompts satisfied 2.3% of the test instructions (6.6%); RLVR from it learned the
"prefer the edited image" shortcut all the same. Not shipped.

Token orders (2026-11-22, docs/world_log.md):
every subject cell of a render is one patch, so only the first subject token
depends on the caption's colour and material words. ``--image-order centre`` (rings out from the centre) with
``--uncond 0.1``, 45 min: generation of colour 17% -> 66% (88% at guidance 2) but of the subject 74% -> 12%;
``--image-order centre_first``: colour 21%, subject 43%. Neither shipped; both off by default.

``--novel-weight W`` (2026-12-02, docs/world_log.md, "Weighting the tokens that carry the words"):
the loss of each image token
whose code is new in its image is weighted by W (:func:`novel_code_weights`), so the first subject token, the only one
that depends on the colour and material words, weighs more. From scratch, 3600 steps in ~41 min: W = 16 generation of
colour 16% -> 68% and material 19% -> 59% (``bench/first_subject_token.py``: the first subject code has the stated
colour 89% of the time under teacher forcing, shipped 9%), but of the subject 82% -> 21% (10% with ``--uncond 0.1``; W =
4 with it: 18%). Off by default (W = 1 is the plain mean). The control, today's defaults from scratch (the shipped base
since 2026-12-02), generates the subject 86%, colour 49% and material 33%, so the subject loss is the weight's; with
``--minutes 28`` (2934 steps) the defaults generated the subject 40%, colour 22%, material 14%.

Output directory: ``umm/`` (the backend, weights stored in bf16), ``oracle.safetensors`` + ``oracle.json``,
``world.json`` (config, versions, wall times, world fingerprint).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from seer.io import atomic_write_json
from seer.run import set_threads

WORLD_FILE = "world.json"
UMM_DIR = "umm"


@dataclass
class PretrainConfig:
    """Configuration of ``seer world pretrain``."""

    out: str = "runs/world-base"  # output directory
    seed: int = 0  # seeds the codebook, oracle, model init and corpus stream
    steps: int = 3600  # optimizer steps (upper bound; the wall-time budget may stop earlier)
    minutes: float = 45.0  # wall-time budget for the UMM pretraining loop (minutes)
    batch: int = 64  # sequences per step
    lr: float = 7e-4  # peak learning rate (2e-3 never formed the attention that reads the subject: see below)
    warmup: int = 100  # linear warm-up steps
    warm_steps: int = 0  # warm phase 1: "read" batches (subject/colour questions; corpus.WARM_KINDS); v1 recipe: 450
    detail_steps: int = 0  # warm phase 2: "read_detail" batches (material/accessory questions); trial: 300
    paint_steps: int = 0  # warm phase 3: "paint" batches (captions stating colour/material → image); trial: 450
    follow_steps: int = 0  # warm phase 4: "follow" batches (the verdict names the image its trace passed)
    evaluator_steps: int = 0  # warm phase 5: batches of the evaluator prior's kind (forms the pairwise reading)
    evaluator_prior: str = "checked"  # corpus.EVALUATOR_PRIORS: "checked" (v2), "captions" (the v1 base), "judged", ...
    distract: float = 0.0  # share of the main mix's "generate" batches that are "generate_distracted" (shipped: 0)
    uncond: float = 0.0  # share of the main mix's "generate" batches with the prompt dropped (for image_cfg_scale > 1)
    image_order: str = "raster"  # image token order (seer.backends.image_tokenizer.ORDERS)
    image_cfg_scale: float = 1.0  # the saved backend's classifier-free guidance for images (1 = none; needs uncond)
    novel_weight: float = 1.0  # loss weight of image tokens whose code is new in their image (1 = a plain mean)
    hidden: int = 192  # transformer width
    layers: int = 4  # transformer layers
    heads: int = 4  # attention heads
    bf16: bool = False  # bf16 autocast (3x SLOWER than fp32 on CPUs without AVX512-BF16/AMX, e.g. this one)
    oracle_steps: int = 1500  # oracle training steps (0 = skip: train it separately with `seer world oracle`)
    codebook_images: int = 3000  # renders the k-means codebook is fitted on (plus an atlas of every patch)
    checkpoint_every: int = 200  # steps between atomic checkpoints
    resume: bool = False  # continue from <out>/ckpt.pt
    threads: int = 2  # torch threads (0 = torch default; use 1 when another heavy job shares the 2 cores)
    # world v2 (issue 20): understanding through a frozen vision encoder and a trained aligner; generation's code rows
    # built from the encoder's stem feature of each code's centroid (see PretrainNet). False = the v1 recipe.
    vision: bool = True
    encoder_steps: int = 2000  # vision encoder training steps (seer.world.vision.EncoderConfig)
    encoder_pool: int = 12000  # renders the vision encoder trains on

    def __post_init__(self) -> None:
        from seer.backends.image_tokenizer import ORDERS
        from seer.world.corpus import EVALUATOR_PRIORS

        if self.evaluator_prior not in EVALUATOR_PRIORS:
            raise ValueError(f"evaluator_prior: expected one of {', '.join(map(repr, EVALUATOR_PRIORS))}, "
                             f"got {self.evaluator_prior!r}")
        if not 0.0 <= self.distract <= 1.0:
            raise ValueError(f"distract: expected a share in [0, 1], got {self.distract}")
        if not 0.0 <= self.uncond < 1.0 or self.distract + self.uncond > 1.0:
            raise ValueError(f"uncond: expected a share in [0, 1) with distract + uncond <= 1, got {self.uncond} "
                             f"(distract {self.distract})")
        if self.image_cfg_scale < 1.0:
            raise ValueError(f"image_cfg_scale: expected >= 1 (1 = no guidance), got {self.image_cfg_scale}")
        if not self.novel_weight > 0:
            raise ValueError(f"novel_weight: expected a loss weight > 0 (1 = a plain mean), got {self.novel_weight}")
        if self.image_order not in ORDERS:
            raise ValueError(f"image_order: expected one of {', '.join(map(repr, ORDERS))}, got {self.image_order!r}")
        for name in ("warm_steps", "detail_steps", "paint_steps", "follow_steps", "evaluator_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a number of steps >= 0, got {getattr(self, name)}")


def world_fingerprint() -> str:
    """A hash of the world's attribute values, concepts and instructions: a shipped base made for another world is
    detected on load."""
    import hashlib

    from seer.world import semantics as S
    from seer.world.render import ATTRIBUTES

    blob = json.dumps([ATTRIBUTES, [(c.name, c.rule) for c in S.CONCEPTS.values()],
                       [(i.text, i.category, i.distribution, i.target) for i in S.INSTRUCTIONS.values()]])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lr_at(progress: float, step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def novel_code_weights(labels: torch.Tensor, lo: int, num_codes: int, weight: float) -> torch.Tensor:
    """Per-position loss weights (B, S): ``weight`` where the label is an image code that has not appeared earlier in
    the same sequence's labels, 1 elsewhere (0 where the label is ignored). In a world render every subject cell is
    one patch, so only the first subject code carries the caption's colour and material; the rest copy it."""
    valid = labels != -100
    is_code = (labels >= lo) & (labels < lo + num_codes)
    same = labels[:, :, None] == labels[:, None, :]  # (B, S, S): position i's code equals position j's
    earlier = torch.ones(labels.shape[1], labels.shape[1], dtype=torch.bool).tril(-1)
    seen = (same & earlier & is_code[:, None, :]).any(-1)
    w = torch.where(is_code & ~seen, torch.full(labels.shape, float(weight)), torch.ones(labels.shape))
    return w * valid


def weighted_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy with per-position ``weights`` (aligned with ``labels``, unshifted as for
    ``LlamaForCausalLM``), summed and divided by the number of scored positions: weights of 1 give the model's own
    mean loss."""
    targets, w = labels[:, 1:], weights[:, 1:]
    flat = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # (B*S, V): 3x faster on CPU than (B, V, S)
    ce = torch.nn.functional.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="none")
    return (ce * w.reshape(-1)).sum() / (targets != -100).sum().clamp(min=1)


class PretrainNet(torch.nn.Module):
    """What world v2 pretrains: the language model, the vision input (frozen encoder, trained aligner) and, with
    ``code_feats``, a factorised parametrisation of the image codes' embedding and output rows:

        row_k = W · f_k + r_k      (f_k: the frozen encoder stem's feature of code k's centroid, standardised)

    so a caption word's gradient moves every code that shares its colour, material or style (in v1 each subject cell
    is one code and only the first subject token carried the caption's colour; generation read colour 49%, material
    33%). The residuals r_k start at zero. :meth:`materialise` writes the rows into the language model, which then is a
    plain ``LlamaForCausalLM`` whose code rows are ϕ; the factorisation exists only in pretraining.
    """

    def __init__(self, llm, vision, span: tuple[int, ...], code_feats: torch.Tensor | None):
        super().__init__()
        self.llm, self.vision, self.span = llm, vision, span
        self.factorised = code_feats is not None
        if self.factorised:
            f = (code_feats - code_feats.mean(0)) / (code_feats.std(0) + 1e-6)
            self.register_buffer("code_feats", f.float())
            d, H, K = f.shape[1], llm.config.hidden_size, f.shape[0]
            self.code_in = torch.nn.Linear(d, H)
            self.code_out = torch.nn.Linear(d, H, bias=False)
            for lin in (self.code_in, self.code_out):  # rows on the scale of the text rows (std 0.02)
                torch.nn.init.normal_(lin.weight, std=0.02 / math.sqrt(d))
            torch.nn.init.zeros_(self.code_in.bias)
            self.code_in_res = torch.nn.Parameter(torch.zeros(K, H))
            self.code_out_res = torch.nn.Parameter(torch.zeros(K, H))

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full (V, H) input embedding and output matrices."""
        emb, head = self.llm.get_input_embeddings().weight, self.llm.get_output_embeddings().weight
        if not self.factorised:
            return emb, head
        lo, K = self.span[0], self.span[1]
        rows_in = self.code_in(self.code_feats) + self.code_in_res  # (K, H)
        rows_out = self.code_out(self.code_feats) + self.code_out_res
        return (torch.cat([emb[:lo], rows_in, emb[lo + K:]]), torch.cat([head[:lo], rows_out, head[lo + K:]]))

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:
        """The mean next-token loss over the labelled positions (logits computed only there)."""
        emb_w, head_w = self.weights()
        emb = torch.nn.functional.embedding(input_ids, emb_w)
        if self.vision is not None:
            emb = self.vision.embed(input_ids, emb, self.span)
        h = self.llm.model(inputs_embeds=emb, attention_mask=attention_mask).last_hidden_state  # (B, S, H)
        targets = labels[:, 1:]
        keep = targets != -100
        logits = h[:, :-1][keep] @ head_w.T  # (N, V): only where a label is scored
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])

    @torch.no_grad()
    def materialise(self) -> None:
        if self.factorised:
            emb_w, head_w = self.weights()
            lo, K = self.span[0], self.span[1]
            self.llm.get_input_embeddings().weight[lo:lo + K] = emb_w[lo:lo + K]
            self.llm.get_output_embeddings().weight[lo:lo + K] = head_w[lo:lo + K]


def _save_ckpt(path: Path, model, opt, step: int, elapsed: float, rng: np.random.Generator) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def pretrain(cfg: PretrainConfig) -> dict:
    from tqdm import tqdm
    from transformers import LlamaForCausalLM

    from seer.backends.image_tokenizer import PatchCodebook
    from seer.backends.text_tokenizer import collect_words
    from seer.backends.token_umm import TokenUMMBackend
    from seer.world import corpus as C
    from seer.world.codebook import LookupCodebook, fit_codebook
    from seer.world.oracle import OracleJudge, train_oracle

    set_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times: dict[str, float] = {}

    cb_dir = out / "codebook"
    ckpt = out / "ckpt.pt"
    if cfg.resume and (cb_dir / PatchCodebook.FILE).is_file():
        codebook = PatchCodebook.load(cb_dir)
        if codebook.order != cfg.image_order:
            if ckpt.is_file():
                raise ValueError(f"{cb_dir}: its image tokens are in {codebook.order!r} order and {ckpt} was trained "
                                 f"on them, but image_order is {cfg.image_order!r}; pass --image-order "
                                 f"{codebook.order} or start a new --out")
            codebook = codebook.with_order(cfg.image_order)  # the same codes, another order: before any training
            codebook.save(cb_dir)
    else:
        codebook = fit_codebook(cfg.seed, n_images=cfg.codebook_images, order=cfg.image_order)
        codebook.save(cb_dir)
    times["codebook_s"] = time.time() - t0

    t1 = time.time()
    if cfg.oracle_steps > 0 and not (cfg.resume and (out / "oracle.safetensors").is_file()):
        OracleJudge(train_oracle(codebook, seed=cfg.seed, steps=cfg.oracle_steps)).save(out)
    times["oracle_s"] = time.time() - t1

    encoder = None
    if cfg.vision:
        from seer.world.vision import ENCODER_FILE, EncoderConfig, VisionEncoder, probe_accuracy, train_encoder

        t2 = time.time()
        enc_dir = out / "vision"
        if cfg.resume and (enc_dir / ENCODER_FILE).is_file():
            encoder = VisionEncoder.load(enc_dir)
        else:
            encoder = train_encoder(EncoderConfig(steps=cfg.encoder_steps, pool=cfg.encoder_pool, seed=cfg.seed))
            encoder.save(enc_dir)
            atomic_write_json(enc_dir / "probe.json", probe_accuracy(encoder))
        times["vision_encoder_s"] = time.time() - t2

    words = collect_words(C.vocabulary_texts())
    # backend0 encodes the corpus (its LookupCodebook is the same codebook with a fast exact path)
    backend0 = TokenUMMBackend.create(words, LookupCodebook(codebook), hidden=cfg.hidden, layers=cfg.layers,
                                      heads=cfg.heads, max_position=512, seed=cfg.seed,
                                      dtype="bfloat16" if cfg.bf16 else "float32")
    torch.manual_seed(cfg.seed)
    llm = LlamaForCausalLM(backend0.model.config)  # hook-free: pretraining trains ϕ too
    llm.load_state_dict(backend0.model.state_dict())
    model = llm
    if cfg.vision:
        from seer.backends.token_umm import VisionInput
        from seer.world.vision import Aligner, code_features

        span = (backend0.image_start, backend0.num_image_codes, codebook.tokens_per_image, backend0.boi_id,
                backend0.eoi_id, backend0.gen_id)
        vision = VisionInput(encoder, Aligner(encoder.cfg.dim, cfg.hidden), codebook.centroids, codebook._perm)
        model = PretrainNet(llm, vision, span, code_features(encoder, codebook.centroids))
    model.train()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # not the frozen encoder
    decay = [p for n, p in trained if p.ndim >= 2]
    no_decay = [p for n, p in trained if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(cfg.seed + 1)
    step, elapsed_before = 0, 0.0
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed_before = int(state["step"]), float(state["elapsed"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ckpt} at step {step} ({elapsed_before / 60:.1f} min done)")

    kinds = list(C.KINDS)
    mix = dict(C.MIX_V2 if cfg.vision else C.MIX)
    evaluator_kind = C.EVALUATOR_PRIORS[cfg.evaluator_prior]
    mix[evaluator_kind] = mix.pop("evaluate_checked" if cfg.vision else "evaluate")
    share = mix["generate"]
    if cfg.distract:
        mix["generate_distracted"] = share * cfg.distract
    if cfg.uncond:
        mix["generate_uncond"] = share * cfg.uncond
    mix["generate"] = share * (1 - cfg.distract - cfg.uncond)
    probs = np.array([mix.get(k, 0.0) for k in kinds])
    probs = probs / probs.sum()
    warm_ends = np.cumsum([cfg.warm_steps, cfg.detail_steps, cfg.paint_steps, cfg.follow_steps, cfg.evaluator_steps])
    warm = [np.array([float(k == w) for k in kinds]) for w in (*C.WARM_KINDS, "follow", evaluator_kind)]
    budget = cfg.minutes * 60
    t_loop = time.time()
    losses: dict[str, list[float]] = {k: [] for k in kinds}
    log_path = out / "pretrain_log.jsonl"
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", mininterval=10)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.bf16 else torch.autocast("cpu", enabled=False)
    n_seq = 0
    while step < cfg.steps:
        elapsed = elapsed_before + time.time() - t_loop
        if elapsed > budget:
            print(f"wall-time budget of {cfg.minutes} min reached at step {step}")
            break
        progress = max(step / cfg.steps, elapsed / budget)
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, step, cfg)
        phase = int(np.searchsorted(warm_ends, step, side="right"))  # 0-4: warm phases; 5: the main mix
        # a warm phase draws its one kind through rng.choice too, so the stream matches the shipped base's run
        kind = kinds[int(rng.choice(len(kinds), p=warm[phase] if phase < len(warm) else probs))]
        batch = backend0.collate([C.encode(backend0, C.make_example(kind, rng)) for _ in range(cfg.batch)])
        with autocast:
            if cfg.vision:
                loss = model(**batch)
            elif cfg.novel_weight == 1.0:
                loss = model(**batch).loss
            else:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                weights = novel_code_weights(batch["labels"], backend0.image_start, backend0.num_image_codes,
                                             cfg.novel_weight)
                loss = weighted_lm_loss(logits, batch["labels"], weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        n_seq += cfg.batch
        losses[kind].append(loss.item())
        bar.update(1)
        if step % 25 == 0:
            recent = {k: round(float(np.mean(v[-5:])), 3) for k, v in losses.items() if v}
            bar.set_postfix(loss=f"{losses[kind][-1]:.3f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
            with log_path.open("a") as f:
                f.write(json.dumps({"step": step, "elapsed_s": round(elapsed, 1), "lr": opt.param_groups[0]["lr"],
                                    "loss": recent}) + "\n")
        if step % cfg.checkpoint_every == 0:
            _save_ckpt(ckpt, model, opt, step, elapsed_before + time.time() - t_loop, rng)
    bar.close()
    loop_s = elapsed_before + time.time() - t_loop
    _save_ckpt(ckpt, model, opt, step, loop_s, rng)

    model.eval()
    if cfg.vision:
        model.materialise()
    backend = TokenUMMBackend(llm, backend0.tokenizer, codebook, dtype="bfloat16" if cfg.bf16 else "float32",
                              image_cfg_scale=cfg.image_cfg_scale, vision=model.vision if cfg.vision else None)
    save_backend_compact(backend, out / UMM_DIR)
    times["pretrain_loop_s"] = loop_s
    times["total_s"] = time.time() - t0
    import transformers

    meta = {
        "config": asdict(cfg),
        "steps_done": step,
        "sequences_seen_this_run": n_seq,
        "final_loss_by_kind": {k: round(float(np.mean(v[-10:])), 4) for k, v in losses.items() if v},
        "times": {k: round(v, 1) for k, v in times.items()},
        "world_fingerprint": world_fingerprint(),
        "vocab_size": len(backend0.tokenizer),
        "params": sum(p.numel() for p in llm.parameters()),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    atomic_write_json(out / WORLD_FILE, meta)
    return meta


def save_backend_compact(backend, path: Path) -> None:
    """Save the backend with its model weights in bf16 (half the size; loading casts back to fp32)."""
    import copy

    model = backend.model
    backend.model = copy.deepcopy(model).to(torch.bfloat16)
    try:
        backend.save(path)
    finally:
        backend.model = model


def train_oracle_into(out: str | Path, seed: int = 0, steps: int = 1500, threads: int = 1) -> dict:
    """Train the oracle on the codebook in ``out/codebook`` (fitted here if missing) and save it into ``out``."""
    from seer.backends.image_tokenizer import PatchCodebook
    from seer.world.codebook import fit_codebook
    from seer.world.oracle import OracleJudge, oracle_accuracy, train_oracle

    set_threads(threads)
    out = Path(out)
    cb_dir = out / "codebook"
    if (cb_dir / PatchCodebook.FILE).is_file():
        codebook = PatchCodebook.load(cb_dir)
    else:
        codebook = fit_codebook(seed)
        codebook.save(cb_dir)
    t0 = time.time()
    judge = OracleJudge(train_oracle(codebook, seed=seed, steps=steps))
    judge.save(out)
    res = {"oracle_train_s": round(time.time() - t0, 1), "accuracy": oracle_accuracy(judge, codebook, n=2000)}
    atomic_write_json(out / "oracle_metrics.json", res)
    return res
