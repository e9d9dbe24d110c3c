"""The pretraining corpus of the world's tiny UMM. It builds the paper's cognitive gap in on purpose:

1. **Generation** (caption → image tokens): concrete captions only, each attribute mentioned with probability 1/2
   (unmentioned material/style/accessory default; unmentioned colour/background/size are drawn at random), with
   varied phrasings and 0–6 neutral filler words around the caption so the generator learns to read only caption
   words. No abstract word and no instruction word ever appears on this side (``FILLERS`` excludes every word of
   every registered instruction), so the generator cannot draw a Hard instruction from a naive ``a ⊕ p0``. The aim
   was that it renders the prompt alone (Type III); the shipped base instead draws patchwork noise for most
   ``a ⊕ p0`` (words it never saw here throw its image tokens off). ``generate_distracted`` (a pretraining option,
   ``PretrainConfig.distract``) puts a clause of non-caption words, instruction words among them, before some
   captions, so the generator learns to pass over them without learning what they mean.
2. **Understanding**: image → caption; image + question → answer for every concrete attribute and for every concept,
   ID and OOD ("<image> does it look scary yet cute ?" → "yes"/"no", balanced), and concept definitions in words
   ("what makes something look scary yet cute ?" → "night , pink and small"): the model *knows* what concepts look
   like, in understanding.
3. **A weak reprompting prior** in exactly the RLMT format (``DEFAULT_TEMPLATES.reprompt_text`` →
   ``<think> … </think> <reprompt> … </reprompt>``) over ID and OOD instructions, mixing four paths, each opened by
   its own reasoning words: faithful ("the instruction asks for …", right 90% of the time when taken), Type I lazy
   concatenation ("just add the instruction …": p0 + the instruction's words), Type II misinterpretation ("the
   instruction suggests …": wrong concrete values), Type III omission ("the prompt is enough …": p0). The faithful
   path is taken ~30% of the time, so the base policy has latent, unreliable ability that RL can make the rule.
4. **A weak pairwise-evaluation prior** in exactly the RLVR format (``DEFAULT_TEMPLATES.evaluator_text`` with two
   images → ``<think> image A shows … image B shows … </think> <answer> X </answer>``): the reasoning describes both
   images correctly (latent understanding), the verdict is a coin flip (uninformative), so zero-shot pairwise
   accuracy is near chance, as the paper reports for Harmon. Phase-1 contexts (instruction "none", p0 image vs an image
   with the subject swapped) and phase-2 contexts (a satisfying image vs the p0 image) both appear. The kind
   "evaluate_judged" (``PretrainConfig.evaluator_prior = "judged"``, not the shipped base's) also judges each image
   ("… . prompt yes ." / "… . instruction no .") and names the passing image ``VERDICT_FOLLOWS`` of the time. The
   kind "evaluate_balanced" (``evaluator_prior = "balanced"``) judges too, and shows the prompt's subject in each
   image with probability 1/2, on its own: in the two priors above 80% of the captions name the prompt's subject, and
   the shipped base learned to copy it from the prompt instead of reading it off the image (see pretrain.py). The
   kind "evaluate_paths" (``evaluator_prior = "paths"``) first names what its trace checks, the instruction on a
   minority of phase-2 traces, and its verdict always follows the checks (:func:`evaluate_example`).

Each example is ``(kind, payload)``; :func:`encode` turns it into ``(input_ids, loss_mask)`` with the backend's own
``encode_text_example`` / ``encode_image_example``, so pretraining uses exactly the formats RL and evaluation use.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from seer.backends.base import Context
from seer.prompts import DEFAULT_TEMPLATES, NO_INSTRUCTION
from seer.world import semantics as S
from seer.world.render import ATTRIBUTES, SUBJECTS, Spec, render

_FILLER_CANDIDATES = (
    "please draw me image picture photo showing here i want see simple nice quick create some really just one now "
    "good generate depict illustration scene featuring there we need my our for you can would be great thanks okay "
    "maybe hmm well could kindly"
).split()
INSTRUCTION_WORDS = frozenset(w for t in S.INSTRUCTIONS for w in S.tokenize(t))
FILLERS = tuple(w for w in _FILLER_CANDIDATES if w not in INSTRUCTION_WORDS and w not in S.CAPTION_WORDS)
# "generate_distracted" (off in the shipped base): a clause of these words, unrelated to the image, before the caption.
# Instruction words appear here only as noise, so the generator learns to pass over words it cannot draw (a naive
# a ⊕ p0 renders the prompt, Type III) and never what they mean. Without it, the shipped base drew patchwork noise for
# a ⊕ p0: words it never saw on this side threw its image tokens off.
DISTRACTOR_WORDS = tuple(sorted((INSTRUCTION_WORDS | set(FILLERS)) - S.CAPTION_WORDS - set(S.SUBJECTS)
                                - S.FUNCTION_WORDS - {"."}))
CAPTION_PREFIXES = tuple(p for p in ("", "", "", "a picture of", "an image of", "draw", "please draw", "a photo of",
                                      "generate", "depict", "an illustration of", "a scene featuring")
                         if not set(p.split()) & INSTRUCTION_WORDS - {"a"})

KINDS = ("generate", "describe", "ask", "read", "concept_ask", "define", "reprompt", "evaluate", "read_detail", "paint",
         "evaluate_judged", "evaluate_balanced", "evaluate_paths", "generate_distracted", "follow", "generate_uncond",
         "judge", "evaluate_checked")
MIX = {"generate": 0.40, "describe": 0.10, "ask": 0.14, "concept_ask": 0.12, "define": 0.03, "reprompt": 0.14,
       "evaluate": 0.07}

# World v2 (issue 20): the base reads images through a vision encoder, so no warm phase is needed to form the attention
# that finds the subject; about a tenth of the mix is the single-image instruction judgement ("judge"), and the pairwise
# prior is "evaluate_checked" (each image read and checked, the verdict a coin flip).
MIX_V2 = {"generate": 0.40, "describe": 0.08, "ask": 0.10, "concept_ask": 0.10, "define": 0.03, "reprompt": 0.12,
          "judge": 0.10, "evaluate_checked": 0.07}
JUDGE_QUESTION = "does the image follow the instruction ?"

# Warm phases, in this order, before MIX: each batch is one kind, the kind of the phase. Each forms one attention
# pattern that a mixed corpus did not form on its own (measured on this machine, lr 7e-4 / 5e-4, batch 64):
# * "read" (``PretrainConfig.warm_steps``): "what is it ?" / "what colour is it ?". Reading the subject needs attention
#   that finds the few subject cells among the background cells; in a mixed corpus it had not formed after 800 steps
#   (lr 7e-4) or 2500 steps (lr 2e-3), while 400 steps of these two questions alone formed it (~100%).
# * "read_detail" (``detail_steps``): mostly "what is it made of ?" / "what does it have ?", with the first two
#   questions kept in (``DETAIL_WEIGHTS``; a warm phase of all four from step 0 never formed the subject attention).
#   After the main mix alone the base read material and accessory at 36-42%; 100 steps of material/accessory
#   questions alone from that base read them at 85% / 98%.
# * "paint" (``paint_steps``): short captions that always state the colour (and half the time a material) → image.
#   After the main mix alone the first shipped base drew a random colour whatever the caption said (colour 16%,
#   material 19%, chance 12-17%); 300 steps of these from that base drew the stated colour 49% and material 64% of the
#   time. (The default recipe rerun from scratch, the shipped base since 2026-12-02, draws them 49% / 33% without it.)
WARM_KINDS = ("read", "read_detail", "paint")
DETAIL_WEIGHTS = {"material": 0.35, "accessory": 0.35, "subject": 0.15, "colour": 0.15}
# "evaluate_judged": the verdict names the image its own trace judged to pass this often (when exactly one passes), a
# weak link for RLVR to strengthen. With the coin-flip prior RLVR stayed at chance (accuracy 0.49-0.51 over 100
# steps). A base trained with this prior (not shipped, see pretrain.py) learned the link slowly: its sampled verdicts
# followed its own judgements 52% of the time after 3274 steps and 62% after 4277 (phase-1 pairs), but its captions
# copied the prompt's subject instead of reading it, so the judgements carried little.
# A fine-tune of the first shipped base on "evaluate_balanced" batches alone (300 steps, lr 3e-4) read the subject of
# rendered phase-1 pairs 43% -> 93% of the time, but its verdicts did not come to follow its judgements (greedy
# 38-55%), and RLVR from it stayed at chance while its judgements decayed.
VERDICT_FOLLOWS = 0.65
# "follow" (``PretrainConfig.follow_steps``, off by default): the paths prior's completions behind a text-only
# context, so the verdict learns to name the image its trace passed. Measured as a fine-tune of the first shipped base
# (lr 1e-3): teacher-forced, the verdict followed the trace 47% -> 94% (50 steps) -> 100% (100 steps), and then also
# behind the prior's own two-image contexts (80 of 80); with the images in the context, 120-300 steps of the paths
# prior reached only 58-59%.
FOLLOW_CONTEXT = "which image is better ?"
# PretrainConfig.evaluator_prior → the corpus kind that carries it
EVALUATOR_PRIORS = {"captions": "evaluate", "judged": "evaluate_judged", "balanced": "evaluate_balanced",
                    "paths": "evaluate_paths", "checked": "evaluate_checked"}
_PRIOR_OF_KIND = {kind: prior for prior, kind in EVALUATOR_PRIORS.items()}
# "evaluate_paths": how often a phase-2 trace checks the instruction rather than only the prompt's subject (the
# reprompting prior's faithful path is taken about as often)
INSTRUCTION_PATH = 0.3
# "evaluate_paths": how often a phase-2 negative is edited wrongly (every targeted attribute given a value the rule
# does not allow) rather than left plain, so "the instruction holds" cannot be read as "the image was changed"
WRONG_EDIT = 0.5
# "ask" questions favour what lives in the subject's cells; background, style and size fill the image and are
# learned from any example
ASK_WEIGHTS = {"subject": 0.25, "colour": 0.25, "material": 0.2, "accessory": 0.15, "style": 0.05,
               "background": 0.05, "size": 0.05}

QUESTIONS = {
    "subject": "what is it ?",
    "colour": "what colour is it ?",
    "material": "what is it made of ?",
    "style": "what style is the image ?",
    "accessory": "what does it have ?",
    "background": "where is it ?",
    "size": "is it small or large ?",
}
_OPEN = "<image>"


def _rand(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    return list(weights)[int(rng.choice(len(weights), p=list(weights.values())))]


def random_caption(rng: np.random.Generator, subjects=SUBJECTS) -> tuple[str, Spec]:
    """A concrete caption with a random subset of attributes mentioned, and the spec it asks for (unmentioned
    colour/background/size left ``None``: the render seed draws them)."""
    subject = _rand(rng, subjects)
    vals: dict[str, str | None] = {"subject": subject}
    mention = []
    for k, known in ATTRIBUTES.items():
        if k == "subject":
            continue
        if rng.random() < 0.5:
            choices = [v for v in known if v != S.DEFAULTS.get(k)]
            vals[k] = _rand(rng, choices)
            mention.append(k)
        else:
            vals[k] = S.DEFAULTS.get(k)
    return S.caption(vals, tuple(mention)), Spec(**vals)


def paint_caption(rng: np.random.Generator) -> tuple[str, Spec]:
    """A short caption that states the subject's colour and, half the time, a material (everything else default or
    unstated): the generator's warm phase for the words that live in the subject's cells."""
    vals: dict[str, str | None] = {"subject": _rand(rng, SUBJECTS), "colour": _rand(rng, ATTRIBUTES["colour"])}
    vals.update(S.DEFAULTS)
    mention = ["colour"]
    if rng.random() < 0.5:
        vals["material"] = _rand(rng, [m for m in ATTRIBUTES["material"] if m != S.DEFAULTS["material"]])
        mention.append("material")
    return S.caption(vals, tuple(mention)), Spec(**vals)


def with_fillers(text: str, rng: np.random.Generator) -> str:
    pre = _rand(rng, CAPTION_PREFIXES)
    words = [pre] if pre else []
    n_before, n_after = rng.integers(0, 4), rng.integers(0, 3) if rng.random() < 0.5 else 0
    words += [_rand(rng, FILLERS) for _ in range(n_before)] + [text] + [_rand(rng, FILLERS) for _ in range(n_after)]
    return " ".join(words)


def full_caption(spec: Spec) -> str:
    return S.caption(spec.attributes(), tuple(k for k in ATTRIBUTES if k != "subject"))


def _concept_image(rng: np.random.Generator, seed: int) -> tuple[np.ndarray, Spec]:
    """Half the time an image that satisfies a random concept, so concept questions are balanced."""
    if rng.random() < 0.5:
        c = _rand(rng, list(S.CONCEPTS.values()))
        return render(Spec(**{k: _rand(rng, vs) for k, vs in c.target.items()}), seed)
    return render(None, seed)


def minimal_prompt(rng: np.random.Generator, subject: str, avoid: set[str]) -> str:
    """p0: "a cat", sometimes with one stated attribute outside the instruction's target dimensions."""
    if rng.random() < 0.3:
        k = _rand(rng, [k for k in ("colour", "background", "size") if k not in avoid] or ["subject"])
        if k != "subject":
            return S.caption({"subject": subject, k: _rand(rng, ATTRIBUTES[k])}, (k,))
    return f"a {subject}"


