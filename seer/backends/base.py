"""The backend protocol: the one seam between seer and a unified multimodal model (UMM).

Every stage (RLVR, RLMT) and every evaluation talks to a model only through :class:`UnifiedBackend`, so a tiny
real model, a stub or a 7B Janus can stand in for one another. Images cross the seam as ``(H, W, 3)`` uint8 RGB
numpy arrays, never as backend-specific tensors.

Vocabulary of the paper (Sec. 3.1): the model has understanding/reasoning parameters θ (trained) and generation
parameters ϕ (frozen). ``trainable_parameters()`` returns θ; ``frozen_state()`` returns ϕ so tests and runs can
verify it never changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from seer.io import read_json_object

IMAGE_PLACEHOLDER = "<image>"
BACKEND_FILE = "backend.json"  # written by every backend's save(); names the backend kind for load_backend()


class BackendError(ValueError):
    """A model directory, checkpoint or input that a backend cannot use; the message says what was expected."""


def check_image(image: Any, where: str = "image") -> np.ndarray:
    """Return ``image`` as a (H, W, 3) uint8 array, or raise naming ``where`` and the shape that was expected."""
    if hasattr(image, "convert") and not isinstance(image, np.ndarray):  # PIL.Image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise BackendError(f"{where}: expected an RGB numpy array or PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise BackendError(f"{where}: expected shape (H, W, 3) RGB, got {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise BackendError(f"{where}: expected dtype uint8, got {image.dtype}")
    return image


@dataclass(frozen=True)
class Context:
    """A conditioning context: text with ``<image>`` placeholders and the images that fill them, in order.

    The evaluator sees two images (``"... <image> ... <image> ..."``); the reprompting policy sees none.
    """

    text: str
    images: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        n = self.text.count(IMAGE_PLACEHOLDER)
        if n != len(self.images):
            raise BackendError(f"context has {n} {IMAGE_PLACEHOLDER} placeholder(s) but {len(self.images)} image(s)")
        object.__setattr__(
            self, "images", tuple(check_image(im, f"context image {i}") for i, im in enumerate(self.images))
        )


@dataclass(frozen=True)
class SamplingParams:
    """How to sample text. Defaults suit GRPO rollouts (temperature 1, no truncation of the distribution)."""

    max_new_tokens: int = 96
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    greedy: bool = False  # argmax decoding, for evaluation


@dataclass
class Completion:
    """One sampled completion: token ids (no padding, EOS included when emitted), decoded text, and the
    per-token log-probs the sampler saw (diagnostics only: GRPO recomputes them with ``token_logprobs``)."""

    token_ids: list[int]
    text: str
    logprobs: list[float]
    truncated: bool  # True when max_new_tokens was reached before EOS


def per_context_seeds(seed: int | Sequence[int] | None, n_contexts: int) -> list[int] | None:
    """``generate_text``'s ``seed`` as one seed per context, or ``None`` when it is one int (or absent)."""
    if seed is None or isinstance(seed, int):
        return None
    seeds = [int(x) for x in seed]
    if len(seeds) != n_contexts:
        raise BackendError(f"generate_text: {len(seeds)} seeds for {n_contexts} contexts (give one int, or one seed "
                           f"per context)")
    return seeds


