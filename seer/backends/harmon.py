"""Harmon (Wu et al. 2025, the model SEER's paper trains) as a seer backend: a clean-room port, not Harmon's code.

Architecture (``seer/backends/harmon_model.py``, ``harmon_modules.py``): a Qwen2.5 language model (transformers'
native ``Qwen2ForCausalLM``); the KL-16 VAE turns an image into 16-channel latents at 1/16 resolution; the MAR
encoder reads those latents (plus ``buffer_size`` slots filled with a learned "fake latent") and ``proj_in`` maps
them into the language model. *Understanding*: an image's (h·w + buffer) projected encodings fill its ``<image>``
placeholder in the prompt. *Generation*: masked autoregression — each of ``num_iter`` steps encodes the latents known
so far with the MAR encoder, runs them through the language model after the prompt, adds ``proj_out`` of the
result back onto the encodings, decodes with the MAR decoder, and samples the next group of latents (cosine
schedule of how many stay masked, a random order) with the diffusion MLP head, under classifier-free guidance with
the unconditional prompt "Generate an image."; the VAE decodes the final latents.

θ (trained) = the language model with its head, ``proj_in`` and — with ``train_mar_encoder`` (default, like Janus's
``train_vision_encoder``) — the MAR encoder (``z_proj``, ``z_proj_ln``, its position table, blocks and norm).
ϕ (frozen, verified bit-identical by ``frozen_state``) = the VAE, the MAR decoder, the diffusion head, ``proj_out``
and the buffer latent ``fake_latent``. As in the paper's Harmon runs, images come from the *current* θ and frozen ϕ
(``image_generator: current``); ``initial`` uses the model as loaded.

How this departs from Harmon, and why:

* Understanding encodes the VAE posterior *mean*; Harmon samples the posterior. GRPO needs a deterministic scorer
  (sampled log-probs must equal the scorer's), and the mean is the posterior's most likely latent.
* Images for understanding are resized to ``understanding_image_size`` squared (bicubic) and scaled to [-1, 1]:
  seer's choice — Harmon's own understanding preprocessing was not available to us.
* Generation draws the order and all diffusion noise for image i from ``torch.Generator(seed_i)`` on the CPU, one
  image at a time; Harmon draws from the global numpy/torch RNGs (so an image depends on its batch mates and the
  device). The guided diffusion step carries only the conditional rows (Harmon computes the unconditional half and
  then discards it: the samples are the same in distribution, half the noise draws).
* Prompts are left-padded with position ids from the mask (Harmon right-pads its prefill): the same attention.
* No dropout anywhere (ϕ is never trained; θ's Qwen2 has none) and MAR's unused class-label table is dropped.
* Pixels out: Harmon's own conversion ``clamp(127.5·x + 128, 0, 255)`` truncated to uint8, kept as is.

Checkpoints: a seer Harmon directory (``python -m seer.backends.harmon convert`` builds one from Harmon's released
``harmon_1.5b.pth``, MAR's ``kl16.ckpt`` and the Qwen2.5-1.5B-Instruct config/tokenizer). A full fine-tune saves
the directory under ``model/``; LoRA saves only the adapter (``adapter/``) and ``backend.json`` points at the base.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seer.backends.base import (
    BACKEND_FILE,
    IMAGE_PLACEHOLDER,
    BackendError,
    Completion,
    Context,
    SamplingParams,
    cache_keyword,
    per_context_seeds,
    write_backend_meta,
)
from seer.backends.harmon_model import (
    DEFAULT_IMAGE_TOKEN,
    HarmonModel,
    load_model,
    read_config,
    save_model,
)
from seer.backends.harmon_modules import CosineDiffusion, sample_latents
from seer.backends.janus import (
    LoraOptions,
    _row_seed,
    check_not_sharded_launch,
    check_peft,
    cpu_supports_bf16,
)

KIND = "harmon"
MODEL_SUBDIR = "model"
ADAPTER_SUBDIR = "adapter"
PHI_MODULES = ("vae", "diffusion_head", "proj_out", "mar.fake_latent", "mar.decoder_embed", "mar.mask_token",
               "mar.decoder_pos_embed_learned", "mar.decoder_blocks", "mar.decoder_norm",
               "mar.diffusion_pos_embed_learned")
THETA_TEXT_MODULES = ("language_model", "proj_in")
THETA_ENCODER_MODULES = ("mar.z_proj", "mar.z_proj_ln", "mar.encoder_pos_embed_learned", "mar.encoder_blocks",
                         "mar.encoder_norm")
QWEN_CHAT_FORMAT = "<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"  # Harmon's prompt template
DEFAULT_LORA_TARGET = r".*language_model\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class HarmonOptions:
    """How a Harmon model is run. Stored in ``backend.json``; any field can be overridden when loading. ``None``
    sampling fields take the model directory's ``sampling`` block (Harmon-1.5B: 512 px, 64 steps, 100 diffusion
    steps, guidance 3)."""

    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights and compute)
    master_weights: str | None = None  # None | float32: θ kept in float32, forwards autocast to dtype
    device: str = "cpu"
    lora: LoraOptions | None = None  # None = full fine-tuning of θ
    adapter_name: str = "default"
    train_mar_encoder: bool = True  # θ includes the MAR encoder (the understanding path's encoder)
    max_images: int = 2  # the evaluator compares two images
    chat_format: str = QWEN_CHAT_FORMAT  # must contain {text}
    system_prompt: str = ""  # seer's choice: Harmon's template has none by default
    understanding_image_size: int | None = None  # square side images are resized to for understanding
    image_size: int | None = None  # generated image side (a multiple of the VAE patch, 16)
    num_iter: int | None = None  # masked-autoregressive steps per image
    diffusion_steps: int | None = None  # diffusion head sampling steps per MAR step
    guidance_scale: float | None = None  # classifier-free guidance (1 = none)
    cfg_schedule: str = "constant"  # constant | linear (guidance grows with the share of tokens known), as Harmon
    image_temperature: float = 1.0  # scales the diffusion head's noise
    generation_template: str = "Generate an image: {prompt}."  # Harmon's text-to-image instruction
    cfg_prompt: str = "Generate an image."  # Harmon's unconditional prompt
    image_batch_size: int = 8  # images per generation batch (x2 rows with guidance)
    image_generator: str = "current"  # current = the trained θ (as the paper); initial = as loaded
    max_batch_rows: int = 0  # most rows decoded together by generate_text; 0 = all
    gradient_checkpointing: bool = False  # recompute the language model's layers in the backward (activation memory)

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise BackendError(f"harmon option dtype={self.dtype!r}: expected one of {sorted(_DTYPES)}")
        if "{text}" not in self.chat_format:
            raise BackendError(f"harmon option chat_format={self.chat_format!r}: must contain {{text}}")
        if "{prompt}" not in self.generation_template:
            raise BackendError(f"harmon option generation_template={self.generation_template!r}: must contain "
                               "{prompt}")
        if self.image_generator not in ("current", "initial"):
            raise BackendError(f"harmon option image_generator={self.image_generator!r}: expected current | initial")
        if self.cfg_schedule not in ("constant", "linear"):
            raise BackendError(f"harmon option cfg_schedule={self.cfg_schedule!r}: expected constant | linear")
        if self.master_weights not in (None, "float32"):
            raise BackendError(f"harmon option master_weights={self.master_weights!r}: expected null or float32")
        if self.max_images < 0 or self.image_batch_size < 1 or self.max_batch_rows < 0:
            raise BackendError("harmon options max_images and max_batch_rows must be >= 0, image_batch_size >= 1")
        for name in ("num_iter", "diffusion_steps", "image_size", "understanding_image_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise BackendError(f"harmon option {name}={v!r}: expected a positive integer")
        if self.guidance_scale is not None and self.guidance_scale < 1.0:
            raise BackendError(f"harmon option guidance_scale={self.guidance_scale}: expected >= 1 (1 = no guidance)")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> HarmonOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackendError(f"{where}: unknown harmon option(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        lora = data.get("lora")
        if isinstance(lora, dict):
            bad = sorted(set(lora) - {f.name for f in fields(LoraOptions)})
            if bad:
                raise BackendError(f"{where}: unknown lora option(s) {bad}")
            data["lora"] = LoraOptions(**{"target_modules": DEFAULT_LORA_TARGET, **lora})
        elif lora is True:
            data["lora"] = LoraOptions(target_modules=DEFAULT_LORA_TARGET)
        elif lora is False:
            data["lora"] = None
        elif lora is not None and not isinstance(lora, LoraOptions):
            raise BackendError(f"{where}: lora must be a mapping of LoRA options, true or null, got {lora!r}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BackendError(f"harmon option device={device!r}: not a torch device ({e})") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"harmon option device={device!r}: CUDA is not available on this machine; use device=cpu")
    if dev.type == "cpu" and dtype == "bfloat16" and not cpu_supports_bf16():
        raise BackendError("harmon option dtype=bfloat16: this CPU has no native bf16 support; use dtype=float32")
    if dev.type == "cpu" and dtype == "float16":
        raise BackendError("harmon option dtype=float16: not supported on CPU; use float32 (or bfloat16)")
    return dev, _DTYPES[dtype]


def _module_params(model: torch.nn.Module, prefixes: Sequence[str]) -> dict[str, torch.nn.Parameter]:
    """Named parameters under any of ``prefixes`` (peft's ``base_model.model.`` prefix stripped first)."""
    out: dict[str, torch.nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        bare = name.removeprefix("base_model.model.")
        if any(bare == pre or bare.startswith(pre + ".") for pre in prefixes):
            out[bare] = p
    return out


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as e:
        raise BackendError(f"{model_dir}: cannot load the tokenizer ({e})") from e


class HarmonBackend:
    """The seer backend protocol for a seer Harmon directory (see the module docstring)."""

    kind = KIND

    def __init__(self, model: HarmonModel, tokenizer: Any, options: HarmonOptions, *, base_dir: Path,
                 peft_model: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.base_dir = base_dir
        self.peft_model = peft_model
        self.device = next(model.parameters()).device
        self.dtype = _DTYPES[options.dtype]
        self._cache_kw = cache_keyword(type(model.language_model.model))
        self._train_wrapper: torch.nn.Module | None = None
        self._reference: Any = None  # frozen HarmonModel, or the name of a frozen LoRA adapter
        self._initial: HarmonModel | None = None
        self._steps = 0

        sampling = dict(model.config.get("sampling", {}))
        self.understanding_size = options.understanding_image_size or int(
            sampling.get("understanding_image_size", model.mar_cfg.img_size))
        self.generated_image_size = options.image_size or int(sampling.get("image_size", model.mar_cfg.img_size))
        self.num_iter = options.num_iter or int(sampling.get("num_iter", 64))
        self.diffusion_steps = options.diffusion_steps or int(sampling.get("diffusion_steps",
                                                                           model.mar_cfg.num_sampling_steps))
        self.guidance_scale = options.guidance_scale if options.guidance_scale is not None else float(
            sampling.get("guidance_scale", 3.0))
        patch = model.patch
        for name, size in (("understanding_image_size", self.understanding_size),
                           ("image_size", self.generated_image_size)):
            if size % patch:
                raise BackendError(f"harmon option {name}={size}: not a multiple of the VAE patch ({patch} pixels: "
                                   f"VAE stride {model.vae_cfg.stride} x MAR patch {model.mar_cfg.patch_size})")
        self.schedule = CosineDiffusion(self.diffusion_steps)
        self.num_image_tokens = model.slots_per_image(self.understanding_size)
        self.image_token_id = model.image_token_id
        self.eos_token_id = tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise BackendError(f"{base_dir}: tokenizer has no eos_token; completions could never end")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        self.max_positions = int(getattr(model.language_model.config, "max_position_embeddings", 1 << 30))

        for p in model.parameters():
            p.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)
        self._autocast_on = (options.master_weights == "float32" and peft_model is None
                             and self.dtype != torch.float32)
        if self._autocast_on:
            for p in self.trainable_parameters():
                p.data = p.data.float()
        if options.gradient_checkpointing:
            lm = model.language_model
            (getattr(lm, "activation_checkpointing_enable", None) or lm.gradient_checkpointing_enable)()
        if peft_model is not None:
            self.set_reference()

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, *, share_base_with: HarmonBackend | None = None, **overrides: Any
             ) -> HarmonBackend:
        """Open a seer Harmon directory or a seer Harmon checkpoint (``backend.json``); ``overrides`` are
        :class:`HarmonOptions` fields."""
        path = Path(path)
        if not path.is_dir():
            raise BackendError(f"{path}: model directory does not exist")
        if share_base_with is not None:
            raise BackendError(f"{path}: share_base_with (share_evaluator_base) is not implemented for the harmon "
                               "backend; load the evaluator on its own (share_evaluator_base: false)")
        meta_file = path / BACKEND_FILE
        meta: dict[str, Any] = {}
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
            except json.JSONDecodeError as e:
                raise BackendError(f"{meta_file}: not valid JSON ({e})") from e
            if meta.get("kind") != KIND:
                raise BackendError(f"{meta_file}: kind {meta.get('kind')!r}, expected {KIND!r}")
        options = HarmonOptions.from_dict({**dict(meta.get("options", {})), **overrides},
                                          str(meta_file if meta else path))
        adapter_dir = path / ADAPTER_SUBDIR if meta.get("adapter") else None
        base_dir = path
        if meta:
            if "base_model" not in meta:
                raise BackendError(f"{meta_file}: missing 'base_model' (where the Harmon weights are)")
            base_dir = Path(meta["base_model"])
            base_dir = base_dir if base_dir.is_absolute() else path / base_dir
            if not base_dir.is_dir():
                raise BackendError(f"{meta_file}: base_model {str(base_dir)!r} does not exist")
        if adapter_dir is not None and options.lora is None:
            raise BackendError(f"{meta_file}: a LoRA checkpoint needs lora options (saved ones were removed)")
        check_not_sharded_launch()
        dev, dtype = resolve_device_dtype(options.device, options.dtype)
        read_config(base_dir)
        tokenizer = load_tokenizer(base_dir)
        model = load_model(base_dir, dtype).to(dev).eval()
        peft_model = None
        if options.lora is not None:
            peft_model = cls._wrap_lora(model, options, adapter_dir)
        return cls(model, tokenizer, options, base_dir=base_dir.resolve(), peft_model=peft_model)

    @staticmethod
    def _wrap_lora(model: HarmonModel, options: HarmonOptions, adapter_dir: Path | None) -> Any:
        try:
            from peft import LoraConfig, PeftModel, get_peft_model
        except ImportError as e:
            raise BackendError("harmon option lora needs the peft package: pip install 'seer[lora]'") from e
        check_peft(PeftModel)
        name = options.adapter_name
        if adapter_dir is not None:
            src = adapter_dir / name
            if not (src / "adapter_config.json").is_file():
                raise BackendError(f"{src}: no LoRA adapter {name!r} saved here")
            return PeftModel.from_pretrained(model, str(src), adapter_name=name, is_trainable=True)
        lo = options.lora
        cfg = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules)
        return get_peft_model(model, cfg, adapter_name=name)

    # ---------------------------------------------------------------- θ / ϕ
    def _theta_prefixes(self) -> tuple[str, ...]:
        return THETA_TEXT_MODULES + (THETA_ENCODER_MODULES if self.options.train_mar_encoder else ())

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        if self.peft_model is not None:
            name = self.options.adapter_name
            return [p for n, p in self.peft_model.named_parameters() if f".{name}." in n and "lora_" in n]
        seen: set[int] = set()
        out = []
        for p in _module_params(self.model, self._theta_prefixes()).values():
            if id(p) not in seen:  # the LM head is tied to the input embeddings in Qwen2.5-1.5B
                seen.add(id(p))
                out.append(p)
        return out

    def frozen_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in _module_params(self.model, PHI_MODULES).items()}

    def after_optimizer_step(self) -> None:
        self._steps += 1  # θ and ϕ are disjoint parameters: nothing to restore

    def describe(self) -> dict[str, Any]:
        theta = sum(p.numel() for p in self.trainable_parameters())
        phi = sum(t.numel() for t in self.frozen_state().values())
        total = sum(p.numel() for p in self.model.parameters())
        return {
            "kind": KIND, "base_model": str(self.base_dir), "device": str(self.device), "dtype": str(self.dtype),
            "params_total": total, "params_theta_trainable": theta, "params_phi_frozen": phi,
            "lora": asdict(self.options.lora) if self.options.lora else None,
            "num_image_tokens": self.num_image_tokens, "understanding_image_size": self.understanding_size,
            "generated_image_size": self.generated_image_size, "max_images": self.options.max_images,
            "num_iter": self.num_iter, "diffusion_steps": self.diffusion_steps, "guidance_scale": self.guidance_scale,
            "max_position_embeddings": self.max_positions, "precision": self.precision(),
        }

    def precision(self) -> dict[str, str]:
        theta = self.trainable_parameters()
        theta_dtype = str(theta[0].dtype).removeprefix("torch.") if theta else "none (frozen)"
        return {"weights": self.options.dtype, "theta": theta_dtype, "optimizer_state": theta_dtype,
                "compute": self.options.dtype}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self._autocast_on:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def check_request(self, images_per_context: int, max_text_tokens: int = 0) -> None:
        if images_per_context > self.options.max_images:
            raise BackendError(f"{images_per_context} image(s) per context requested but this Harmon backend accepts "
                               f"at most max_images={self.options.max_images}")
        need = images_per_context * self.num_image_tokens + max_text_tokens
        if need > self.max_positions:
            raise BackendError(f"{images_per_context} image(s) x {self.num_image_tokens} tokens + {max_text_tokens} "
                               f"text tokens = {need} exceeds max_position_embeddings={self.max_positions}")

    @property
    def unk_id(self) -> int | None:
        return self.tokenizer.unk_token_id

    def encode_context(self, context: Context, where: str = "context") -> list[int]:
        if len(context.images) > self.options.max_images:
            raise BackendError(f"{where}: {len(context.images)} images but this Harmon backend accepts at most "
                               f"max_images={self.options.max_images}")
        return self._prompt_ids(context.text)

    def check_length(self, n_positions: int, what: str) -> None:
        if n_positions > self.max_positions:
            raise BackendError(f"{what} needs {n_positions} positions but the model has max_position_embeddings="
                               f"{self.max_positions}")

    # ---------------------------------------------------------------- adapters and reference
    def _activate(self, adapter: str | None = None, trainable: bool | None = None) -> None:
        if self.peft_model is None:
            return
        name = adapter or self.options.adapter_name
        self.peft_model.set_adapter(name, inference_mode=not (adapter is None if trainable is None else trainable))

    def set_reference(self) -> None:
        """Freeze the current θ as the reference. Without a call, the reference is θ as loaded (the LoRA adapter
        snapshot taken at load, or the weights re-read from disk on first use, so a resume cannot move it)."""
        if self.peft_model is not None:
            from peft import get_peft_model_state_dict, set_peft_model_state_dict

            ref = f"{self.options.adapter_name}__reference"
            if ref not in self.peft_model.peft_config:
                self.peft_model.add_adapter(ref, self.peft_model.peft_config[self.options.adapter_name])
            state = get_peft_model_state_dict(self.peft_model, adapter_name=self.options.adapter_name)
            set_peft_model_state_dict(self.peft_model, state, adapter_name=ref)
            self._reference = ref
            self._activate()
            return
        memo = {id(p): p for p in self.frozen_state().values()}  # share ϕ's tensors, copy the rest
        clone = copy.deepcopy(self.model, memo)
        for p in clone.parameters():
            p.requires_grad_(False)
        self._reference = clone.eval()

    def _loaded_model(self) -> HarmonModel:
        if self._initial is None:
            model = load_model(self.base_dir, self.dtype)
            for p in model.parameters():
                p.requires_grad_(False)
            self._initial = model.to(self.device).eval()
        return self._initial

    @contextlib.contextmanager
    def _scoring_model(self, reference: bool) -> Iterator[Any]:
        """The callable for a scoring forward: the policy (its prepared wrapper if any) or the frozen reference."""
        if not reference:
            self._activate()
            # transformers checkpoints only in train mode; Qwen2 has no dropout, so train mode changes nothing else
            train = self.options.gradient_checkpointing and torch.is_grad_enabled()
            if train:
                self.model.language_model.train()
            try:
                yield self._train_wrapper if self._train_wrapper is not None else (self.peft_model or self.model)
            finally:
                if train:
                    self.model.language_model.eval()
            return
        if self._reference is None:
            self._reference = self._loaded_model()
        if isinstance(self._reference, str):
            self._activate(self._reference, trainable=False)
            try:
                yield self.peft_model
            finally:
                self._activate()
        else:
            yield self._reference

    @contextlib.contextmanager
    def _image_model(self) -> Iterator[HarmonModel]:
        if self.options.image_generator == "current":
            self._activate()
            yield self.model
        elif self.peft_model is not None:
            with self.peft_model.disable_adapter():
                yield self.model
        else:
            yield self._loaded_model()

    def train_module(self) -> torch.nn.Module:
        return self.peft_model if self.peft_model is not None else self.model

    def use_train_module(self, module: torch.nn.Module) -> None:
        self._train_wrapper = module

    # ---------------------------------------------------------------- inputs
    def _prompt_ids(self, text: str, understanding: bool = True) -> list[int]:
        """Token ids of one chat prompt; each ``<image>`` becomes ``num_image_tokens`` placeholder slots (Harmon
        puts the image features straight into the prompt, no begin/end markers)."""
        full = self.options.chat_format.format(text=text)
        if understanding and self.options.system_prompt:
            full = f"<|im_start|>system\n{self.options.system_prompt}<|im_end|>\n" + full
        ids: list[int] = []
        pieces = full.split(IMAGE_PLACEHOLDER)
        for i, piece in enumerate(pieces):
            if piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
            if i < len(pieces) - 1:
                ids += [self.image_token_id] * self.num_image_tokens
        return ids

    def _pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor | None:
        """(I, 3, S, S) in [-1, 1]: each image resized (bicubic) to the understanding size."""
        if not images:
            return None
        from PIL import Image

        s = self.understanding_size
        arrs = [np.asarray(Image.fromarray(im).resize((s, s), Image.BICUBIC), dtype=np.float32) for im in images]
        px = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 127.5 - 1.0
        return px.to(self.device, self.dtype)

    def _check_contexts(self, contexts: Sequence[Context]) -> None:
        for i, c in enumerate(contexts):
            if not isinstance(c, Context):
                raise BackendError(f"context {i}: expected a seer Context, got {type(c).__name__}")
            if len(c.images) > self.options.max_images:
                raise BackendError(f"context {i}: {len(c.images)} images but this Harmon backend accepts at most "
                                   f"max_images={self.options.max_images}")

    def _left_pad(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        return (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions

    def _prompt_embeds(self, model: HarmonModel, ids: torch.Tensor, contexts: Sequence[Context]) -> torch.Tensor:
        """(B, T, H) input embeddings of left-padded prompts with their images' features in the slots."""
        embeds = model.language_model.get_input_embeddings()(ids)
        pixels = self._pixels([im for c in contexts for im in c.images])
        if pixels is not None:
            feats = model.image_features(pixels).to(embeds.dtype)  # (I, N, H), in context order
            slots = (ids == self.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, feats.reshape(-1, feats.shape[-1]))
        return embeds

    # ---------------------------------------------------------------- text
    @torch.no_grad()
    def generate_text(self, contexts: Sequence[Context], n: int, sampling: SamplingParams,
                      seed: int | Sequence[int] | None = None) -> list[list[Completion]]:
        """``n`` completions per context: each context prefilled (its images encoded) once, its KV cache repeated
        for its rows; row j of context i samples with its own generator seeded from (seed, i, j) — or (seed[i], 0,
        j) with per-context seeds, the same as context i alone — so a completion never depends on its batch."""
        self._check_contexts(contexts)
        if n < 1:
            raise BackendError(f"generate_text: n must be >= 1, got {n}")
        if sampling.max_new_tokens < 1:
            raise BackendError(f"generate_text: max_new_tokens must be >= 1, got {sampling.max_new_tokens}")
        if not contexts:
            return []
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        per_context = per_context_seeds(seed, len(contexts))

        def row_seed(i: int, j: int) -> int:
            return _row_seed(per_context[i], 0, j) if per_context is not None else _row_seed(int(seed), i, j)

        prompts = [self._prompt_ids(c.text) for c in contexts]
        for i, p in enumerate(prompts):
            self.check_length(len(p) + sampling.max_new_tokens, f"context {i} plus max_new_tokens")
        per_chunk = max(1, self.options.max_batch_rows // n) if self.options.max_batch_rows else len(contexts)
        out: list[list[Completion]] = []
        self._activate()
        for lo in range(0, len(contexts), per_chunk):
            idx = range(lo, min(lo + per_chunk, len(contexts)))
            ids, mask = self._left_pad([prompts[i] for i in idx])
            gens = [torch.Generator(device="cpu").manual_seed(row_seed(i, j)) for i in idx for j in range(n)]
            with self._autocast():
                embeds = self._prompt_embeds(self.model, ids, [contexts[i] for i in idx])
                tokens, logps = self._sample(embeds, mask, n, sampling, gens)
            for k in range(len(idx)):
                group = []
                for j in range(n):
                    toks, lps = tokens[k * n + j], logps[k * n + j]
                    text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
                    truncated = not toks or toks[-1] != self.eos_token_id
                    group.append(Completion(token_ids=toks, text=text, logprobs=lps, truncated=truncated))
                out.append(group)
        return out

    def _lm_step(self, cache: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        from transformers import DynamicCache

        cache = DynamicCache() if cache is None else cache
        out = self.model.language_model(use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}, **kwargs)
        return out.logits[:, -1].float(), cache

    def _sample(self, embeds: torch.Tensor, mask: torch.Tensor, n: int, sampling: SamplingParams,
                generators: Sequence[torch.Generator]) -> tuple[list[list[int]], list[list[float]]]:
        logits, cache = self._lm_step(None, inputs_embeds=embeds, attention_mask=mask,
                                      position_ids=self._positions(mask))
        if n > 1:
            index = torch.arange(embeds.shape[0], device=self.device).repeat_interleave(n)
            cache.reorder_cache(index)
            logits, mask = logits[index], mask[index]
        b = mask.shape[0]
        tokens: list[list[int]] = [[] for _ in range(b)]
        logps: list[list[float]] = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        for step in range(sampling.max_new_tokens):
            logp = self._sampling_logprobs(self._text_logits(logits), sampling)  # (rows, V)
            if sampling.greedy:
                nxt = logp.argmax(-1)
            else:  # Gumbel-max with one generator per row
                u = torch.stack([torch.rand(logp.shape[-1], generator=g, dtype=torch.float64) for g in generators])
                gumbel = -torch.log(-torch.log(u.clamp_(1e-12, 1.0 - 1e-12)))
                nxt = (logp + gumbel.to(logp.device, logp.dtype)).argmax(-1)
            chosen = logp.gather(-1, nxt[:, None]).squeeze(-1)
            for r in (~done).nonzero().flatten().tolist():
                tokens[r].append(int(nxt[r]))
                logps[r].append(float(chosen[r]))
            done |= nxt == self.eos_token_id
            if bool(done.all()) or step == sampling.max_new_tokens - 1:
                break
            nxt = torch.where(done, torch.full_like(nxt, self.pad_token_id), nxt)
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            pos = (mask.sum(-1, keepdim=True) - 1).clamp(min=0)
            logits, cache = self._lm_step(cache, input_ids=nxt[:, None], attention_mask=mask, position_ids=pos)
        return tokens, logps

    def _text_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The image placeholder is never sampled: it would be taken for an image slot when scored."""
        logits[..., self.image_token_id] = float("-inf")
        return logits

    @staticmethod
    def _sampling_logprobs(logits: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
        if sampling.greedy:
            return F.log_softmax(logits, -1)
        logits = logits / max(sampling.temperature, 1e-6)
        if sampling.top_k and sampling.top_k < logits.shape[-1]:
            kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if sampling.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs >= sampling.top_p
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        return F.log_softmax(logits, -1)

    def token_logprobs(self, contexts: Sequence[Context], completions: Sequence[Sequence[int]], *,
                       reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_contexts(contexts)
        if len(contexts) != len(completions):
            raise BackendError(f"token_logprobs: {len(contexts)} contexts but {len(completions)} completions")
        t = max((len(c) for c in completions), default=0)
        b = len(contexts)
        if t == 0:
            z = torch.zeros((b, 0), device=self.device)
            return z, z.clone()
        ids, mask = self._left_pad([self._prompt_ids(c.text) for c in contexts])
        comp = torch.full((b, t), self.pad_token_id, dtype=torch.long, device=self.device)
        comp_mask = torch.zeros((b, t), dtype=torch.long, device=self.device)
        for i, c in enumerate(completions):
            if self.image_token_id in c:
                raise BackendError(f"completion {i}: contains the image placeholder token {self.image_token_id}")
            if len(c):
                comp[i, : len(c)] = torch.as_tensor(list(c), dtype=torch.long)
                comp_mask[i, : len(c)] = 1
        full_ids, full_mask = torch.cat([ids, comp], 1), torch.cat([mask, comp_mask], 1)
        self.check_length(full_ids.shape[1], "token_logprobs")
        if len({len(c.images) for c in contexts}) > 1:  # the slots of every row are filled from one (B, k·N, H)
            return self._token_logprobs_mixed(contexts, completions, reference)
        # the G rows of a group share one Context: encode each distinct context's images once
        unique: dict[int, int] = {}
        distinct: list[Context] = []
        for c in contexts:
            if c.images and id(c) not in unique:
                unique[id(c)] = len(distinct)
                distinct.append(c)
        pixels = self._pixels([im for c in distinct for im in c.images])
        rows = None
        if pixels is not None:
            k = len(contexts[0].images)
            rows = torch.tensor([[unique[id(c)] * k + j for j in range(k)] for c in contexts], device=self.device)
        grad = torch.enable_grad() if not reference else torch.no_grad()
        with grad, self._scoring_model(reference) as model, self._autocast():
            logits = model(input_ids=full_ids, attention_mask=full_mask, position_ids=self._positions(full_mask),
                           pixels=pixels, image_rows=rows, logits_to_keep=t + 1)
            logits = self._text_logits(logits[:, :-1].float())  # (B, T, V)
            logp = logits.gather(-1, comp[..., None]).squeeze(-1) - logits.logsumexp(-1)
        maskf = comp_mask.to(logp.dtype)
        return logp * maskf, maskf

    def _token_logprobs_mixed(self, contexts: Sequence[Context], completions: Sequence[Sequence[int]],
                              reference: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch mixing contexts with different image counts: scored per image count, then re-assembled."""
        t = max(len(c) for c in completions)
        groups: dict[int, list[int]] = {}
        for i, c in enumerate(contexts):
            groups.setdefault(len(c.images), []).append(i)
        parts = {}
        for idx in groups.values():
            lp, m = self.token_logprobs([contexts[i] for i in idx], [completions[i] for i in idx], reference=reference)
            parts.update({i: (F.pad(lp[k], (0, t - lp.shape[1])), F.pad(m[k], (0, t - m.shape[1])))
                          for k, i in enumerate(idx)})
        order = range(len(contexts))
        return torch.stack([parts[i][0] for i in order]), torch.stack([parts[i][1] for i in order])

    # ---------------------------------------------------------------- images
    @torch.no_grad()
    def generate_images(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[np.ndarray]:
        if len(prompts) != len(seeds):
            raise BackendError(f"generate_images: {len(prompts)} prompts but {len(seeds)} seeds")
        out: list[np.ndarray] = []
        bs = self.options.image_batch_size
        with self._image_model() as model, self._autocast():
            for start in range(0, len(prompts), bs):
                out.extend(self._generate_batch(model, [str(p) for p in prompts[start:start + bs]],
                                                [int(s) for s in seeds[start:start + bs]], start))
        return out

    def _generate_batch(self, model: HarmonModel, prompts: list[str], seeds: list[int], first: int
                        ) -> list[np.ndarray]:
        """Masked-autoregressive generation of B images (2B LM rows with guidance: conditional rows first)."""
        from transformers import DynamicCache

        b = len(prompts)
        guided = self.guidance_scale != 1.0
        rows = [self._prompt_ids(self.options.generation_template.format(prompt=p.strip()), understanding=False)
                for p in prompts]
        if guided:
            rows += [self._prompt_ids(self.options.cfg_prompt, understanding=False)] * b
        side = self.generated_image_size // model.patch
        hw, n_tok = (side, side), side * side
        nb = model.mar_cfg.buffer_size
        for i, r in enumerate(rows[:b]):
            self.check_length(len(r) + n_tok + nb, f"image prompt {first + i}")
        ids, pmask = self._left_pad(rows)  # (R, P)
        lm = model.language_model.model  # the Qwen2 trunk: hidden states, not logits
        cache = DynamicCache()
        lm(input_ids=ids, attention_mask=pmask, position_ids=self._positions(pmask), use_cache=True,
           **{self._cache_kw: cache})
        p_len = ids.shape[1]

        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        orders = torch.stack([torch.randperm(n_tok, generator=g) for g in gens]).to(self.device)  # (B, L)
        c = model.mar_cfg.token_dim
        tokens = torch.zeros(b, n_tok, c, device=self.device)  # (B, L, C) latents known so far
        mask = torch.ones(b, n_tok, device=self.device)  # 1 = still unknown
        for step in range(self.num_iter):
            x, m = (torch.cat([tokens, tokens]), torch.cat([mask, mask])) if guided else (tokens, mask)
            enc = model.mar.encode(x, m, hw)  # (R, nb + known, E)
            z = model.to_llm(enc).to(self.dtype)  # (R, known + nb, H)
            attn = torch.cat([pmask, pmask.new_ones(pmask.shape[0], z.shape[1])], dim=1)
            pos = self._positions(attn)[:, p_len:]
            hidden = lm(inputs_embeds=z, attention_mask=attn, position_ids=pos, use_cache=True,
                        **{self._cache_kw: cache}).last_hidden_state  # (R, known + nb, H)
            cache.crop(-z.shape[1])  # drop this step's image positions (negative = remove): all re-encoded next step
            hidden = torch.cat([hidden[:, -nb:], hidden[:, :-nb]], dim=1) if nb else hidden  # buffer first again
            enc = enc + model.proj_out(hidden).to(enc.dtype)
            cond = model.mar.decode(enc, m, hw)  # (R, L, E_dec)

            # how many stay masked after this step: cosine schedule, at least one fewer, at least one until the end
            remaining = int(mask[0].sum())
            ratio = math.cos(math.pi / 2 * (step + 1) / self.num_iter)
            mask_len = max(1, min(remaining - 1, math.floor(n_tok * ratio)))
            mask_next = torch.zeros_like(mask)
            mask_next.scatter_(1, orders[:, :mask_len], 1.0)
            to_pred = mask.bool() if step >= self.num_iter - 1 else mask.bool() & ~mask_next.bool()  # (B, L)
            cfg = self.guidance_scale
            if self.options.cfg_schedule == "linear":
                cfg = 1 + (cfg - 1) * (n_tok - mask_len) / n_tok
            counts = to_pred.sum(1).tolist()
            latents = sample_latents(model.diffusion_head, self.schedule, cond[:b][to_pred],
                                     cond[b:][to_pred] if guided else None, cfg, self.options.image_temperature,
                                     counts, gens)  # (Σ counts, C), image-major
            tokens[to_pred] = latents.to(tokens.dtype)
            mask = mask_next
            if step >= self.num_iter - 1 or not bool(mask.any()):
                break
        pixels = model.tokens_to_image(tokens, hw).float()  # (B, 3, H, W)
        arr = torch.clamp(127.5 * pixels + 128.0, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [np.ascontiguousarray(a) for a in arr]

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        opts = self.options.to_dict()
        opts.pop("device", None)
        if self.peft_model is not None:
            dst = tmp / ADAPTER_SUBDIR
            self.peft_model.save_pretrained(str(dst), selected_adapters=[self.options.adapter_name])
            if not (dst / self.options.adapter_name).is_dir():  # peft writes "default" at the top level
                (dst / self.options.adapter_name).mkdir()
                for f in list(dst.iterdir()):
                    if f.is_file():
                        f.rename(dst / self.options.adapter_name / f.name)
            write_backend_meta(tmp, KIND, options=opts, adapter=True, base_model=str(self.base_dir))
        else:
            save_model(self.model, tmp / MODEL_SUBDIR)
            self.tokenizer.save_pretrained(str(tmp / MODEL_SUBDIR))
            write_backend_meta(tmp, KIND, options=opts, adapter=False, base_model=MODEL_SUBDIR)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def write_init_checkpoint(model_dir: str | Path, out: str | Path, **options: Any) -> Path:
    """A seer checkpoint that points at a seer Harmon directory (nothing copied) and carries backend options."""
    model_dir, out = Path(model_dir).resolve(), Path(out)
    opts = HarmonOptions.from_dict(options, "harmon init options")
    read_config(model_dir)
    load_tokenizer(model_dir)
    data = opts.to_dict()
    data.pop("device", None)
    out.mkdir(parents=True, exist_ok=True)
    write_backend_meta(out, KIND, options=data, adapter=False, base_model=str(model_dir))
    return out


# -------------------------------------------------------------------- converting the released weights
def _read_torch(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackendError(f"{path}: {what} does not exist")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        raise BackendError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model", "module"):  # common wrappers (kl16.ckpt keeps its weights under "model")
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackendError(f"{path}: {what} is not a state dict of tensors")
    return obj


MAR_HEADS = {768: 12, 1024: 16, 1280: 16}  # MAR-Base / -Large / -Huge: heads cannot be read from shapes


def mar_config_from_state(sd: dict[str, torch.Tensor], where: str, heads: int | None = None,
                          vae_stride: int = 16) -> Any:
    """Harmon's MAR configuration read from its checkpoint's shapes (Harmon-0.5B: MAR-Base; 1.5B: MAR-Huge). The
    head count cannot be read from shapes: MAR's table, or ``heads`` for another width."""
    from seer.backends.harmon_modules import MARConfig

    def need(name: str) -> torch.Tensor:
        if name not in sd:
            raise BackendError(f"{where}: missing parameter {name!r}; not a Harmon checkpoint")
        return sd[name]

    e = need("mar.z_proj.weight").shape[0]
    d = need("mar.decoder_embed.weight").shape[0]
    if heads is None and (e not in MAR_HEADS or d not in MAR_HEADS):
        raise BackendError(f"{where}: MAR width {e}/{d} is none of MAR-Base/Large/Huge {sorted(MAR_HEADS)}")
    depth = len({k.split(".")[2] for k in sd if k.startswith("mar.encoder_blocks.")})
    ddepth = len({k.split(".")[2] for k in sd if k.startswith("mar.decoder_blocks.")})
    n_pos = need("mar.diffusion_pos_embed_learned").shape[1]
    buffer = need("mar.encoder_pos_embed_learned").shape[1] - n_pos
    side = int(round(n_pos ** 0.5))
    token_dim = need("mar.z_proj.weight").shape[1]
    return MARConfig(img_size=side * vae_stride, vae_stride=vae_stride, patch_size=1, vae_embed_dim=token_dim,
                     encoder_embed_dim=e, encoder_depth=depth, encoder_num_heads=heads or MAR_HEADS[e],
                     decoder_embed_dim=d, decoder_depth=ddepth, decoder_num_heads=heads or MAR_HEADS[d],
                     mlp_ratio=need("mar.encoder_blocks.0.mlp.fc1.weight").shape[0] / e, buffer_size=buffer,
                     diffloss_d=len({k.split(".")[4] for k in sd if k.startswith("mar.diffloss.net.res_blocks.")}),
                     diffloss_w=need("mar.diffloss.net.input_proj.weight").shape[0], num_sampling_steps=100,
                     class_num=sd["mar.class_emb.weight"].shape[0] if "mar.class_emb.weight" in sd else 1000)


def convert_official(harmon_ckpt: str | Path, vae_ckpt: str | Path, qwen_dir: str | Path, out: str | Path, *,
                     mar_heads: int | None = None, vae_config: Any = None, vae_scale: float | None = None) -> Path:
    """Write a seer Harmon directory from Harmon's ``harmon_*.pth``, MAR's ``kl16.ckpt`` and the Qwen2.5 directory
    (config and tokenizer; its weights are not read: the LM weights are Harmon's). The keywords describe a model of
    another size than the released ones (tests); the defaults are Harmon's KL-16 VAE and scale."""
    from seer.backends.harmon_model import (
        HARMON_1_5B_VAE,
        HARMON_VAE_SCALE,
        harmon_config,
        load_state,
        materialize,
        official_to_seer,
    )

    harmon_ckpt, vae_ckpt, qwen_dir, out = Path(harmon_ckpt), Path(vae_ckpt), Path(qwen_dir), Path(out)
    cfg_file = qwen_dir / "config.json"
    if not cfg_file.is_file():
        raise BackendError(f"{cfg_file}: missing; expected the Qwen2.5 directory Harmon was built on")
    llm = json.loads(cfg_file.read_text())
    if llm.get("model_type") != "qwen2":
        raise BackendError(f"{cfg_file}: model_type {llm.get('model_type')!r}; Harmon's LM is qwen2")
    tokenizer = load_tokenizer(qwen_dir)
    image_token_id = tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN)
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise BackendError(f"{qwen_dir}: tokenizer has no {DEFAULT_IMAGE_TOKEN!r} token for the image slots")
    harmon_sd = _read_torch(harmon_ckpt, "the Harmon checkpoint")
    vae_sd = _read_torch(vae_ckpt, "the KL-16 VAE checkpoint")
    state, dropped = official_to_seer(harmon_sd, vae_sd, str(harmon_ckpt))
    vae_config = vae_config or HARMON_1_5B_VAE
    mar = mar_config_from_state(harmon_sd, str(harmon_ckpt), mar_heads, vae_config.stride)
    config = harmon_config(llm, mar, vae_config, HARMON_VAE_SCALE if vae_scale is None else vae_scale,
                           int(image_token_id))
    # Harmon's inference scripts: 512 px images, 64 MAR steps, guidance 3 (constant), 100 diffusion steps
    config["sampling"] = {"image_size": 512, "understanding_image_size": 512, "num_iter": 64,
                          "diffusion_steps": 100, "guidance_scale": 3.0}
    with torch.device("meta"):
        model = HarmonModel(config)
    model = materialize(model)
    load_state(model, state, f"{harmon_ckpt} + {vae_ckpt}")
    save_model(model, out)
    tokenizer.save_pretrained(str(out))
    (out / "conversion.json").write_text(json.dumps({"harmon": str(harmon_ckpt), "vae": str(vae_ckpt),
                                                     "qwen": str(qwen_dir), "dropped": dropped}, indent=2) + "\n")
    return out


# -------------------------------------------------------------------- tiny models for tests and examples
def tiny_config(vocab_size: int, image_token_id: int, *, max_positions: int = 512, img_size: int = 16,
                buffer_size: int = 4) -> dict[str, Any]:
    from seer.backends.harmon_model import harmon_config
    from seer.backends.harmon_modules import MARConfig, VAEConfig

    llm = dict(model_type="qwen2", vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
               tie_word_embeddings=True, pad_token_id=0, eos_token_id=2)
    mar = MARConfig(img_size=img_size, vae_stride=4, patch_size=1, vae_embed_dim=4, encoder_embed_dim=32,
                    encoder_depth=1, encoder_num_heads=4, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
                    mlp_ratio=2.0, buffer_size=buffer_size, diffloss_d=2, diffloss_w=32, num_sampling_steps=8,
                    class_num=10)
    # 32 channels: the VAE's GroupNorm has 32 groups; attention at 4x4 as KL-16's at 16x16
    vae = VAEConfig(embed_dim=4, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, resolution=img_size,
                    attn_resolutions=(img_size // 4,))
    cfg = harmon_config(llm, mar, vae, 0.5, image_token_id)
    cfg["sampling"] = {"image_size": img_size, "understanding_image_size": img_size, "num_iter": 4,
                       "diffusion_steps": 8, "guidance_scale": 3.0}
    return cfg


def build_tiny_harmon(path: str | Path, seed: int = 0, *, max_positions: int = 512, img_size: int = 16,
                      buffer_size: int = 4) -> Path:
    """Write a tiny random seer Harmon directory: 2-layer Qwen2 (width 32), 1+1-block MAR (width 32, 4 buffer
    slots), a 2-block diffusion head, a 3-level VAE (stride 4): 16x16 images, 4x4 = 16 latent tokens, 20 slots per
    understood image, and a word-level tokenizer with Qwen's chat tokens. ``img_size=128, buffer_size=64`` gives
    Harmon-1.5B's token counts at 512 px (32x32 latents + 64 buffer slots) with tiny widths (the bench)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from seer.backends.janus import TINY_WORDS
    from seer.prompts import FORMAT_TAGS

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<unk>", "<|im_end|>", "<|im_start|>", DEFAULT_IMAGE_TOKEN]
    words = set(TINY_WORDS) | {"user", "assistant", "system", "Generate", "an", "image:", "image."}
    vocab_list = specials + list(FORMAT_TAGS) + sorted(words)
    vocab = {w: i for i, w in enumerate(vocab_list)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="<unk>")
    cfg = tiny_config(len(vocab), vocab[DEFAULT_IMAGE_TOKEN], max_positions=max_positions, img_size=img_size,
                      buffer_size=buffer_size)
    torch.manual_seed(seed)
    model = HarmonModel(cfg)
    with torch.no_grad():  # MAR's zero-initialised tables get MAR's N(0, 0.02) init; the rest keeps torch's
        for p in (model.mar.fake_latent, model.mar.mask_token, model.mar.encoder_pos_embed_learned,
                  model.mar.decoder_pos_embed_learned, model.mar.diffusion_pos_embed_learned):
            p.normal_(0.0, 0.02)
    save_model(model, path)
    tokenizer.save_pretrained(str(path))
    return path


__all__ = ["HarmonBackend", "HarmonOptions", "build_tiny_harmon", "convert_official", "write_init_checkpoint"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seer.backends.harmon convert|init|tiny|describe`` — set up a Harmon starting point."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m seer.backends.harmon", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_conv = sub.add_parser("convert", help="build a seer Harmon directory from the released weights")
    p_conv.add_argument("--harmon", required=True, help="Harmon's checkpoint, e.g. checkpoints/harmon_1.5b.pth")
    p_conv.add_argument("--vae", required=True, help="MAR's KL-16 VAE, e.g. checkpoints/kl16.ckpt")
    p_conv.add_argument("--qwen", required=True, help="the Qwen2.5 directory (config + tokenizer), e.g. "
                        "Qwen2.5-1.5B-Instruct")
    p_conv.add_argument("out")
    p_init = sub.add_parser("init", help="write a seer checkpoint pointing at a seer Harmon directory, with options")
    p_init.add_argument("model_dir")
    p_init.add_argument("out")
    p_init.add_argument("--options", help="YAML mapping of HarmonOptions (e.g. recipes/harmon_1_5b/backend.yaml)")
    p_init.add_argument("--check", action="store_true", help="load the model once first and print its summary")
    p_init.add_argument("--device", default=None)
    p_tiny = sub.add_parser("tiny", help="write a tiny random Harmon directory (tests, trying the pipeline)")
    p_tiny.add_argument("out")
    p_tiny.add_argument("--seed", type=int, default=0)
    p_desc = sub.add_parser("describe", help="load a Harmon directory or checkpoint and print its summary")
    p_desc.add_argument("path")
    p_desc.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "convert":
            print(convert_official(args.harmon, args.vae, args.qwen, args.out))
        elif args.cmd == "init":
            opts: dict[str, Any] = {}
            if args.options:
                try:
                    opts = yaml.safe_load(Path(args.options).read_text()) or {}
                except (OSError, yaml.YAMLError) as e:
                    raise BackendError(f"{args.options}: cannot read options ({e})") from e
                if not isinstance(opts, dict):
                    raise BackendError(f"{args.options}: expected a mapping of Harmon options")
            opts.pop("device", None)
            if args.check:
                dev = args.device or default_device()
                dtype = opts.get("dtype", "float32")
                if torch.device(dev).type == "cpu" and dtype != "float32" and not cpu_supports_bf16():
                    dtype = "float32"
                summary = HarmonBackend.load(args.model_dir, **{**opts, "device": dev, "dtype": dtype}).describe()
                print(json.dumps(summary, indent=2))
            out = write_init_checkpoint(args.model_dir, args.out, **opts)
            print(f"wrote {out / BACKEND_FILE}")
        elif args.cmd == "tiny":
            print(build_tiny_harmon(args.out, args.seed))
        else:
            print(json.dumps(HarmonBackend.load(args.path, device=args.device).describe(), indent=2))
    except BackendError as e:
        print(f"seer: error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