def faithful_reprompt(instr: S.Instruction, prompt: str, rng: np.random.Generator, wrong: bool = False) -> str:
    """A concrete caption that keeps p0's subject and stated attributes and states the target values."""
    attrs = dict(S.prompt_attributes(prompt))
    target = instr.rule
    for k, vs in target.items():
        attrs[k] = _rand(rng, vs)
    if wrong:
        k = _rand(rng, list(target))
        attrs[k] = _rand(rng, [v for v in ATTRIBUTES[k] if v not in target[k] and v != S.DEFAULTS.get(k)])
    return S.caption(attrs, tuple(k for k in attrs if k != "subject"))


def _asked_for(instr: S.Instruction) -> str:
    return instr.concept if instr.concept else "a concrete change"


def reprompt_completion(instr: S.Instruction, prompt: str, rng: np.random.Generator) -> tuple[str, str]:
    """One completion of the reprompting prior and the path it took ('faithful', 'type1', 'type2', 'type3')."""
    u = rng.random()
    if u < 0.30:
        wrong = rng.random() < 0.1
        rep = faithful_reprompt(instr, prompt, rng, wrong)
        think = (f"the instruction asks for {_asked_for(instr)} . that means "
                 f"{S.describe_rule(instr.rule)} . keep the {S.prompt_attributes(prompt)['subject']} .")
        return f"<think> {think} </think> <reprompt> {rep} </reprompt>", "faithful"
    if u < 0.55:
        rep = f"{prompt} , {instr.text.rstrip(' .')}"
        return f"<think> just add the instruction to the prompt . </think> <reprompt> {rep} </reprompt>", "type1"
    if u < 0.75:
        target = instr.rule
        attrs = dict(S.prompt_attributes(prompt))
        wrong_rule = {}
        for k in target:
            k2 = k if rng.random() < 0.6 else _rand(rng, [a for a in ATTRIBUTES if a != "subject"])
            bad = [v for v in ATTRIBUTES[k2] if v not in target.get(k2, ()) and v != S.DEFAULTS.get(k2)
                   and v != attrs.get(k2)]
            bad = bad or [v for v in ATTRIBUTES[k2] if v not in target.get(k2, ())]
            v = _rand(rng, bad)
            attrs[k2] = v
            wrong_rule[k2] = (v,)
        rep = S.caption(attrs, tuple(k for k in attrs if k != "subject"))
        think = f"the instruction suggests {S.describe_rule(wrong_rule)} ."
        return f"<think> {think} </think> <reprompt> {rep} </reprompt>", "type2"
    return f"<think> the prompt is enough . </think> <reprompt> {prompt} </reprompt>", "type3"