@runtime_checkable
class UnifiedBackend(Protocol):
    """What seer needs from a unified multimodal model."""

    kind: str  # short name written into backend.json, e.g. "token_umm", "janus"

    def generate_text(
        self, contexts: Sequence[Context], n: int, sampling: SamplingParams,
        seed: int | Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """Sample ``n`` completions per context with the current policy θ; returns ``[len(contexts)][n]``.
        No grad. The same seed and inputs give the same completions. ``seed`` may be one int per context: then
        context i's completions are those of ``generate_text([contexts[i]], n, sampling, seed=seed[i])``, so a
        trainer can batch queries without their samples depending on the batch."""
        ...

    def token_logprobs(
        self, contexts: Sequence[Context], completions: Sequence[Sequence[int]], *, reference: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of each completion given its context: ``(logprobs, mask)``, both (B, T) float,
        right-padded to the longest completion, mask 1.0 on real tokens. With grad through θ for the policy;
        ``reference=True`` scores with the frozen reference policy (the initial θ) under ``torch.no_grad``."""
        ...

    def generate_images(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[np.ndarray]:
        """One (H, W, 3) uint8 image per prompt, from the frozen generator ϕ; ``seeds[i]`` fixes image i's
        sampling noise, so the same prompt and seed give the same image. No grad."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """θ: the understanding/reasoning parameters an optimizer may update."""
        ...

    def frozen_state(self) -> dict[str, torch.Tensor]:
        """ϕ: named copies (or views) of every generation parameter, to verify they stay bit-identical."""
        ...

    def after_optimizer_step(self) -> None:
        """Called after every optimizer step. A backend whose θ and ϕ share a tensor (the token UMM's embedding
        rows) restores ϕ's slice here, so weight decay or a stray gradient can never move it."""
        ...

    def set_reference(self) -> None:
        """Freeze the current θ as the reference policy used by ``token_logprobs(reference=True)``."""
        ...

    def train_module(self) -> torch.nn.Module:
        """The module holding θ, for ``accelerator.prepare`` (DDP/FSDP). ``use_train_module`` hands back the
        prepared wrapper, which the backend then uses for differentiable forwards."""
        ...

    def use_train_module(self, module: torch.nn.Module) -> None: ...

    def save(self, path: str | Path) -> None:
        """Write everything needed to rebuild this backend (weights, tokenizers, config) plus ``backend.json``."""
        ...


_LOADERS: dict[str, str] = {
    "token_umm": "seer.backends.token_umm:TokenUMMBackend.load",
    "janus": "seer.backends.janus:JanusBackend.load",
    "harmon": "seer.backends.harmon:HarmonBackend.load",
}


def read_backend_meta(path: str | Path) -> dict[str, Any]:
    """Read ``backend.json`` from a checkpoint directory, with errors that say what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise BackendError(f"{path}: checkpoint directory does not exist")
    meta_file = path / BACKEND_FILE
    meta = read_json_object(meta_file, BackendError,
                            "missing; expected a seer checkpoint written by a backend's save()")
    if "kind" not in meta:
        raise BackendError(f"{meta_file}: expected an object with a 'kind' field, one of {sorted(_LOADERS)}")
    return meta


def check_device(device: str | None, what: str = "--device") -> None:
    """A device torch can use here; otherwise a BackendError saying why (a CPU build of torch asked for ``cuda``
    fails deep inside torch with a bare AssertionError, long after the run folder was touched)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BackendError(f"{what} {device!r}: not a torch device (expected cpu, cuda, cuda:N or mps)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise BackendError(f"{what} {device!r}: {why} (torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"{what} {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackendError(f"{what} {device!r}: MPS is not available in this torch build; use --device cpu")


def load_backend(path: str | Path, kind: str | None = None, **kwargs: Any) -> UnifiedBackend:
    """Open a model directory as a backend. Without ``kind``, the directory must be a seer checkpoint (it names its
    kind in ``backend.json``); with ``kind`` (e.g. ``"janus"`` for a transformers-format Janus directory) that
    backend's loader reads it. ``kwargs`` go to the loader (e.g. ``device``, ``dtype``)."""
    check_device(kwargs.get("device"))
    if kind is None:
        kind = read_backend_meta(path)["kind"]
    if kind not in _LOADERS:
        raise BackendError(f"{Path(path) / BACKEND_FILE}: unknown backend kind {kind!r}; known: {sorted(_LOADERS)}")
    module_name, attr = _LOADERS[kind].split(":")
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(path, **kwargs)


def write_backend_meta(path: str | Path, kind: str, **extra: Any) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / BACKEND_FILE).write_text(json.dumps({"kind": kind, **extra}, indent=2, sort_keys=True) + "\n")


def cache_keyword(model_cls: type) -> str:
    """The forward argument (and output field) that carries the KV cache: ``cache`` from the transformers release
    that deprecated ``past_key_values`` (a FutureWarning, removed in 5.40), ``past_key_values`` in the older releases
    seer admits."""
    import inspect

    try:
        params = inspect.signature(model_cls.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"
