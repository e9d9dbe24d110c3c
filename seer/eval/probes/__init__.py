"""seer's research probes of the world (not benchmarks: they print findings as JSON, not speed or cost), each run as
``seer world probe NAME [ARGS ...]`` (``seer world probe NAME --help`` for its arguments). They moved here from
``bench/`` (issue 21), which keeps only what prints speed and cost JSON.

* ``evaluator_shortcut`` — does an evaluator read the instruction or prefer the edited image (``seer.eval.shortcut``)
* ``evaluator_follow`` — does an evaluator's verdict follow its own trace
* ``first_subject_token`` — where a world base's image generation loses the caption's colour
* ``generation_guidance`` — a world base's image generation at several classifier-free guidance scales
* ``rlvr_sanity`` — can RLVR move the verdict at all (black vs white pairs, a control)
"""

from __future__ import annotations

import importlib

PROBES = ("evaluator_shortcut", "evaluator_follow", "first_subject_token", "generation_guidance", "rlvr_sanity")


def run(name: str, argv: list[str]) -> int:
    """The one entry point: run probe ``name`` with its own arguments."""
    if name not in PROBES:
        from seer.cli import UserError

        raise UserError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")
    importlib.import_module(f"seer.eval.probes.{name}").main(argv)
    return 0
