"""External (disjoint) reprompters for the world: baselines that do not share the generator's language.

* :class:`NaiveReprompter` — ``a ⊕ p0`` (the RLMT baseline prompt, paper Sec. 3.4.2).
* :class:`VerboseExpander` — BeautifulPrompt / PromptEnhancer style: the prompt and the instruction plus long style
  boilerplate ("masterpiece , highly detailed , 8k …"). It does not reason about the instruction.
* :class:`KnowledgeableRewriter` — an external LLM that understands the concept (it reads the world's rules) but
  describes it in its own words: for about half of the target attributes (chosen per sample, deterministically) it
  uses a synonym outside the generator's caption vocabulary ("crimson", "timber", "after dark"), so it partly works —
  the paper's point that a reprompter not aligned with the generator's own priors loses part of what it knows.

Each has ``name`` and ``reprompt(sample) -> str``.
"""

from __future__ import annotations

import hashlib

from seer.world import semantics as S

BOILERPLATE = ("masterpiece , highly detailed , 8k , best quality , sharp focus , cinematic lighting , "
               "trending on artstation , ultra realistic , award winning")

SYNONYMS: dict[str, str] = {
    # colours
    "red": "crimson", "orange": "tangerine", "yellow": "lemon toned", "green": "emerald", "blue": "azure",
    "purple": "violet", "pink": "rosy", "black": "ebony",
    # materials
    "ice": "frosty crystal", "wood": "timber", "metal": "steel", "gold": "golden", "glass": "translucent",
    "stone": "granite", "plain": "simple",
    # styles
    "pixel": "8-bit", "grainy": "cctv footage", "night": "after dark", "sketch": "pencil drawing",
    "sepia": "vintage brown toned",
    # accessories
    "crown": "tiara", "hat": "cap", "sparkles": "glitter", "border": "white outline",
    # backgrounds
    "grass": "meadow", "sky": "clouds", "snow": "snowy field", "room": "indoors",
    # sizes
    "small": "tiny", "large": "huge",
}


class NaiveReprompter:
    name = "naive"

    def reprompt(self, sample) -> str:
        return sample.naive_prompt


class VerboseExpander:
    name = "verbose_expander"

    def reprompt(self, sample) -> str:
        return f"{sample.prompt.strip()} , {sample.instruction.strip().rstrip('.').strip()} , {BOILERPLATE}"


class KnowledgeableRewriter:
    name = "knowledgeable_rewriter"

    def __init__(self, synonym_rate: float = 0.5):
        self.synonym_rate = synonym_rate

    def _use_synonym(self, sample_id: str, attr: str) -> bool:
        h = int(hashlib.sha256(f"{sample_id}/{attr}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return h < self.synonym_rate

    def reprompt(self, sample) -> str:
        target = S.instruction(sample.instruction).rule
        stated = S.prompt_attributes(sample.prompt)
        words = []
        for attr, values in target.items():
            v = values[0]
            phrase = {"accessory": S.ACCESSORY_PHRASE, "background": S.BACKGROUND_PHRASE,
                      "style": S.STYLE_PHRASE}.get(attr, {}).get(v, v)
            if self._use_synonym(sample.id, attr):
                phrase = SYNONYMS[v]
            words.append(phrase)
        subject = stated["subject"]
        kept = [v for k, v in stated.items() if k != "subject"]
        head = " ".join(["a", *kept, subject])
        return f"{head} , depicted as {' , '.join(words)} , with a carefully considered mood"


REPROMPTERS = {r.name: r for r in (NaiveReprompter(), VerboseExpander(), KnowledgeableRewriter())}