def swapped_subject(subject: str, rng: np.random.Generator) -> str:
    return _rand(rng, [s for s in SUBJECTS if s != subject])


def make_example(kind: str, rng: np.random.Generator) -> tuple[str, tuple]:
    """One corpus example: ('image', (prompt, image)) or ('text', (Context, completion))."""
    seed = int(rng.integers(0, 2**31))
    if kind == "generate":
        text, spec = random_caption(rng)
        return "image", (with_fillers(text, rng), render(spec, seed)[0])
    if kind == "generate_distracted":
        text, spec = random_caption(rng)
        clause = " ".join(_rand(rng, DISTRACTOR_WORDS) for _ in range(int(rng.integers(3, 11))))
        return "image", (f"{clause} . {with_fillers(text, rng)}", render(spec, seed)[0])
    if kind == "generate_uncond":  # the prompt dropped, for classifier-free guidance (PretrainConfig.uncond)
        _, spec = random_caption(rng)
        return "image", ("", render(spec, seed)[0])
    if kind == "describe":
        img, spec = render(None, seed)
        return "text", (Context(f"{_OPEN} describe the image .", (img,)), full_caption(spec))
    if kind == "ask":
        img, spec = render(None, seed)
        k = _weighted(rng, ASK_WEIGHTS)
        if rng.random() < 0.5:
            return "text", (Context(f"{_OPEN} {QUESTIONS[k]}", (img,)), getattr(spec, k))
        v = getattr(spec, k) if rng.random() < 0.5 else _rand(rng, ATTRIBUTES[k])
        return "text", (Context(f"{_OPEN} is its {k} {v} ?", (img,)), "yes" if getattr(spec, k) == v else "no")
    if kind == "read":
        img, spec = render(None, seed)
        k = "subject" if rng.random() < 0.5 else "colour"
        return "text", (Context(f"{_OPEN} {QUESTIONS[k]}", (img,)), getattr(spec, k))
    if kind == "read_detail":
        img, spec = render(None, seed)
        k = _weighted(rng, DETAIL_WEIGHTS)
        return "text", (Context(f"{_OPEN} {QUESTIONS[k]}", (img,)), getattr(spec, k))
    if kind == "paint":
        text, spec = paint_caption(rng)
        return "image", (text, render(spec, seed)[0])
    if kind == "concept_ask":
        c = _rand(rng, list(S.CONCEPTS.values()))
        if rng.random() < 0.5:
            img, spec = render(Spec(**{k: _rand(rng, vs) for k, vs in c.target.items()}), seed)
        else:
            img, spec = render(None, seed)
        ans = "yes" if S.satisfies(spec.attributes(), c.target) else "no"
        return "text", (Context(f"{_OPEN} does it look {c.name} ?", (img,)), ans)
    if kind == "define":
        c = _rand(rng, list(S.CONCEPTS.values()))
        return "text", (Context(f"what makes something look {c.name} ?"), S.describe_rule(c.target))
    if kind == "reprompt":
        instr = _rand(rng, list(S.INSTRUCTIONS.values()))
        prompt = minimal_prompt(rng, _rand(rng, SUBJECTS), set(instr.rule))
        completion, _ = reprompt_completion(instr, prompt, rng)
        return "text", (Context(DEFAULT_TEMPLATES.reprompt_text(instr.text, prompt)), completion)
    if kind == "judge":
        return judge_example(rng, seed)
    if kind == "evaluate_checked":
        return checked_pair_example(rng, seed)
    if kind in _PRIOR_OF_KIND:
        return evaluate_example(rng, seed, _PRIOR_OF_KIND[kind])
    if kind == "follow":
        _, (_, completion) = evaluate_example(rng, seed, "paths")
        return "text", (Context(FOLLOW_CONTEXT), completion)
    raise ValueError(f"unknown corpus kind {kind!r}; known: {KINDS}")


