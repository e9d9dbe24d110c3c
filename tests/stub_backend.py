"""A stub unified model for tier-2 tests: implements the backend protocol with a conditioned bigram over a
dozen words, so stage wiring can be tested in milliseconds and with outcomes we can predict.

* Text: next-token logits = ``table[prev] + s · cond[prev] + r · mode[prev]`` where ``s`` = sign(mean brightness of
  image A − image B) (0 without images) and ``r`` = 1 for a text-only (reprompting) context. θ = table, cond, mode.
  The initial table follows the completion formats with a few percent of format failures; the A/B verdict and the
  reprompt word are the free choices.
* Images: a flat grey image whose brightness is set by the prompt's words (``bright`` 220, ``dark`` 30, else 120)
  plus seeded noise; the word→brightness table is ϕ (frozen).
* ``judge(prefer_brighter=True)`` gives a deterministic evaluator that picks the brighter image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from seer.backends import base
from seer.backends.base import Completion, Context, SamplingParams, write_backend_meta

base._LOADERS.setdefault("stub", "stub_backend:StubBackend.load")

WORDS = ["<eos>", "<bos>", "<think>", "</think>", "<answer>", "</answer>", "A", "B", "<reprompt>", "</reprompt>",
         "hmm", "bright", "dark", "cat"]
IX = {w: i for i, w in enumerate(WORDS)}
V = len(WORDS)
BRIGHTNESS = {"bright": 220.0, "dark": 30.0}
SIZE = (8, 8)


def _initial_table() -> torch.Tensor:
    t = torch.full((V, V), -4.0)

    def link(a: str, b: str, v: float = 4.0) -> None:
        t[IX[a], IX[b]] = v

    link("<bos>", "<think>")
    link("<think>", "hmm")
    link("hmm", "</think>", 3.0)
    link("hmm", "hmm", 1.0)
    link("</think>", "<answer>")
    link("</think>", "<reprompt>")
    link("<answer>", "A")
    link("<answer>", "B")
    link("A", "</answer>")
    link("B", "</answer>")
    link("</answer>", "<eos>")
    for w in ("bright", "dark", "cat"):
        link("<reprompt>", w)
        link(w, "</reprompt>")
    link("</reprompt>", "<eos>")
    return t


class _Policy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(_initial_table())
        self.cond = torch.nn.Parameter(torch.zeros(V, V))
        self.mode = torch.nn.Parameter(torch.zeros(V, V))
        with torch.no_grad():  # text-only contexts ask for a reprompt, image contexts for a verdict
            self.mode[IX["</think>"], IX["<reprompt>"]] = 8.0
            self.mode[IX["</think>"], IX["<answer>"]] = -8.0
            self.table[IX["</think>"], IX["<reprompt>"]] = -4.0

    def forward(self, prev: torch.Tensor, s: float, r: float) -> torch.Tensor:
        return self.table[prev] + s * self.cond[prev] + r * self.mode[prev]  # (T, V)


def _features(context: Context) -> tuple[float, float]:
    if len(context.images) == 2:
        d = float(context.images[0].astype(np.float64).mean() - context.images[1].astype(np.float64).mean())
        return float(np.sign(d)), 0.0
    return 0.0, 1.0


class StubBackend:
    kind = "stub"
    image_size = SIZE

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.policy = _Policy()
        self._forward_module: torch.nn.Module = self.policy
        self.brightness = torch.tensor([BRIGHTNESS.get(w, 120.0) for w in WORDS])  # ϕ
        self.set_reference()

    # -- protocol ------------------------------------------------------------------------------------------------
    def generate_text(
        self, contexts: Sequence[Context], n: int, sampling: SamplingParams, seed: int | Sequence[int] | None = None
    ) -> list[list[Completion]]:
        if seed is not None and not isinstance(seed, int):  # one seed per context
            return [self.generate_text([c], n, sampling, seed=s)[0] for c, s in zip(contexts, seed, strict=True)]
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        out = []
        with torch.no_grad():
            for ctx in contexts:
                s, r = _features(ctx)
                group = []
                for _ in range(n):
                    ids, lps, prev = [], [], IX["<bos>"]
                    while len(ids) < sampling.max_new_tokens:
                        logits = self.policy(torch.tensor([prev]), s, r)[0]
                        logp = torch.log_softmax(logits / max(sampling.temperature, 1e-6), -1)
                        if sampling.greedy:
                            tok = int(logp.argmax())
                        else:
                            tok = int(torch.multinomial(logp.exp(), 1, generator=gen))
                        ids.append(tok)
                        lps.append(float(logp[tok]))
                        prev = tok
                        if tok == IX["<eos>"]:
                            break
                    text = " ".join(WORDS[i] for i in ids if i != IX["<eos>"])
                    group.append(Completion(ids, text, lps, truncated=ids[-1] != IX["<eos>"]))
                out.append(group)
        return out

    def token_logprobs(
        self, contexts: Sequence[Context], completions: Sequence[Sequence[int]], *, reference: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        module = self.reference if reference else self._forward_module
        T = max(len(c) for c in completions)
        rows, mask = [], torch.zeros(len(completions), T)
        with torch.set_grad_enabled(not reference and torch.is_grad_enabled()):
            for b, (ctx, ids) in enumerate(zip(contexts, completions, strict=True)):
                s, r = _features(ctx)
                ids_t = torch.tensor(list(ids), dtype=torch.long)
                prev = torch.cat([torch.tensor([IX["<bos>"]]), ids_t[:-1]])
                lp = torch.log_softmax(module(prev, s, r), -1).gather(1, ids_t[:, None])[:, 0]
                rows.append(torch.nn.functional.pad(lp, (0, T - len(ids))))
                mask[b, : len(ids)] = 1.0
        return torch.stack(rows), mask

    def generate_images(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[np.ndarray]:
        images = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            known = [self.brightness[IX[w]].item() for w in prompt.split() if w in ("bright", "dark")]
            level = np.mean(known) if known else 120.0
            noise = np.random.default_rng(int(seed)).normal(0, 5, size=(*SIZE, 1))
            images.append(np.clip(level + noise, 0, 255).repeat(3, axis=2).astype(np.uint8))
        return images

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.policy.parameters())

    def frozen_state(self) -> dict[str, torch.Tensor]:
        return {"generator.brightness": self.brightness}

    def after_optimizer_step(self) -> None:
        pass

    def set_reference(self) -> None:
        import copy

        self.reference = copy.deepcopy(self.policy).requires_grad_(False)

    def train_module(self) -> torch.nn.Module:
        return self.policy

    def use_train_module(self, module: torch.nn.Module) -> None:
        self._forward_module = module

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"policy": self.policy.state_dict(), "brightness": self.brightness}, path / "stub.pt")
        (path / "note.json").write_text(json.dumps({"words": WORDS}))
        write_backend_meta(path, self.kind)

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> StubBackend:
        path = Path(path)
        if not (path / "stub.pt").is_file():
            raise base.BackendError(f"{path / 'stub.pt'}: missing; expected a stub checkpoint")
        b = cls()
        state = torch.load(path / "stub.pt")
        b.policy.load_state_dict(state["policy"])
        b.brightness = state["brightness"]
        b.set_reference()
        return b

    # -- test helpers -------------------------------------------------------------------------------------------
    def make_judge(self, prefer_brighter: bool = True) -> StubBackend:
        """Turn this stub into a deterministic pairwise judge: verdict = the brighter (or darker) image."""
        sign = 10.0 if prefer_brighter else -10.0
        with torch.no_grad():
            self.policy.cond[IX["<answer>"], IX["A"]] = sign
            self.policy.cond[IX["<answer>"], IX["B"]] = -sign
            self.policy.table[IX["</think>"], IX["<answer>"]] = 8.0
        self.set_reference()
        return self


def judge(prefer_brighter: bool = True) -> StubBackend:
    return StubBackend().make_judge(prefer_brighter)


# -- tiny data for the stub ----------------------------------------------------------------------------------------
def write_stub_data(root: Path, n_phase1: int = 6, n_phase2: int = 4, n_samples: int = 6) -> dict[str, Path]:
    """A base stub checkpoint, quadruplets (chosen = bright, rejected = dark) and samples under ``root``."""
    from seer.data import Quadruplet, Sample, save_image, write_jsonl

    root = Path(root)
    StubBackend().save(root / "base")
    judge().save(root / "judge")
    # the judge stands for a finished RLVR run's evaluator: RLMT refuses one that is not (issue 25 item 8)
    (root / "judge" / "meta.json").write_text('{"stage": "rlvr"}\n')
    save_image(root / "img" / "bright.png", np.full((*SIZE, 3), 200, np.uint8))
    save_image(root / "img" / "dark.png", np.full((*SIZE, 3), 40, np.uint8))
    quads = [Quadruplet(f"q1-{i}", 1, "", f"a cat {i}", "material_synthesis", "img/bright.png", "img/dark.png")
             for i in range(n_phase1)]
    quads += [Quadruplet(f"q2-{i}", 2, "make it glow", f"a cat {i}", "semantic_edit", "img/bright.png",
                         "img/dark.png") for i in range(n_phase2)]
    write_jsonl(root / "quadruplets.jsonl", quads)
    write_jsonl(root / "samples.jsonl", [Sample(f"s{i}", "make it glow", f"a cat {i}", "material_synthesis")
                                         for i in range(n_samples)])
    return {"base": root / "base", "judge": root / "judge", "quadruplets": root / "quadruplets.jsonl",
            "samples": root / "samples.jsonl", "runs": root / "runs"}
