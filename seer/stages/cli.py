"""``seer train rlvr``, ``seer train rlmt``, ``seer reprompt``, ``seer generate``.

The training commands take ``--config recipe.yaml`` and/or ``--key value`` flags for any config key (see
``seer train rlvr --help``); the keys are parsed by :mod:`seer.config` so that an unknown key lists the known ones
and a wrong type names the key, the expected type and the value.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from seer.cli import UserError

_STAGES = {
    "rlvr": ("seer.stages.rlvr", "RLVRConfig", "stage 1: activate the evaluator (RLVR, two-phase curriculum)"),
    "rlmt": ("seer.stages.rlmt", "RLMTConfig", "stage 2: train the reprompting policy against the evaluator (RLMT)"),
}


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train a SEER stage (rlvr, then rlmt)")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    for stage, (_, _, help_text) in _STAGES.items():
        # '+' as prefix: every '--key value' reaches seer.config untouched, which knows the keys and their types
        p = stages.add_parser(stage, help=help_text, prefix_chars="+", add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda a, stage=stage: _train(stage, a.args))
    train.set_defaults(func=lambda a: (train.print_help(), 2)[1])

    rp = subparsers.add_parser("reprompt", help="instruction + prompt → reasoning + reprompt (optionally images)")
    rp.add_argument("--model", required=True, help="a checkpoint dir or a run dir (runs/<name>/rlmt)")
    rp.add_argument("--instruction", required=True, help="the visual instruction a")
    rp.add_argument("--prompt", required=True, help="the minimal prompt p0")
    rp.add_argument("--images", help="write the naive and the reprompted prompt's images side by side to this PNG")
    rp.add_argument("--seed", type=int, default=0, help="seed of sampling and of the image noise (shared)")
    rp.add_argument("--sample", action="store_true", help="sample the reprompt (default: greedy)")
    rp.add_argument("--temperature", type=float, default=1.0, help="sampling temperature with --sample")
    rp.add_argument("--max-new-tokens", type=int, default=64)
    _model_options(rp)
    rp.set_defaults(func=_reprompt)

    gen = subparsers.add_parser("generate", help="prompt → image with the model's frozen generator")
    gen.add_argument("--model", required=True, help="a checkpoint dir or a run dir")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="output PNG path")
    _model_options(gen)
    gen.set_defaults(func=_generate)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", help="backend kind for a raw model directory (e.g. janus); default: backend.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 or bfloat16; default: the checkpoint's")


def _stage(stage: str) -> tuple[Any, type]:
    import importlib

    module_name, cls_name, _ = _STAGES[stage]
    module = importlib.import_module(module_name)
    config_module = importlib.import_module("seer.config")
    return module, getattr(config_module, cls_name)


def _train(stage: str, tokens: list[str]) -> int:
    from seer.config import describe, load_config

    module, cls = _stage(stage)
    if any(t in ("-h", "--help") for t in tokens):
        print(f"usage: seer train {stage} [--config recipe.yaml] [--key value ...] [--resume] [--overwrite] "
              f"[--dry-run]\n\n{_STAGES[stage][2]}\n\n{describe(cls)}")
        return 0
    config_path, rest, i = None, [], 0
    while i < len(tokens):
        if tokens[i] == "--debug":  # how to report errors, not a config key (seer.cli reads it)
            os.environ["SEER_DEBUG"] = "1"
            i += 1
        elif tokens[i] == "--config":
            if i + 1 >= len(tokens):
                raise UserError("--config needs a recipe path")
            config_path, i = tokens[i + 1], i + 2
        elif tokens[i].startswith("--config="):
            config_path, i = tokens[i].split("=", 1)[1], i + 1
        else:
            rest.append(tokens[i])
            i += 1
    cfg = load_config(cls, config_path, rest)
    run_dir = module.train(cfg)
    if not cfg.dry_run and os.environ.get("RANK", "0") == "0":  # one line, from the main process
        print(f"seer train {stage}: done; run directory {run_dir}")
    return 0


def _open(args: argparse.Namespace) -> Any:
    from seer.backends.base import load_backend
    from seer.config import resolve_checkpoint

    path = Path(args.model) if args.backend else resolve_checkpoint(args.model, "--model")
    kwargs = {"device": args.device, **({"dtype": args.dtype} if args.dtype else {})}
    return load_backend(path, kind=args.backend, **kwargs)


def run_templates(model: str | Path) -> Any:
    """The templates a model was trained with: from the ``config.yaml`` of its run (``--model runs/x/rlmt`` or
    ``runs/x/rlmt/model``), else the defaults."""
    from seer.config import load_yaml
    from seer.prompts import DEFAULT_TEMPLATES, Templates

    model = Path(model)
    for config in (model / "config.yaml", model.parent / "config.yaml"):
        if config.is_file():
            block = (load_yaml(config, UserError) or {}).get("templates")
            if isinstance(block, dict):
                try:
                    return Templates(**block)
                except (TypeError, ValueError) as e:
                    raise UserError(f"{config}: templates: {e}") from e
    return DEFAULT_TEMPLATES


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2) -> np.ndarray:
    """Two (H, W, 3) images next to each other with a white gap (heights padded to the taller one)."""
    h = max(left.shape[0], right.shape[0])

    def pad(im: np.ndarray) -> np.ndarray:
        return np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)), constant_values=255)

    return np.concatenate([pad(left), np.full((h, gap, 3), 255, np.uint8), pad(right)], axis=1)


def _check_out_file(path: str, flag: str) -> None:
    """An output PNG path that can be written: checked before the model is loaded, not after the work is done."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected the path of a PNG file to write")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
            break