def evaluate_example(rng: np.random.Generator, seed: int, prior: str = "captions") -> tuple[str, tuple]:
    """One example of the pairwise-evaluation prior named ``prior`` (a key of ``EVALUATOR_PRIORS``):

    * "captions" (the shipped base's): each image captioned, then a coin-flip verdict;
    * "judged": each caption followed by a right judgement against the prompt (phase-1 contexts) or the instruction
      (phase-2 contexts); the verdict names the image judged to pass ``VERDICT_FOLLOWS`` of the time (a coin flip
      when both or neither pass);
    * "balanced": "judged", with each image showing the prompt's subject with probability 1/2, on its own, so no
      caption can be guessed from the prompt;
    * "paths": balanced subjects; the trace first names what it checks ("prompt :" or "instruction :"), judges each
      image against that, and the verdict names the image judged to pass (a coin flip when both or neither pass).
      Phase-1 contexts check the prompt; phase-2 contexts check the instruction only ``INSTRUCTION_PATH`` of the
      time, so the zero-shot evaluator mostly checks whether the subject was kept, which both images of a phase-2
      pair do (near chance), while checking the instruction is a path it knows and RLVR can make the rule. Half
      (``WRONG_EDIT``) of the phase-2 negatives are wrongly edited rather than plain.
    """
    if prior not in EVALUATOR_PRIORS:
        raise ValueError(f"unknown evaluator prior {prior!r}; known: {', '.join(EVALUATOR_PRIORS)}")
    subject = _rand(rng, SUBJECTS)
    if rng.random() < 0.4:  # phase 1: which image matches the prompt
        instr_text, rule, dim = NO_INSTRUCTION, None, "prompt"
        prompt = f"a {subject}"
        specs = [Spec(subject=subject, **S.DEFAULTS), Spec(subject=swapped_subject(subject, rng), **S.DEFAULTS)]
    else:
        instr = _rand(rng, list(S.INSTRUCTIONS.values()))
        instr_text, rule, dim = instr.text, instr.rule, "instruction"
        prompt = minimal_prompt(rng, subject, set(instr.rule))
        base = S.prompt_attributes(prompt)
        negative = Spec(**{**S.DEFAULTS, **base})
        if prior == "paths" and rng.random() < WRONG_EDIT:
            negative = S.violating_spec(instr.rule, base, rng)
        specs = [S.satisfying_spec(instr.rule, base, rng), negative]
    if prior in ("balanced", "paths"):
        specs = [replace(sp, subject=subject if rng.random() < 0.5 else swapped_subject(subject, rng))
                 for sp in specs]
    a, b = render(specs[0], seed), render(specs[1], seed + 1)
    if rng.random() < 0.5:
        a, b = b, a
    ctx = Context(DEFAULT_TEMPLATES.evaluator_text(instr_text, prompt), (a[0], b[0]))
    if prior == "captions":
        think = f"image A shows {full_caption(a[1])} . image B shows {full_caption(b[1])} ."
        verdict = "A" if rng.random() < 0.5 else "B"  # uninformative on purpose
        return "text", (ctx, f"<think> {think} </think> <answer> {verdict} </answer>")
    if prior == "paths" and dim == "instruction" and rng.random() >= INSTRUCTION_PATH:
        dim, rule = "prompt", None  # the zero-shot habit: check only that the subject was kept
    passes = [spec.subject == subject and (rule is None or S.satisfies(spec.attributes(), rule))
              for _, spec in (a, b)]
    think = " ".join(f"image {x} shows {full_caption(spec)} . {dim} {'yes' if ok else 'no'} ."
                     for x, (_, spec), ok in zip("AB", (a, b), passes, strict=True))
    if prior == "paths":
        think = f"{dim} : {think}"
    if passes[0] != passes[1]:
        follows = prior == "paths" or rng.random() < VERDICT_FOLLOWS
        verdict = "A" if passes[0] == follows else "B"
    else:
        verdict = "A" if rng.random() < 0.5 else "B"
    return "text", (ctx, f"<think> {think} </think> <answer> {verdict} </answer>")


