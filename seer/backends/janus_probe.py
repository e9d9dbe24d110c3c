"""Measurements of how the Janus backend runs, shared by ``tests/test_janus_*.py`` and ``bench/bench_janus_step.py``.

* :class:`CallCounter` records every forward of the language model and of the understanding encoder (SigLIP) with
  its batch size, under a phase label, so a test or the bench can say "the judge made N sequential language-model
  calls of batch B" instead of timing anything.
* :func:`precision_probe` trains θ of a tiny Janus for a few AdamW steps at an RL learning rate in float32, in plain
  bf16 and in bf16 with float32 master weights, and compares each bf16 update with the float32 one.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch


class CallCounter:
    """Counts forwards of ``janus.model.language_model`` and ``janus.model.vision_model`` of one or more backends.

    ``calls[phase]`` is the list of language-model batch sizes in call order (one entry per sequential call);
    ``encodes[phase]`` the batch sizes of the understanding encoder's calls (images encoded)."""

    def __init__(self, *backends: Any) -> None:
        self.phase = "other"
        self.calls: dict[str, list[int]] = defaultdict(list)
        self.encodes: dict[str, list[int]] = defaultdict(list)
        self._handles = []
        seen: set[int] = set()
        for b in backends:
            models = [b.janus]
            if b.peft_model is None and not getattr(b, "_frozen_adapter", False):
                # full fine-tuning scores the reference with a separate frozen model: load it now so that its
                # forwards are counted too (LoRA switches adapters on the same model)
                if not isinstance(b._reference, torch.nn.Module):
                    b._reference = b._loaded_model()
                models.append(b._reference)
            for m in models:
                if id(m.model) in seen:  # backends sharing one base (LoRA judge view) count once
                    continue
                seen.add(id(m.model))
                self._handles.append(m.model.language_model.register_forward_pre_hook(self._lm, with_kwargs=True))
                self._handles.append(m.model.vision_model.register_forward_pre_hook(self._vis, with_kwargs=True))

    @staticmethod
    def _batch(args: tuple, kwargs: dict) -> int:
        for t in (*args, *kwargs.values()):
            if isinstance(t, torch.Tensor) and t.dim() >= 2:
                return int(t.shape[0])
        return 0

    def _lm(self, module: Any, args: tuple, kwargs: dict) -> None:
        x = kwargs.get("inputs_embeds", kwargs.get("input_ids"))
        self.calls[self.phase].append(int(x.shape[0]) if x is not None else self._batch(args, kwargs))

    def _vis(self, module: Any, args: tuple, kwargs: dict) -> None:
        x = kwargs.get("pixel_values", args[0] if args else None)
        self.encodes[self.phase].append(int(x.shape[0]) if x is not None else 0)

    @contextlib.contextmanager
    def as_phase(self, phase: str) -> Iterator[None]:
        before, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = before

    def wrap(self, fn: Any, phase: str) -> Any:
        """``fn`` counting its calls under ``phase`` (e.g. ``policy.generate_text = counter.wrap(..., "rollout")``)."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.as_phase(phase):
                return fn(*args, **kwargs)

        return wrapped

    def summary(self) -> dict[str, dict[str, Any]]:
        phases = sorted(set(self.calls) | set(self.encodes))
        return {p: {"sequential_calls": len(self.calls[p]), "batch_sizes": sorted(set(self.calls[p])),
                    "rows": sum(self.calls[p]), "images_encoded": sum(self.encodes[p])} for p in phases}

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _theta_vector(backend: Any) -> torch.Tensor:
    return torch.cat([p.detach().float().reshape(-1).cpu() for p in backend.trainable_parameters()])


def precision_probe(model_dir: str | Path, *, steps: int = 10, lr: float = 1e-6,
                    settings: Sequence[tuple[str, dict[str, Any]]] | None = None) -> dict[str, dict[str, float]]:
    """Train θ of the Janus at ``model_dir`` for ``steps`` AdamW steps at ``lr`` on one fixed two-image context and
    fixed completions (loss: minus their mean log-prob), once per setting. Returns, per setting, the fraction of
    θ's entries that changed, and for the non-float32 settings the ratio of its update norm to the float32 run's and
    the cosine between the two updates. bf16 settings need a CPU that runs bf16 (or a patched
    ``cpu_supports_bf16``; emulated bf16 is slow but exact)."""
    import numpy as np

    from seer.backends.base import Context
    from seer.backends.janus import JanusBackend

    settings = settings or (("float32", {"dtype": "float32"}),
                            ("bfloat16", {"dtype": "bfloat16"}),
                            ("bfloat16_master_fp32", {"dtype": "bfloat16", "master_weights": "float32"}))
    rng = np.random.default_rng(0)
    images = tuple(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(2))
    ctx = Context("image A : <image> image B : <image> which image follows the instruction ?", images)
    updates: dict[str, torch.Tensor] = {}
    out: dict[str, dict[str, float]] = {}
    for name, opts in settings:
        torch.manual_seed(0)
        b = JanusBackend.load(model_dir, **opts)
        completions = [[b.tokenizer.convert_tokens_to_ids(w) for w in ("A", "B", "or", "?")], [
            b.tokenizer.convert_tokens_to_ids(w) for w in ("B", "the", "cat")]]
        theta0 = _theta_vector(b)
        opt = torch.optim.AdamW(b.trainable_parameters(), lr=lr, weight_decay=0.0)
        for _ in range(steps):
            logp, mask = b.token_logprobs([ctx] * 2, completions)
            loss = -(logp * mask).sum() / mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            b.after_optimizer_step()
        delta = _theta_vector(b) - theta0
        updates[name] = delta
        state = next(iter(opt.state.values()), {})
        out[name] = {"changed_fraction": float((delta != 0).float().mean()),
                     "update_norm": float(delta.norm()),
                     "optimizer_state_dtype": str(state.get("exp_avg", torch.empty(0)).dtype).removeprefix("torch."),
                     "theta_dtype": b.precision()["theta"]}
    ref = updates.get("float32")
    if ref is not None:
        for name, delta in updates.items():
            out[name]["update_norm_ratio"] = float(delta.norm() / ref.norm())
            out[name]["cosine"] = float(torch.nn.functional.cosine_similarity(delta, ref, dim=0))
    return out


__all__ = ["CallCounter", "precision_probe"]
