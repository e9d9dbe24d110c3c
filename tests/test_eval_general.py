"""General-capability measurements (Tables 4–5 analogues) with stubs: case construction, scoring, probes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seer.backends.base import Completion
from seer.eval import general as G


def test_generation_cases_are_deterministic_and_state_what_they_check():
    a, b = G.generation_cases(4, seed=3), G.generation_cases(4, seed=3)
    assert a == b and len(a) == 4 * len(G.GENERATION_COLUMNS)
    from seer.world import semantics as S

    for c in a:
        stated = S.parse_caption(c.caption)
        assert stated == c.expected  # the caption states exactly the attributes the case checks
        n_attrs = len(c.expected) - 1
        assert n_attrs == {"single object": 0, "two attributes": 2}.get(c.column, 1)


def test_generation_accuracy_scores_every_stated_attribute():
    cases = G.generation_cases(2, seed=0)

    class Backend:
        def generate_images(self, prompts, seeds):
            return [np.zeros((4, 4, 3), np.uint8) for _ in prompts]

    # a reader that gets the subject right everywhere and every other attribute wrong
    reads = iter([{"subject": c.expected["subject"]} for c in cases])
    acc = G.generation_accuracy(Backend(), lambda imgs: [next(reads) for _ in imgs], cases)
    assert acc["single object"] == 1.0
    assert all(acc[c] == 0.0 for c in G.GENERATION_COLUMNS if c != "single object")
    assert acc["overall"] == pytest.approx(1 / len(G.GENERATION_COLUMNS))


def test_understanding_probes_accept_the_truth_and_a_stub_that_says_yes():
    probes = G.world_understanding_probes(6, seed=1)
    assert [p.column for p in probes].count("qa abstract") == 6
    from seer.world.corpus import full_caption
    from seer.world.render import Spec

    for p in probes:
        truth = full_caption(Spec(**json.loads(p.expected))) if p.column == "captioning" else p.expected
        assert p.check(truth, p.expected)
        assert p.text.count("<image>") == 1 and p.image.shape == (32, 32, 3)

    class SaysYes:
        def generate_text(self, contexts, n, sampling, seed=None):
            assert sampling.greedy
            return [[Completion([1], "yes", [0.0], False)] for _ in contexts]

    acc = G.understanding_accuracy(SaysYes(), probes)
    yes_rate = np.mean([p.expected == "yes" for p in probes if p.column == "qa abstract"])
    assert acc["qa abstract"] == pytest.approx(yes_rate)
    assert acc["captioning"] == 0.0 and acc["qa concrete"] == 0.0