def _yn(ok: bool) -> str:
    return "yes" if ok else "no"


def prompt_kept(spec: Spec, prompt: str) -> bool:
    """The image keeps p0: its subject and every attribute p0 states (the judge's prompt consistency)."""
    return all(getattr(spec, k) == v for k, v in S.prompt_attributes(prompt).items())


def checks(spec: Spec, instr: S.Instruction | None, prompt: str) -> str:
    """A trace's checks of one image: ``instruction yes . prompt no .`` (phase-1 contexts: the prompt only)."""
    kept = f"prompt {_yn(prompt_kept(spec, prompt))} ."
    return kept if instr is None else f"instruction {_yn(S.satisfies(spec.attributes(), instr.rule))} . {kept}"


def candidate_spec(kind: str, instr: S.Instruction, prompt: str, rng: np.random.Generator) -> Spec:
    """An image for ``instr`` applied to ``prompt``, of one of the kinds an evaluator must tell apart:
    'right' (the instruction met, p0 kept), 'plain' (p0 as it is), 'wrong' (every targeted attribute given a value the
    rule does not allow), 'other' (an edit made for another instruction), 'lost' (the instruction met, the subject
    swapped)."""
    base = S.prompt_attributes(prompt)
    if kind == "right":
        return S.satisfying_spec(instr.rule, base, rng)
    if kind == "plain":
        return Spec(**{**S.DEFAULTS, **base})
    if kind == "wrong":
        return S.violating_spec(instr.rule, base, rng)
    if kind == "other":
        other = _rand(rng, [i for i in S.INSTRUCTIONS.values() if i.rule != instr.rule])
        return S.satisfying_spec(other.rule, base, rng)
    if kind == "lost":
        return replace(S.satisfying_spec(instr.rule, base, rng), subject=swapped_subject(base["subject"], rng))
    raise ValueError(f"unknown candidate kind {kind!r}")