def unknown_words(backend: Any, text: str) -> list[str]:
    """The words of ``text`` the backend's tokenizer maps to ``<unk>`` (a word-level vocabulary: the world model);
    [] for a backend without one (BPE tokenizers spell out any word)."""
    encode, unk = getattr(backend, "encode_context", None), getattr(backend, "unk_id", None)
    if encode is None or unk is None:
        return []
    from seer.backends.base import Context

    out = []
    for word in dict.fromkeys(text.split()):
        if unk in encode(Context(word)):
            out.append(word)
    return out


def check_vocabulary(backend: Any, args: argparse.Namespace, **texts: str) -> None:
    """Refuse words the model cannot read: it would see ``<unk>`` and answer about something else, silently."""
    bad = {flag: words for flag, text in texts.items() if (words := unknown_words(backend, text))}
    if not bad:
        return
    from seer.config import resolve_checkpoint

    listed = "its tokenizer"
    try:
        ckpt = Path(args.model) if args.backend else resolve_checkpoint(args.model, "--model")
        if (ckpt / "tokenizer.json").is_file():
            listed = f"the vocabulary in {ckpt / 'tokenizer.json'}"
    except UserError:
        pass
    said = "; ".join(f"--{flag} has {', '.join(map(repr, words))}" for flag, words in bad.items())
    world = ""
    if getattr(backend, "kind", None) == "token_umm":
        from seer.world.render import SUBJECTS

        world = f"; the world model draws {len(SUBJECTS)} subjects: {', '.join(SUBJECTS)}"
    raise UserError(f"words the model does not know (it would read each as <unk>): {said}; use words from "
                    f"{listed}{world}")


def _reprompt(args: argparse.Namespace) -> int:
    from seer.backends.base import Context, SamplingParams
    from seer.data import naive_concat, save_image
    from seer.prompts import parse_reprompt

    if not args.instruction.strip() or not args.prompt.strip():
        raise UserError("--instruction and --prompt must be non-empty")
    if args.images:
        _check_out_file(args.images, "--images")
    backend = _open(args)
    check_vocabulary(backend, args, instruction=args.instruction, prompt=args.prompt)
    context = Context(run_templates(args.model).reprompt_text(args.instruction, args.prompt))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              greedy=not args.sample)
    completion = backend.generate_text([context], 1, sampling, seed=args.seed)[0][0]
    parsed = parse_reprompt(completion.text)
    naive = naive_concat(args.instruction, args.prompt)
    if parsed.ok:
        print(f"reasoning: {parsed.think}\nreprompt: {parsed.answer}")
    else:
        print(f"the completion did not follow the reprompt format:\n{completion.text}\n(naive prompt: {naive})")
    if args.images:
        prompts = [naive] + ([parsed.answer] if parsed.ok else [])
        images = backend.generate_images(prompts, [args.seed] * len(prompts))
        right = images[1] if parsed.ok else np.full_like(images[0], 255)
        save_image(args.images, side_by_side(images[0], right))
        print(f"wrote {args.images}: left = naive prompt, right = reprompt (same seed {args.seed})")
    return 0 if parsed.ok else 1


def _generate(args: argparse.Namespace) -> int:
    from seer.data import save_image

    if not args.prompt.strip():
        raise UserError("--prompt must be non-empty")
    _check_out_file(args.out, "--out")
    backend = _open(args)
    check_vocabulary(backend, args, prompt=args.prompt)
    image = backend.generate_images([args.prompt], [args.seed])[0]
    save_image(args.out, image)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})")
    return 0
