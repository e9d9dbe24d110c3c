"""Who judges the images: the :class:`Judge` protocol the win ratios and failure modes are measured with.

The default judge is the world's oracle (``seer.world.OracleJudge``): the stand-in for the paper's six human
annotators (App. A.2). Anything with the same three members can take its place — a VLM judge, another model's
evaluator (:class:`EvaluatorJudge` below), or human votes collected by ``seer annotate`` (those arrive as finished
scores, not as a live judge, and are put side by side with the oracle's by ``seer annotate results``).

A judge never sees which system made which image: :func:`compare` is called with the images in a random order chosen
by the caller and its answer is mapped back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from seer.backends.base import BackendError, Context, SamplingParams, check_image
from seer.data import Sample
from seer.prompts import DEFAULT_TEMPLATES, Templates, parse_verdict


class JudgeError(BackendError):
    """A judge that cannot read the images it is given (wrong size, wrong format)."""


@runtime_checkable
class Judge(Protocol):
    """Judges images of one (instruction, prompt) sample."""

    name: str

    def assess(self, sample: Sample, image: np.ndarray) -> Any:
        """An assessment of one image with (at least) the fields ``compliance``, ``satisfied``, ``subject_kept``,
        ``consistency``, ``quality``, ``off_target``, ``attributes`` — the oracle's ``Assessment``."""
        ...

    def compare(self, sample: Sample, image_a: np.ndarray, image_b: np.ndarray) -> float:
        """1.0 if ``image_a`` better satisfies the instruction while keeping the prompt's subject, 0.0 if
        ``image_b`` does, 0.5 for a tie (App. A.2)."""
        ...


def judge_image_size(judge: Any) -> tuple[int, int] | None:
    """The (H, W) a judge reads, when it says (``image_size`` attribute); None when it reads any size."""
    size = getattr(judge, "image_size", None)
    return None if size is None else (int(size[0]), int(size[1]))


def check_judge_images(judge: Any, images: Sequence[np.ndarray], where: str) -> None:
    """Raise :class:`JudgeError` naming ``where`` if ``judge`` cannot read one of ``images``."""
    size = judge_image_size(judge)
    for i, image in enumerate(images):
        try:
            image = check_image(image, f"{where}: image {i}")
        except BackendError as e:
            raise JudgeError(str(e)) from e
        if size is not None and image.shape[:2] != size:
            raise JudgeError(
                f"{where}: judge {getattr(judge, 'name', type(judge).__name__)!r} reads {size[1]}x{size[0]} images, "
                f"got {image.shape[1]}x{image.shape[0]}; generate with a backend of the judge's image size"
            )


def default_judge(base: str | Path | None = None) -> Judge:
    """The world's oracle judge from a world base (default: the shipped one). It reads the world's 32×32 images
    only; that size is attached as ``image_size`` so a generator of another size is refused with a clear error."""
    from seer.world import base_dir  # imported late: seer.eval must import without the world built
    from seer.world.oracle import OracleJudge
    from seer.world.render import IMAGE_SIZE

    judge = OracleJudge.load(base_dir(base))
    if judge_image_size(judge) is None:
        judge.image_size = (IMAGE_SIZE, IMAGE_SIZE)
    return judge


class EvaluatorJudge:
    """A model's pairwise evaluator (the RLVR prompt, greedy decoding) used as a judge: both presentation orders
    are asked and the verdicts averaged, so a position-biased evaluator yields ties rather than a bias.
    An unparseable verdict counts as no preference (0.5) for that order. It cannot ``assess`` single images."""

    def __init__(self, backend: Any, templates: Templates = DEFAULT_TEMPLATES, name: str = "evaluator",
                 max_new_tokens: int = 96):
        self.backend = backend
        self.templates = templates
        self.name = name
        self.sampling = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)

    def assess(self, sample: Sample, image: np.ndarray) -> Any:
        raise NotImplementedError(f"judge {self.name!r} compares pairs only; failure modes need the oracle")

    def compare(self, sample: Sample, image_a: np.ndarray, image_b: np.ndarray) -> float:
        return self.compare_many([sample], [image_a], [image_b])[0]

    def compare_many(
        self, samples: Sequence[Sample], images_a: Sequence[np.ndarray], images_b: Sequence[np.ndarray]
    ) -> list[float]:
        contexts = []
        for s, a, b in zip(samples, images_a, images_b, strict=True):
            text = self.templates.evaluator_text(s.instruction, s.prompt)
            contexts += [Context(text, (a, b)), Context(text, (b, a))]
        outs = self.backend.generate_text(contexts, 1, self.sampling, seed=0)
        scores = []
        for i in range(len(samples)):
            ab, ba = (parse_verdict(outs[2 * i][0].text).answer, parse_verdict(outs[2 * i + 1][0].text).answer)
            s_ab = {"A": 1.0, "B": 0.0}.get(ab, 0.5)
            s_ba = {"B": 1.0, "A": 0.0}.get(ba, 0.5)
            scores.append((s_ab + s_ba) / 2)
        return scores