JUDGE_KINDS = {"right": 0.4, "plain": 0.15, "wrong": 0.15, "other": 0.15, "lost": 0.15}


def judge_example(rng: np.random.Generator, seed: int) -> tuple[str, tuple]:
    """The single-image instruction judgement (world v2): image + instruction + p0 → what the image shows, what the
    instruction asks, whether it is met and p0 kept → yes/no. Over ID and OOD instructions (as every understanding
    task of the corpus; OOD instructions are unseen only by RL), on renders of the kinds in ``JUDGE_KINDS``."""
    instr = _rand(rng, list(S.INSTRUCTIONS.values()))
    prompt = minimal_prompt(rng, _rand(rng, SUBJECTS), set(instr.rule))
    spec = candidate_spec(_weighted(rng, JUDGE_KINDS), instr, prompt, rng)
    img, full = render(spec, seed)
    ok = S.satisfies(full.attributes(), instr.rule) and prompt_kept(full, prompt)
    ctx = Context(f"{_OPEN} instruction : {instr.text} prompt : {prompt} . {JUDGE_QUESTION}", (img,))
    think = (f"the image shows {full_caption(full)} . the instruction asks for {S.describe_rule(instr.rule)} . "
             f"{checks(full, instr, prompt)}")
    return "text", (ctx, f"<think> {think} </think> <answer> {_yn(ok)} </answer>")


