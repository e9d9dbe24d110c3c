"""The world's language: the concrete caption grammar, abstract concepts as rules, and the instruction registry.

* **Captions** are what the generator understands: ``"a large pink ice cat with a crown on grass , night"``
  = ``a [size] [colour] [material] SUBJECT [with ACCESSORY] [BACKGROUND] [, STYLE]``. An attribute a caption leaves out
  defaults (material plain, style normal, accessory none) or, for colour, background and size, is drawn at random.
* **Concepts** ("scary", "cold", "scary yet cute", "a sense of impending danger", ...) are rules over concrete
  attributes: each names the attribute values an image must show (a set of allowed values per attribute). Paradoxical
  pairs join two partial rules and are satisfiable only by their specific combination.
* **Instructions** are English phrasings for the paper's six categories (``seer.data.CATEGORIES``). Each maps to a
  target (attribute -> allowed values): Simple instructions to one concrete attribute, Hard ones to a concept.
  ``TRAIN`` instructions (10 per category) are the training set's and the ID test's; ``OOD`` instructions (unseen
  phrasings and unseen concepts) only appear in the OOD test split. Words of Hard instructions never include caption
  words, so a naive concatenation gives the generator nothing it can use (the cognitive gap, checked at import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from seer.data import CATEGORIES, HARD_CATEGORIES, SIMPLE_CATEGORIES
from seer.world.render import ATTRIBUTES, SUBJECTS, Spec, WorldError

DEFAULTS = {"material": "plain", "style": "normal", "accessory": "none"}
RANDOM_WHEN_UNSAID = ("colour", "background", "size")

ACCESSORY_PHRASE = {"crown": "with a crown", "hat": "with a hat", "sparkles": "with sparkles",
                    "border": "with a sticker border"}
BACKGROUND_PHRASE = {"grass": "on grass", "sky": "in the sky", "snow": "on snow", "room": "in a room"}
STYLE_PHRASE = {"pixel": "pixel art", "grainy": "grainy surveillance", "night": "night", "sketch": "sketch",
                "sepia": "sepia"}
# one word per concrete value: how captions are read back (parse_caption) and what counts as a caption word
_WORD_TO_ATTR: dict[str, tuple[str, str]] = {}
for _attr, _vals in ATTRIBUTES.items():
    for _v in _vals:
        if _attr == "accessory" and _v != "none":
            _WORD_TO_ATTR[{"sparkles": "sparkles", "border": "border"}.get(_v, _v)] = (_attr, _v)
        elif _attr == "style" and _v != "normal":
            _WORD_TO_ATTR[_v] = (_attr, _v)
        elif _attr == "background":
            _WORD_TO_ATTR[_v] = (_attr, _v)
        elif _attr not in ("accessory", "style"):
            _WORD_TO_ATTR[_v] = (_attr, _v)
CAPTION_WORDS = frozenset(_WORD_TO_ATTR) | {"sticker", "art", "surveillance"}
FUNCTION_WORDS = frozenset({"a", "an", "the", "with", "on", "in", ","})


def caption(attrs: dict[str, str], mention: tuple[str, ...] | None = None) -> str:
    """A concrete caption stating ``mention`` (default: every non-default attribute and the subject)."""
    if "subject" not in attrs or attrs["subject"] not in SUBJECTS:
        raise WorldError(f"caption needs a known subject; known: {', '.join(SUBJECTS)}")
    if mention is None:
        mention = tuple(k for k, v in attrs.items() if k != "subject" and v is not None and DEFAULTS.get(k) != v)
    m = set(mention)
    words = ["a"]
    for k in ("size", "colour", "material"):
        if k in m and attrs.get(k) and attrs[k] != DEFAULTS.get(k):
            words.append(attrs[k])
    words.append(attrs["subject"])
    if "accessory" in m and attrs.get("accessory") not in (None, "none"):
        words.append(ACCESSORY_PHRASE[attrs["accessory"]])
    if "background" in m and attrs.get("background"):
        words.append(BACKGROUND_PHRASE[attrs["background"]])
    if "style" in m and attrs.get("style") not in (None, "normal"):
        words.append(", " + STYLE_PHRASE[attrs["style"]])
    return " ".join(words)


def tokenize(text: str) -> list[str]:
    """Lower-case words with punctuation split off (the world's word-level view of text)."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


def parse_caption(text: str) -> dict[str, str]:
    """The concrete attributes a text states (last mention wins); words outside the caption vocabulary are ignored.
    Used to read prompts and reprompts, never images."""
    out: dict[str, str] = {}
    for w in tokenize(text):
        if w in _WORD_TO_ATTR:
            a, v = _WORD_TO_ATTR[w]
            out[a] = v
        elif w in SUBJECTS:
            out["subject"] = w
    return out


def spec_for_caption(text: str) -> Spec:
    """What a generator told ``text`` should draw: stated attributes, defaults for the rest (colour, background,
    size and position left to the seed)."""
    attrs = parse_caption(text)
    if "subject" not in attrs:
        raise WorldError(f"caption {text!r} names no known subject; known: {', '.join(SUBJECTS)}")
    return Spec(**{**DEFAULTS, **attrs})


# ---------------------------------------------------------------------------------------------------------------
# Concepts: rules over concrete attributes
# ---------------------------------------------------------------------------------------------------------------
Rule = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Concept:
    name: str  # the words the world uses for it, e.g. "scary yet cute"
    rule: tuple[tuple[str, tuple[str, ...]], ...]
    ood: bool = False

    @property
    def target(self) -> Rule:
        return dict(self.rule)


def _c(name: str, ood: bool = False, **rule: str | tuple[str, ...]) -> Concept:
    r = tuple((k, (v,) if isinstance(v, str) else tuple(v)) for k, v in rule.items())
    for k, vs in r:
        if k not in ATTRIBUTES or any(v not in ATTRIBUTES[k] for v in vs):
            raise WorldError(f"concept {name!r}: bad rule {k}={vs}")
    return Concept(name, r, ood)


_CONCEPT_LIST = [
    # attribute reasoning (ID)
    _c("refined", material="glass", accessory="border"),
    _c("luxurious", material="gold", accessory="crown"),
    _c("cold", material="ice", background="snow"),
    _c("cozy", colour=("orange", "red"), background="room"),
    _c("ancient", material="stone", style="sepia"),
    _c("natural", material="wood", background="grass"),
    _c("futuristic", material="metal", colour="blue"),
    _c("delicate", material="glass", size="small"),
    _c("playful", colour="yellow", accessory="hat"),
    _c("majestic", size="large", accessory="crown"),
    # constraint reasoning (ID): paradoxical pairs
    _c("scary yet cute", style="night", colour="pink", size="small"),
    _c("cold yet cozy", material="ice", background="room"),
    _c("ancient yet luxurious", style="sepia", material="gold"),
    _c("tiny yet majestic", size="small", accessory="crown"),
    _c("gloomy yet festive", style="night", accessory="sparkles"),
    _c("natural yet futuristic", background="grass", material="metal"),
    _c("delicate yet strong", material="glass", size="large"),
    _c("playful yet elegant", accessory="hat", material="glass"),
    _c("dark yet cheerful", style="night", colour="yellow"),
    _c("rustic yet refined", material="wood", accessory="border"),
    # conceptual reasoning (ID)
    _c("memorable", accessory="sparkles", colour="red"),
    _c("peaceful", background="sky", colour="blue"),
    _c("nostalgic", style="sepia", material="wood"),
    _c("mysterious", style="night", colour="purple"),
    _c("celebratory", accessory="sparkles", colour="yellow"),
    _c("wintry", background="snow", colour="blue"),
    _c("childlike", style="pixel", colour="yellow"),
    _c("royal", accessory="crown", colour="purple"),
    _c("summery", background="grass", colour="orange"),
    _c("lonely", size="small", background="snow"),
    # OOD concepts (only in the OOD test split's instructions)
    _c("rugged industrial", ood=True, material="metal", style="grainy"),
    _c("opulent", ood=True, material="gold", size="large"),
    _c("spooky", ood=True, style="night", colour="black"),
    _c("handcrafted", ood=True, material="wood", style="sketch"),
    _c("cheap yet luxurious", ood=True, material="gold", accessory="border"),
    _c("frozen yet fiery", ood=True, material="ice", colour="red"),
    _c("heavy yet floating", ood=True, material="stone", background="sky"),
    _c("old yet high-tech", ood=True, style="sepia", material="metal"),
    _c("impending danger", ood=True, style="night", colour="red"),
    _c("triumphant", ood=True, accessory="crown", material="gold"),
    _c("faded memory", ood=True, style="sepia", size="small"),
    _c("serene", ood=True, background="sky", colour="green"),
]
CONCEPTS: dict[str, Concept] = {c.name: c for c in _CONCEPT_LIST}
assert len(CONCEPTS) == len(_CONCEPT_LIST), "duplicate concept names"


def concept(name: str) -> Concept:
    if name not in CONCEPTS:
        raise WorldError(f"unknown concept {name!r}; known: {', '.join(CONCEPTS)}")
    return CONCEPTS[name]


def satisfies(attrs: dict[str, str], target: Rule) -> bool:
    return all(attrs.get(k) in vs for k, vs in target.items())


def compliance(attrs: dict[str, str], target: Rule) -> float:
    return sum(attrs.get(k) in vs for k, vs in target.items()) / max(1, len(target))


def describe_rule(target: Rule) -> str:
    """Concrete words for a rule, in caption vocabulary: ``night , pink and small``."""
    parts = []
    for k, vs in target.items():
        v = vs[0]
        parts.append({"accessory": ACCESSORY_PHRASE.get(v, v), "background": BACKGROUND_PHRASE.get(v, v),
                      "style": STYLE_PHRASE.get(v, v)}.get(k, v))
    return parts[0] if len(parts) == 1 else " , ".join(parts[:-1]) + " and " + parts[-1]


# ---------------------------------------------------------------------------------------------------------------
# Instructions
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    text: str
    category: str
    distribution: str  # "id" (training instructions) | "ood" (only in the OOD test split)
    target: tuple[tuple[str, tuple[str, ...]], ...]
    concept: str | None = None  # Hard instructions: the concept name

    @property
    def rule(self) -> Rule:
        return dict(self.target)

    @property
    def difficulty(self) -> str:
        return "simple" if self.category in SIMPLE_CATEGORIES else "hard"


def _s(text: str, cat: str, dist: str, attr: str, value: str) -> Instruction:
    if value not in ATTRIBUTES[attr]:
        raise WorldError(f"instruction {text!r}: unknown {attr} {value!r}")
    return Instruction(text, cat, dist, ((attr, (value,)),))


def _h(text: str, cat: str, dist: str, name: str) -> Instruction:
    c = concept(name)
    return Instruction(text, cat, dist, c.rule, name)


MS, PS, SE = SIMPLE_CATEGORIES
AR, CR, CO = HARD_CATEGORIES
_INSTRUCTION_LIST = [
    # --- material synthesis (ID)
    _s("transform it so it is carved entirely out of ice .", MS, "id", "material", "ice"),
    _s("make it look like it is made of ice .", MS, "id", "material", "ice"),
    _s("carve it from a block of wood .", MS, "id", "material", "wood"),
    _s("make it entirely wooden .", MS, "id", "material", "wood"),
    _s("forge it out of metal .", MS, "id", "material", "metal"),
    _s("make it look like shiny metal .", MS, "id", "material", "metal"),
    _s("cast it in pure gold .", MS, "id", "material", "gold"),
    _s("blow it from clear glass .", MS, "id", "material", "glass"),
    _s("make it out of transparent glass .", MS, "id", "material", "glass"),
    _s("sculpt it from stone .", MS, "id", "material", "stone"),
    # --- perspective shifts (ID)
    _s("show it through grainy surveillance footage .", PS, "id", "style", "grainy"),
    _s("view it through a grainy security camera .", PS, "id", "style", "grainy"),
    _s("show it at night .", PS, "id", "style", "night"),
    _s("show it under a dark night sky .", PS, "id", "style", "night"),
    _s("render it as pixel art .", PS, "id", "style", "pixel"),
    _s("turn it into a retro video game sprite .", PS, "id", "style", "pixel"),
    _s("draw it as a rough pencil sketch .", PS, "id", "style", "sketch"),
    _s("show it as an old sepia photograph .", PS, "id", "style", "sepia"),
    _s("zoom in so it fills the frame .", PS, "id", "size", "large"),
    _s("show it from far away .", PS, "id", "size", "small"),
    # --- semantic edits (ID)
    _s("place a golden crown on its top .", SE, "id", "accessory", "crown"),
    _s("crown it like a king .", SE, "id", "accessory", "crown"),
    _s("put a hat on its head .", SE, "id", "accessory", "hat"),
    _s("give it a fancy top hat .", SE, "id", "accessory", "hat"),
    _s("add sparkles all around it .", SE, "id", "accessory", "sparkles"),
    _s("make it glitter with magic sparkles .", SE, "id", "accessory", "sparkles"),
    _s("turn it into a sticker with a border .", SE, "id", "accessory", "border"),
    _s("paint it pink .", SE, "id", "colour", "pink"),
    _s("change its colour to purple .", SE, "id", "colour", "purple"),
    _s("move it onto fresh snow .", SE, "id", "background", "snow"),
    # --- attribute reasoning (ID)
    _h("make it look more refined and carefully made .", AR, "id", "refined"),
    _h("make it look luxurious and expensive .", AR, "id", "luxurious"),
    _h("make it feel cold .", AR, "id", "cold"),
    _h("make it feel warm and cozy .", AR, "id", "cozy"),
    _h("make it look ancient .", AR, "id", "ancient"),
    _h("make it look natural and organic .", AR, "id", "natural"),
    _h("make it look futuristic .", AR, "id", "futuristic"),
    _h("make it look fragile and delicate .", AR, "id", "delicate"),
    _h("make it look playful .", AR, "id", "playful"),
    _h("make it look majestic .", AR, "id", "majestic"),
    # --- constraint reasoning (ID)
    _h("make it look scary , yet undeniably cute .", CR, "id", "scary yet cute"),
    _h("make it feel freezing cold yet cozy .", CR, "id", "cold yet cozy"),
    _h("make it look ancient yet luxurious .", CR, "id", "ancient yet luxurious"),
    _h("make it look tiny yet majestic .", CR, "id", "tiny yet majestic"),
    _h("make it feel gloomy yet festive .", CR, "id", "gloomy yet festive"),
    _h("make it feel natural yet futuristic .", CR, "id", "natural yet futuristic"),
    _h("make it look delicate yet strong .", CR, "id", "delicate yet strong"),
    _h("make it look playful yet elegant .", CR, "id", "playful yet elegant"),
    _h("make it feel dark yet cheerful .", CR, "id", "dark yet cheerful"),
    _h("make it look rustic yet refined .", CR, "id", "rustic yet refined"),
    # --- conceptual reasoning (ID)
    _h("make this image more memorable .", CO, "id", "memorable"),
    _h("make this image feel peaceful .", CO, "id", "peaceful"),
    _h("make this image feel nostalgic .", CO, "id", "nostalgic"),
    _h("make this image feel mysterious .", CO, "id", "mysterious"),
    _h("make this image feel like a celebration .", CO, "id", "celebratory"),
    _h("make this image tell a wintry tale .", CO, "id", "wintry"),
    _h("make this image look like a childhood memory .", CO, "id", "childlike"),
    _h("make this image feel royal .", CO, "id", "royal"),
    _h("make this image feel like a summer day .", CO, "id", "summery"),
    _h("make this image convey loneliness .", CO, "id", "lonely"),
    # --- OOD: unseen phrasings of concrete edits (8 simple)
    _s("transform it so it is made of polished mahogany wood .", MS, "ood", "material", "wood"),
    _s("freeze it into a solid block of frost .", MS, "ood", "material", "ice"),
    _s("cast it in heavy bronze like a statue .", MS, "ood", "material", "metal"),
    _s("render it in the style of 8-bit retro pixel art .", PS, "ood", "style", "pixel"),
    _s("show it as captured by a cctv security camera .", PS, "ood", "style", "grainy"),
    _s("show it as a faded antique photograph .", PS, "ood", "style", "sepia"),
    _s("transform the object into a die-cut sticker with a white border .", SE, "ood", "accessory", "border"),
    _s("put a royal tiara on its head .", SE, "ood", "accessory", "crown"),
    # --- OOD: unseen concepts (12 hard)
    _h("give it a rugged , heavy industrial aesthetic .", AR, "ood", "rugged industrial"),
    _h("make it look opulent .", AR, "ood", "opulent"),
    _h("make it look spooky .", AR, "ood", "spooky"),
    _h("make it look handcrafted .", AR, "ood", "handcrafted"),
    _h("render it as cheap plastic , yet make it appear precious and luxurious .", CR, "ood", "cheap yet luxurious"),
    _h("make it look frozen yet fiery .", CR, "ood", "frozen yet fiery"),
    _h("make it look heavy yet floating .", CR, "ood", "heavy yet floating"),
    _h("make it look old yet high-tech .", CR, "ood", "old yet high-tech"),
    _h("make this image convey a sense of impending danger .", CO, "ood", "impending danger"),
    _h("make this image feel triumphant .", CO, "ood", "triumphant"),
    _h("make this image feel like a faded memory .", CO, "ood", "faded memory"),
    _h("make this image feel serene .", CO, "ood", "serene"),
]
INSTRUCTIONS: dict[str, Instruction] = {i.text: i for i in _INSTRUCTION_LIST}
assert len(INSTRUCTIONS) == len(_INSTRUCTION_LIST), "duplicate instruction texts"
TRAIN_INSTRUCTIONS = tuple(i for i in _INSTRUCTION_LIST if i.distribution == "id")
OOD_INSTRUCTIONS = tuple(i for i in _INSTRUCTION_LIST if i.distribution == "ood")
for _cat in CATEGORIES:
    assert sum(i.category == _cat for i in TRAIN_INSTRUCTIONS) == 10, _cat
for _i in _INSTRUCTION_LIST:
    if _i.difficulty == "hard":
        _leak = (set(tokenize(_i.text)) | set(tokenize(_i.concept or ""))) & CAPTION_WORDS
        assert not _leak, f"hard instruction {_i.text!r} contains caption words {_leak}"
for _i in OOD_INSTRUCTIONS:
    assert _i.concept is None or CONCEPTS[_i.concept].ood, _i.text


def _norm(text: str) -> str:
    return " ".join(tokenize(text))


_BY_NORM = {_norm(t): i for t, i in INSTRUCTIONS.items()}


def instruction(text: str) -> Instruction:
    """The registered instruction for ``text`` (case and spacing around punctuation do not matter)."""
    key = _norm(text)
    if key not in _BY_NORM:
        known = "; ".join(list(INSTRUCTIONS)[:6])
        raise WorldError(f"unknown instruction {text!r}; the world knows {len(INSTRUCTIONS)} instructions "
                         f"(seer.world.semantics.INSTRUCTIONS), e.g. {known} ...")
    return _BY_NORM[key]


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise WorldError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    return category


def check_subject(subject: str) -> str:
    if subject not in SUBJECTS:
        raise WorldError(f"unknown subject {subject!r}; known: {', '.join(SUBJECTS)}")
    return subject


def prompt_attributes(prompt: str) -> dict[str, str]:
    """What a minimal prompt p0 states (subject + any concrete attribute); an unknown subject is an error."""
    attrs = parse_caption(prompt)
    if "subject" not in attrs:
        raise WorldError(f"prompt {prompt!r} names no known subject; known: {', '.join(SUBJECTS)}")
    return attrs


def satisfying_spec(target: Rule, base: dict[str, str], rng: np.random.Generator) -> Spec:
    """A spec that meets ``target`` and keeps ``base`` (prompt attributes); other attributes default or random."""
    vals = {**DEFAULTS, **base}
    for k, vs in target.items():
        vals[k] = vs[int(rng.integers(len(vs)))]
    return Spec(**vals)


def violating_spec(target: Rule, base: dict[str, str], rng: np.random.Generator) -> Spec:
    """A spec that keeps ``base`` and breaks every constraint of ``target``."""
    vals = {**DEFAULTS, **base}
    for k, vs in target.items():
        others = [v for v in ATTRIBUTES[k] if v not in vs]
        vals[k] = others[int(rng.integers(len(others)))]
    return Spec(**vals)