# the pair kinds of the "checked" pairwise prior's phase-2 contexts (the first image of each pair is 'right' unless
# the kind says otherwise): the paper's pair, and the pairs of seer's shortcut-proof set
CHECKED_PAIRS = {("right", "plain"): 0.25, ("right", "other"): 0.25, ("right", "wrong"): 0.25, ("plain", "lost"): 0.25}


def checked_pair_example(rng: np.random.Generator, seed: int) -> tuple[str, tuple]:
    """The pairwise prior of world v2, in the RLVR format: each image read (its full caption) and checked against the
    instruction and p0 — the checks the single-image judgement teaches — and then a coin-flip verdict, so the
    zero-shot evaluator is at chance and RLVR's job is to make the verdict follow the checks (the paper's
    activation), not to teach them. Phase-1 contexts (40%): p0's image vs the subject swapped, checked against p0."""
    subject = _rand(rng, SUBJECTS)
    if rng.random() < 0.4:
        instr, prompt = None, f"a {subject}"
        specs = [Spec(subject=subject, **S.DEFAULTS), Spec(subject=swapped_subject(subject, rng), **S.DEFAULTS)]
    else:
        instr = _rand(rng, list(S.INSTRUCTIONS.values()))
        prompt = minimal_prompt(rng, subject, set(instr.rule))
        specs = [candidate_spec(k, instr, prompt, rng) for k in _weighted_pair(rng)]
    a, b = render(specs[0], seed), render(specs[1], seed + 1)
    if rng.random() < 0.5:
        a, b = b, a
    ctx = Context(DEFAULT_TEMPLATES.evaluator_text(instr.text if instr else NO_INSTRUCTION, prompt), (a[0], b[0]))
    think = " ".join(f"image {x} shows {full_caption(spec)} . {checks(spec, instr, prompt)}"
                     for x, (_, spec) in zip("AB", (a, b), strict=True))
    verdict = "A" if rng.random() < 0.5 else "B"  # uninformative on purpose
    return "text", (ctx, f"<think> {think} </think> <answer> {verdict} </answer>")


def _weighted_pair(rng: np.random.Generator) -> tuple[str, str]:
    pairs = list(CHECKED_PAIRS)
    return pairs[int(rng.choice(len(pairs), p=list(CHECKED_PAIRS.values())))]


def encode(backend, example: tuple[str, tuple]) -> tuple[list[int], list[int]]:
    kind, payload = example
    if kind == "image":
        return backend.encode_image_example(*payload)
    return backend.encode_text_example(*payload)


def vocabulary_texts(judge: bool = True) -> list[str]:
    """Every text the corpus can produce words from (for the word-level vocabulary), deterministic. ``judge=False``:
    without the single-image judgement's words (a world v1 base never saw them)."""
    texts = [DEFAULT_TEMPLATES.system, DEFAULT_TEMPLATES.evaluator, DEFAULT_TEMPLATES.reprompt,
             " ".join(FILLERS), " ".join(CAPTION_PREFIXES), " ".join(QUESTIONS.values()), "describe the image .",
             "is its does it look yes no what makes something look", "A B", NO_INSTRUCTION,
             "the instruction asks for a concrete change . that means keep the just add instruction to prompt "
             "suggests is enough image shows", "plain normal none"]
    if judge:
        texts += [f"instruction prompt : {JUDGE_QUESTION}", "the image shows the instruction asks for"]
    texts = [t.replace("{instruction}", " ").replace("{prompt}", " ") for t in texts]
    texts += list(S.INSTRUCTIONS) + list(S.CONCEPTS) + list(ATTRIBUTES)
    texts += [" ".join(v) for v in ATTRIBUTES.values()]
    texts += list(S.ACCESSORY_PHRASE.values()) + list(S.BACKGROUND_PHRASE.values()) + list(S.STYLE_PHRASE.values())
    return texts
