"""Janus / Janus-Pro through ``transformers`` (``JanusForConditionalGeneration``): the first real-model backend.

What is θ and what is ϕ (paper Sec. 3.1, "we exclusively optimize the parameters governing multimodal understanding
and reasoning, while keeping the visual generation components frozen"):

* θ (trained): the language model and its LM head, and — unless ``train_vision_encoder`` is off — the understanding
  encoder (SigLIP ``vision_model``) and its ``aligner``.
* ϕ (frozen, verified bit-identical by ``frozen_state``): the VQ model, ``generation_embeddings``,
  ``generation_aligner`` and ``generation_head``.

Janus shares its language model between understanding and generation. Like the paper's Harmon runs, the default
generates images with the *current* shared backbone and the frozen generation components (``image_generator:
current``); ``image_generator: initial`` generates with the backbone as it was loaded instead (adapters disabled with
LoRA, a frozen copy otherwise).

Prompts follow Janus-Pro's chat format (``<|User|>: … \\n\\n<|Assistant|>:``); every ``<image>`` of a
:class:`~seer.backends.base.Context` becomes ``<begin_of_image>`` + ``num_image_tokens`` × ``<image_placeholder>`` +
``<end_of_image>``, filled with the understanding encoder's features. Images are generated with ``generate(...,
generation_mode="image")``; classifier-free guidance and the per-image seeded sampling are one logits processor
(Gumbel-max with a generator per image, so an image depends only on its prompt and seed, not on its batch mates).

Checkpoints: a full fine-tune is written as a transformers directory under ``model/``; with LoRA only the adapter is
written (``adapter/``) and ``backend.json`` names the base directory, so a 7B run saves megabytes, not 14 GB.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from tqdm.auto import tqdm

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

KIND = "janus"
MODEL_SUBDIR = "model"
ADAPTER_SUBDIR = "adapter"
PHI_MODULES = ("model.vqmodel", "model.generation_embeddings", "model.generation_aligner", "model.generation_head")
THETA_TEXT_MODULES = ("model.language_model", "lm_head")
THETA_VISION_MODULES = ("model.vision_model", "model.aligner")
DEFAULT_CHAT_FORMAT = "<|User|>: {text}\n\n<|Assistant|>:"  # Janus-Pro's "deepseek" conversation format
# The system prompt DeepSeek's reference code puts before every understanding conversation (and transformers'
# JanusProcessor with use_default_system_prompt=True); generation prompts have none (the reference passes
# system_prompt="" for text-to-image). Kept here so the backend does not depend on a private transformers constant.
JANUS_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language.\n\n"
)
DEFAULT_LORA_TARGET = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
# Fallbacks when a tokenizer does not name its Janus special tokens (the transformers conversion does).
SPECIAL_TOKEN_DEFAULTS = {
    "image_token": "<image_placeholder>",
    "boi_token": "<begin_of_image>",
    "eoi_token": "<end_of_image>",
}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoraOptions:
    """LoRA adapters on θ (through ``peft``); the base weights stay frozen and can be shared between backends."""

    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator (scale = alpha / r)
    dropout: float = 0.0  # 0 keeps rollouts and scoring identical (dropout would make logprobs noisy)
    target_modules: str = DEFAULT_LORA_TARGET  # regex over module names; the default touches only the language model


@dataclass(frozen=True)
class JanusOptions:
    """How a Janus model is run. Stored in ``backend.json``; any field can be overridden when loading."""

    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights and compute)
    # "float32": θ (full fine-tuning) is kept in float32 — its weights and so AdamW's moments — and every forward
    # runs under autocast to ``dtype``; ϕ and the frozen copies stay in ``dtype``. Without it a bf16 θ cannot take
    # the small steps of RL learning rates: an update below half a bf16 ulp (~0.4% of the weight) rounds away.
    master_weights: str | None = None  # None | float32 (LoRA adapters are float32 already: peft keeps them so)
    device: str = "cpu"  # cpu | cuda | cuda:N
    lora: LoraOptions | None = None  # None = full fine-tuning of θ
    adapter_name: str = "default"  # name of this backend's LoRA adapter (distinct names let backends share a base)
    train_vision_encoder: bool = True  # θ includes the understanding encoder + aligner (off for text-only RLMT)
    max_images: int = 2  # images per context this backend accepts (the evaluator needs two)
    chat_format: str = DEFAULT_CHAT_FORMAT  # must contain {text}
    # prepended to understanding prompts only ("default" = Janus's own system prompt; "" = none)
    system_prompt: str = "default"
    guidance_scale: float = 5.0  # classifier-free guidance for images (Janus-Pro's default)
    image_temperature: float = 1.0  # sampling temperature of image tokens (0 = greedy)
    image_batch_size: int = 8  # images generated per forward batch (x2 rows for guidance)
    image_generator: str = "current"  # current = trained shared backbone (as the paper); initial = as loaded
    gradient_checkpointing: bool = False  # trade compute for activation memory on the language model
    max_batch_rows: int = 0  # most rows (contexts x samples) decoded together by generate_text; 0 = all in one batch

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise BackendError(f"janus option dtype={self.dtype!r}: expected one of {sorted(_DTYPES)}")
        if "{text}" not in self.chat_format:
            raise BackendError(f"janus option chat_format={self.chat_format!r}: must contain {{text}}")
        if self.image_generator not in ("current", "initial"):
            raise BackendError(f"janus option image_generator={self.image_generator!r}: expected current | initial")
        if self.max_images < 0 or self.image_batch_size < 1:
            raise BackendError("janus options max_images must be >= 0 and image_batch_size >= 1")
        if self.guidance_scale < 1.0:
            raise BackendError(f"janus option guidance_scale={self.guidance_scale}: expected >= 1 (1 = no guidance)")
        if self.master_weights not in (None, "float32"):
            raise BackendError(f"janus option master_weights={self.master_weights!r}: expected null or float32")
        if self.max_batch_rows < 0:
            raise BackendError(f"janus option max_batch_rows={self.max_batch_rows}: expected >= 0 (0 = no limit)")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> JanusOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackendError(f"{where}: unknown janus option(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        lora = data.get("lora")
        if isinstance(lora, dict):
            lora_known = {f.name for f in fields(LoraOptions)}
            bad = sorted(set(lora) - lora_known)
            if bad:
                raise BackendError(f"{where}: unknown lora option(s) {bad}; known: {sorted(lora_known)}")
            data["lora"] = LoraOptions(**lora)
        elif lora is True:
            data["lora"] = LoraOptions()
        elif lora not in (None, False) and not isinstance(lora, LoraOptions):
            raise BackendError(f"{where}: lora must be a mapping of LoRA options, true or null, got {lora!r}")
        elif lora is False:
            data["lora"] = None
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 kernels (AVX512-BF16/AMX or the AVX512 set oneDNN accepts)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def check_not_sharded_launch() -> None:
    """Raise when ``accelerate launch`` was given an FSDP or DeepSpeed config. The stages shard θ under FSDP
    (seer.stages.common.Sharding) only for backends whose train module holds θ alone; Janus's also holds the frozen
    generator ϕ, and its image-generation and reference paths were never run on a sharded model, so such a launch
    stops here, before the weights are read. DeepSpeed is not used by the stages at all."""
    for var, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            raise BackendError(f"launched with an accelerate {what} config ({var}={os.environ[var]}), but the Janus "
                               "backend cannot be sharded yet (its train module also holds the frozen generator ϕ). "
                               "Use recipes/accelerate/gpu_ddp.yaml (data parallel) or LoRA (recipes/janus_pro_7b); "
                               "see docs/own_model.md, 'Sharding θ (FSDP)'")


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """Check that ``device`` exists and supports ``dtype`` before any weights are read."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BackendError(f"janus option device={device!r}: not a torch device ({e})") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"janus option device={device!r}: CUDA is not available on this machine; use device=cpu")
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.index is None and 0 < rank < torch.cuda.device_count():  # one GPU per process under a launcher
            dev = torch.device("cuda", rank)
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise BackendError(f"janus option dtype=bfloat16: GPU {torch.cuda.get_device_name(dev)} lacks bf16; use "
                               "float16 or float32")
    elif dev.type == "cpu":
        if dtype == "bfloat16" and not cpu_supports_bf16():
            raise BackendError("janus option dtype=bfloat16: this CPU has no native bf16 support; use dtype=float32")
        if dtype == "float16":
            raise BackendError("janus option dtype=float16: not supported for CPU training; use float32 (or bfloat16)")
    return dev, _DTYPES[dtype]


def _read_config(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise BackendError(f"{model_dir}: model directory does not exist")
    cfg_file = model_dir / "config.json"
    if not cfg_file.is_file():
        raise BackendError(f"{cfg_file}: missing; expected a transformers-format Janus directory "
                           "(config.json, model.safetensors, tokenizer, preprocessor_config.json)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise BackendError(f"{cfg_file}: not valid JSON ({e})") from e
    model_type = cfg.get("model_type")
    if model_type != "janus":
        hint = ""
        if model_type == "multi_modality":
            hint = (" This is DeepSeek's original Janus format; use the transformers conversion "
                    "(e.g. deepseek-community/Janus-Pro-1B) or convert it with transformers' "
                    "models/janus/convert_janus_weights_to_hf.py.")
        raise BackendError(f"{cfg_file}: model_type {model_type!r} (architectures {cfg.get('architectures')}) is not a "
                           f"Janus model; expected model_type 'janus' (JanusForConditionalGeneration).{hint}")
    return cfg


def check_image_generation_config(config: Any, where: str) -> None:
    """Raise unless the config describes a model whose generation path produces a full image grid."""
    vision, vq = config.vision_config, config.vq_config
    grid = vision.image_size // vision.patch_size
    if vision.num_image_tokens != grid * grid:
        raise BackendError(f"{where}: vision_config.num_image_tokens={vision.num_image_tokens} but "
                           f"image_size/patch_size = {vision.image_size}/{vision.patch_size} gives "
                           f"{grid}x{grid} = {grid * grid} tokens; this config cannot generate (or read) images")
    if vq.num_patches != grid:
        raise BackendError(f"{where}: vq_config.num_patches={vq.num_patches} must equal image_size/patch_size={grid}")
    if vq.image_token_embed_dim != config.text_config.hidden_size:
        raise BackendError(f"{where}: vq_config.image_token_embed_dim={vq.image_token_embed_dim} must equal "
                           f"text_config.hidden_size={config.text_config.hidden_size} for image generation")


def check_peft(peft_model_cls: Any) -> None:
    """Raise before loading an adapter when peft's ``set_adapter`` cannot switch between a trainable and a frozen
    adapter (``inference_mode=``, peft 0.19+), which every policy/reference/judge switch relies on."""
    if "inference_mode" not in inspect.signature(peft_model_cls.set_adapter).parameters:
        import peft

        raise BackendError(f"janus option lora: peft {getattr(peft, '__version__', '?')} lacks "
                           "set_adapter(..., inference_mode=); upgrade it: pip install 'peft>=0.19'")


def _module_params(model: torch.nn.Module, prefixes: Sequence[str]) -> dict[str, torch.nn.Parameter]:
    """Named parameters under any of ``prefixes`` (peft's wrapper prefixes are stripped before matching)."""
    out: dict[str, torch.nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        bare = name.removeprefix("base_model.model.")
        if any(bare == pre or bare.startswith(pre + ".") for pre in prefixes):
            out[bare] = p
    return out


def _row_seed(*entropy: int) -> int:
    """A 63-bit seed mixed from integers, so nearby seeds (and rows) give unrelated random streams."""
    words = np.random.SeedSequence([int(e) % (1 << 64) for e in entropy]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1])) & ((1 << 63) - 1)


class _GuidedSeededSampler:
    """Logits processor for Janus image tokens: classifier-free guidance then one sample per image from its own RNG.

    Receives (2B, V) scores — conditional rows first, unconditional rows second, as ``generate(generation_mode=
    "image")`` lays them out — and returns (B, V) scores whose argmax *is* the sample (Gumbel-max trick), so it is run
    with ``do_sample=False`` and image ``i`` depends only on ``seeds[i]``.
    """

    def __init__(self, guidance_scale: float, temperature: float, seeds: Sequence[int], device: torch.device):
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        b = scores.shape[0] // 2
        cond, uncond = scores[:b].float(), scores[b:].float()
        guided = uncond + self.guidance_scale * (cond - uncond)  # (B, V), Janus's guidance formula
        if self.temperature <= 0:
            return guided
        u = torch.stack([torch.rand(guided.shape[1], generator=g, device=guided.device) for g in self.generators])
        gumbel = -torch.log(-torch.log(u.clamp_(1e-20, 1.0 - 1e-7)))
        return guided / self.temperature + gumbel


def load_tokenizer_and_processor(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as e:
        raise BackendError(f"{model_dir}: cannot load the tokenizer ({e})") from e
    if not (model_dir / "preprocessor_config.json").is_file():
        raise BackendError(f"{model_dir / 'preprocessor_config.json'}: missing; the understanding encoder needs the "
                           "Janus image processor config")
    try:
        image_processor = AutoImageProcessor.from_pretrained(str(model_dir))
    except (OSError, ValueError) as e:
        raise BackendError(f"{model_dir}: cannot load the image processor ({e})") from e
    return tokenizer, image_processor


class JanusBackend:
    """The seer backend protocol for a transformers-format Janus / Janus-Pro model (see the module docstring)."""

    kind = KIND

    def __init__(self, janus: Any, tokenizer: Any, image_processor: Any, options: JanusOptions, *,
                 base_dir: Path, peft_model: Any = None, frozen_adapter: bool = False):
        self.janus = janus  # JanusForConditionalGeneration (LoRA layers injected in place when peft_model is set)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.options = options
        self.base_dir = base_dir  # the transformers directory the base weights came from
        self.peft_model = peft_model
        self._frozen_adapter = frozen_adapter  # a LoRA view that shares a base and is never trained (the evaluator)
        self.device = next(janus.parameters()).device
        self.dtype = _DTYPES[options.dtype]  # the compute dtype (θ may be kept in float32: master_weights)
        self._cache_kw = cache_keyword(type(janus))
        self._train_wrapper: torch.nn.Module | None = None
        self._reference: Any = None  # frozen model copy, or the name of a frozen LoRA adapter
        self._initial: torch.nn.Module | None = None  # the model as loaded (full FT reference / initial generator)
        self._steps = 0

        cfg = janus.config
        self.num_image_tokens = int(cfg.vision_config.num_image_tokens)
        self.image_token_id = int(cfg.image_token_id)
        special = {}
        for attr, default in SPECIAL_TOKEN_DEFAULTS.items():
            tok = getattr(tokenizer, attr, None) or default
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is None or tid == tokenizer.unk_token_id:
                raise BackendError(f"{base_dir}: tokenizer has no {attr} {tok!r}; a Janus tokenizer must define "
                                   f"{sorted(SPECIAL_TOKEN_DEFAULTS.values())}")
            special[attr] = int(tid)
        if special["image_token"] != self.image_token_id:
            raise BackendError(f"{base_dir}: tokenizer's image token id {special['image_token']} differs from "
                               f"config.image_token_id={self.image_token_id}")
        self.boi_token_id, self.eoi_token_id = special["boi_token"], special["eoi_token"]
        self.bos_token_id = tokenizer.bos_token_id
        self.eos_token_id = tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise BackendError(f"{base_dir}: tokenizer has no eos_token; completions could never end")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        # classifier-free guidance's unconditional rows are padded with the checkpoint's own pad id
        # (generation_config.json), which the model was trained with; the tokenizer's is only a fallback
        gen_pad = getattr(getattr(janus, "generation_config", None), "pad_token_id", None)
        if isinstance(gen_pad, list | tuple):
            gen_pad = gen_pad[0] if gen_pad else None
        self.image_pad_token_id = int(gen_pad) if gen_pad is not None else self.pad_token_id
        self.system_prompt = JANUS_SYSTEM_PROMPT if options.system_prompt == "default" else options.system_prompt
        self.max_positions = int(getattr(cfg.text_config, "max_position_embeddings", 1 << 30))

        for p in janus.parameters():
            p.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)
        # fp32 master weights for a full fine-tune in bf16/fp16: θ itself becomes float32 (so does AdamW's state,
        # which follows the parameter's dtype) and forwards autocast to the compute dtype
        self._autocast_on = (options.master_weights == "float32" and peft_model is None and not frozen_adapter
                             and self.dtype != torch.float32)
        if self._autocast_on:
            for p in self.trainable_parameters():
                p.data = p.data.float()
        if options.gradient_checkpointing:  # language model and understanding encoder layers
            enable = getattr(janus, "activation_checkpointing_enable", None) or janus.gradient_checkpointing_enable
            enable()
        if peft_model is not None and not frozen_adapter:
            self.set_reference()  # a copy of the adapter as loaded (megabytes)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, *, share_base_with: JanusBackend | None = None, **overrides: Any) -> JanusBackend:
        """Open a transformers-format Janus directory or a seer Janus checkpoint.

        ``overrides`` are :class:`JanusOptions` fields (``device``, ``dtype``, ``lora``, …). ``share_base_with``
        loads a LoRA checkpoint as a frozen adapter on another LoRA backend's base model (e.g. the RLVR evaluator
        next to the RLMT policy), so one copy of the base weights serves both.
        """
        path = Path(path)
        if not path.is_dir():
            raise BackendError(f"{path}: model directory does not exist")
        meta_file = path / BACKEND_FILE
        meta: dict[str, Any] = {}
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
            except json.JSONDecodeError as e:
                raise BackendError(f"{meta_file}: not valid JSON ({e})") from e
            if meta.get("kind") != KIND:
                raise BackendError(f"{meta_file}: kind {meta.get('kind')!r}, expected {KIND!r}")
        saved = dict(meta.get("options", {}))
        options = JanusOptions.from_dict({**saved, **overrides}, str(meta_file if meta else path))
        adapter_dir = path / ADAPTER_SUBDIR if meta.get("adapter") else None
        base_dir = path
        if meta:  # base_model: "model" (weights inside the checkpoint) or the absolute transformers directory
            if "base_model" not in meta:
                raise BackendError(f"{meta_file}: missing 'base_model' (where the Janus weights are)")
            base_dir = Path(meta["base_model"])
            base_dir = base_dir if base_dir.is_absolute() else path / base_dir
            if not base_dir.is_dir():
                raise BackendError(f"{meta_file}: base_model {str(base_dir)!r} does not exist; move the Janus weights "
                                   "back or edit base_model")

        check_not_sharded_launch()
        if share_base_with is not None:
            return cls._load_shared(path, adapter_dir, options, share_base_with, base_dir)
        if adapter_dir is not None and options.lora is None:
            raise BackendError(f"{meta_file}: a LoRA checkpoint needs lora options (saved ones were removed)")

        dev, dtype = resolve_device_dtype(options.device, options.dtype)
        _read_config(base_dir)
        from transformers import JanusConfig, JanusForConditionalGeneration

        config = JanusConfig.from_pretrained(str(base_dir))
        check_image_generation_config(config, str(base_dir / "config.json"))
        tokenizer, image_processor = load_tokenizer_and_processor(adapter_dir or base_dir)
        try:
            janus, info = JanusForConditionalGeneration.from_pretrained(
                str(base_dir), dtype=dtype, output_loading_info=True
            )
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # a truncated or corrupt weights file
            raise BackendError(f"{base_dir}: cannot load Janus weights ({e})") from e
        missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
        if missing:
            phi = [k for k in missing if any(m.split(".")[-1] in k for m in PHI_MODULES)]
            what = "image generation weights (ϕ)" if phi else "weights"
            raise BackendError(f"{base_dir}: checkpoint lacks {len(missing)} {what}, e.g. {missing[:3]}; it cannot "
                               "be used for image generation and understanding as is")
        janus.to(dev).eval()

        peft_model = None
        if options.lora is not None:
            peft_model = cls._wrap_lora(janus, options, adapter_dir, trainable=True)
        return cls(janus, tokenizer, image_processor, options, base_dir=base_dir.resolve(), peft_model=peft_model)

    @staticmethod
    def _wrap_lora(janus: Any, options: JanusOptions, adapter_dir: Path | None, trainable: bool) -> Any:
        try:
            from peft import LoraConfig, PeftModel, get_peft_model
        except ImportError as e:
            raise BackendError("janus option lora needs the peft package: pip install 'seer[lora]'") from e
        check_peft(PeftModel)
        name = options.adapter_name
        if adapter_dir is not None:
            if not (adapter_dir / name / "adapter_config.json").is_file() and not (
                adapter_dir / "adapter_config.json"
            ).is_file():
                raise BackendError(f"{adapter_dir}: no LoRA adapter {name!r} saved here")
            src = adapter_dir / name if (adapter_dir / name).is_dir() else adapter_dir
            return PeftModel.from_pretrained(janus, str(src), adapter_name=name, is_trainable=trainable)
        lo = options.lora
        cfg = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules)
        return get_peft_model(janus, cfg, adapter_name=name)

    @classmethod
    def _load_shared(cls, path: Path, adapter_dir: Path | None, options: JanusOptions, base: JanusBackend,
                     base_dir: Path):
        if base.peft_model is None or options.lora is None:
            raise BackendError(f"{path}: share_base_with needs LoRA on both sides (this checkpoint and the backend "
                               "it shares with); load it on its own instead")
        if base_dir.resolve() != base.base_dir:
            raise BackendError(f"{path}: its adapter belongs to base weights {base_dir.resolve()}, but the backend it "
                               f"would share with runs {base.base_dir}; load it on its own instead")
        name = options.adapter_name
        if name in base.peft_model.peft_config:
            name = f"{name}_{len(base.peft_model.peft_config)}"
        if adapter_dir is None:  # an init checkpoint (LoRA options, no adapter trained yet): a fresh adapter,
            from peft import LoraConfig  # whose zero B matrices make it the base model, frozen

            lo = options.lora
            base.peft_model.add_adapter(name, LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout,
                                                         target_modules=lo.target_modules))
        else:
            src = adapter_dir / options.adapter_name
            if not src.is_dir():
                raise BackendError(f"{src}: LoRA adapter missing")
            base.peft_model.load_adapter(str(src), adapter_name=name, is_trainable=False)
        base._activate()  # load_adapter may flip requires_grad flags; restore the base backend's view
        view = cls.__new__(cls)
        view.__dict__.update(base.__dict__)
        view.options = replace(options, adapter_name=name)
        view._frozen_adapter = True
        view._train_wrapper = None
        view._reference = name  # never trained: its reference is itself
        view._initial = None
        view._steps = 0
        return view

    # ---------------------------------------------------------------- θ / ϕ
    def _theta_prefixes(self) -> tuple[str, ...]:
        if self.options.train_vision_encoder:
            return THETA_TEXT_MODULES + THETA_VISION_MODULES
        return THETA_TEXT_MODULES

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        if self._frozen_adapter:
            return []
        if self.peft_model is not None:
            name = self.options.adapter_name
            return [p for n, p in self.peft_model.named_parameters() if f".{name}." in n and "lora_" in n]
        seen: set[int] = set()
        out = []
        for p in _module_params(self.janus, self._theta_prefixes()).values():
            if id(p) not in seen:  # lm_head may be tied to the input embeddings
                seen.add(id(p))
                out.append(p)
        return out

    def frozen_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in _module_params(self.janus, PHI_MODULES).items()}

    def after_optimizer_step(self) -> None:
        self._steps += 1  # θ and ϕ are disjoint parameters in Janus: nothing to restore

    def describe(self) -> dict[str, Any]:
        """Sizes and settings, for ``--dry-run`` and run logs."""
        theta = sum(p.numel() for p in self.trainable_parameters())
        phi = sum(t.numel() for t in self.frozen_state().values())
        total = sum(p.numel() for p in self.janus.parameters())
        v = self.janus.config.vision_config
        return {
            "kind": KIND, "base_model": str(self.base_dir), "device": str(self.device), "dtype": str(self.dtype),
            "params_total": total, "params_theta_trainable": theta, "params_phi_frozen": phi,
            "lora": asdict(self.options.lora) if self.options.lora else None,
            "num_image_tokens": self.num_image_tokens, "image_size": v.image_size,
            "generated_image_size": self.generated_image_size, "max_images": self.options.max_images,
            "max_position_embeddings": self.max_positions,
            "precision": self.precision(),
        }

    def precision(self) -> dict[str, str]:
        """The dtypes of the weights, of θ (AdamW keeps its moments in θ's dtype) and of the forwards' compute."""
        theta = self.trainable_parameters()
        theta_dtype = str(theta[0].dtype).removeprefix("torch.") if theta else "none (frozen)"
        return {"weights": self.options.dtype, "theta": theta_dtype, "optimizer_state": theta_dtype,
                "compute": self.options.dtype}

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the compute dtype when θ is kept in float32 (master_weights), else nothing."""
        if not self._autocast_on:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @property
    def generated_image_size(self) -> int:
        vq = self.janus.config.vq_config
        return int(vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1))

    def check_request(self, images_per_context: int, max_text_tokens: int = 0) -> None:
        """Raise before training when contexts with ``images_per_context`` images (plus ``max_text_tokens`` of text
        and completion) cannot fit this model."""
        if images_per_context > self.options.max_images:
            raise BackendError(f"{images_per_context} image(s) per context requested but this Janus backend accepts at "
                               f"most max_images={self.options.max_images}")
        need = images_per_context * (self.num_image_tokens + 2) + max_text_tokens
        if need > self.max_positions:
            raise BackendError(f"{images_per_context} image(s) x {self.num_image_tokens + 2} tokens + "
                               f"{max_text_tokens} text tokens = {need} exceeds max_position_embeddings="
                               f"{self.max_positions}")

    @property
    def unk_id(self) -> int | None:
        return self.tokenizer.unk_token_id

    def encode_context(self, context: Context, where: str = "context") -> list[int]:
        """Prompt token ids of ``context`` (what ``--dry-run`` checks for every record before training)."""
        if len(context.images) > self.options.max_images:
            raise BackendError(f"{where}: {len(context.images)} images but this Janus backend accepts at most "
                               f"max_images={self.options.max_images}")
        if context.images:
            self._pixels(context.images)  # the understanding encoder's preprocessing accepts them
        return self._prompt_ids(context.text)

    def check_length(self, n_positions: int, what: str) -> None:
        """Raise naming ``what`` when ``n_positions`` (prompt + completion) exceed the model's context."""
        if n_positions > self.max_positions:
            raise BackendError(f"{what} needs {n_positions} positions but the model has max_position_embeddings="
                               f"{self.max_positions}")

    # ---------------------------------------------------------------- adapters and reference
    def _activate(self, adapter: str | None = None, trainable: bool | None = None) -> None:
        if self.peft_model is None:
            return
        name = adapter or self.options.adapter_name
        if trainable is None:
            trainable = adapter is None and not self._frozen_adapter
        self.peft_model.set_adapter(name, inference_mode=not trainable)

    def set_reference(self) -> None:
        """Freeze the current θ as the reference. Without a call, the reference is θ as loaded: a snapshot of the
        LoRA adapter taken at load time, or (full fine-tuning) the weights re-read from disk on first use — so a
        resumed run, whose θ is overwritten after loading, still compares with its true starting point."""
        if self.peft_model is not None:
            ref = f"{self.options.adapter_name}__reference"
            from peft import get_peft_model_state_dict, set_peft_model_state_dict

            if ref not in self.peft_model.peft_config:
                self.peft_model.add_adapter(ref, self.peft_model.peft_config[self.options.adapter_name])
            state = get_peft_model_state_dict(self.peft_model, adapter_name=self.options.adapter_name)
            set_peft_model_state_dict(self.peft_model, state, adapter_name=ref)
            self._reference = ref
            self._activate()
            return
        self._reference = self._frozen_copy()

    def _loaded_model(self) -> torch.nn.Module:
        """The model as loaded from ``base_dir`` (full fine-tuning), frozen; read from disk once, on first need."""
        if self._initial is None:
            from transformers import JanusForConditionalGeneration

            model = JanusForConditionalGeneration.from_pretrained(str(self.base_dir), dtype=self.dtype)
            for p in model.parameters():
                p.requires_grad_(False)
            self._initial = model.to(self.device).eval()
        return self._initial

    def _frozen_copy(self) -> torch.nn.Module:
        """A no-grad copy of the model that shares ϕ's tensors (they never change) and copies θ."""
        memo = {id(p): p for p in self.frozen_state().values()}
        memo.update({id(p): p for p in _module_params(self.janus, PHI_MODULES).values()})
        clone = copy.deepcopy(self.janus, memo)
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone.eval()

    @contextlib.contextmanager
    def _scoring_model(self, reference: bool) -> Iterator[Any]:
        """The callable to run a forward with: the policy (prepared wrapper if any) or the frozen reference."""
        if not reference:
            self._activate()
            # transformers applies checkpointing only in train mode; Janus has no dropout, so train mode changes
            # nothing else (LoRA dropout defaults to 0 for the same reason)
            train = self.options.gradient_checkpointing and torch.is_grad_enabled()
            if train:
                self.janus.train()
            try:
                yield self._train_wrapper if self._train_wrapper is not None else self.janus
            finally:
                if train:
                    self.janus.eval()
            return
        if self._reference is None:
            self._reference = self._loaded_model()
        if isinstance(self._reference, str):
            self._activate(self._reference, trainable=False)
            try:
                yield self.janus
            finally:
                self._activate()
        else:
            yield self._reference

    @contextlib.contextmanager
    def _image_model(self) -> Iterator[Any]:
        if self.options.image_generator == "current":
            self._activate()
            yield self.janus
        elif self.peft_model is not None:
            with self.peft_model.disable_adapter():
                yield self.janus
        else:
            yield self._loaded_model()

    def train_module(self) -> torch.nn.Module:
        return self.peft_model if self.peft_model is not None else self.janus

    def use_train_module(self, module: torch.nn.Module) -> None:
        self._train_wrapper = module

    # ---------------------------------------------------------------- inputs
    def _prompt_ids(self, text: str, understanding: bool = True) -> list[int]:
        """Token ids of one chat prompt; each ``<image>`` becomes BOI + N image tokens + EOI. Understanding prompts
        (text generation and scoring) start with the system prompt; generation prompts have none, as in Janus."""
        full = self.options.chat_format.format(text=text)
        if understanding and self.system_prompt:
            full = self.system_prompt + full
        ids = [self.bos_token_id] if self.bos_token_id is not None else []
        pieces = full.split(IMAGE_PLACEHOLDER)
        for i, piece in enumerate(pieces):
            if piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
            if i < len(pieces) - 1:
                ids += [self.boi_token_id] + [self.image_token_id] * self.num_image_tokens + [self.eoi_token_id]
        return ids

    def _pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor | None:
        if not images:
            return None
        px = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return px.to(self.device, self.dtype)

    def _check_contexts(self, contexts: Sequence[Context]) -> None:
        for i, c in enumerate(contexts):
            if not isinstance(c, Context):
                raise BackendError(f"context {i}: expected a seer Context, got {type(c).__name__}")
            if len(c.images) > self.options.max_images:
                raise BackendError(f"context {i}: {len(c.images)} images but this Janus backend accepts at most "
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
        # left padding must not shift positions: a padded row scores exactly like the same row alone
        return (mask.cumsum(-1) - 1).clamp(min=0)

    # ---------------------------------------------------------------- text
    @torch.no_grad()
    def generate_text(
        self, contexts: Sequence[Context], n: int, sampling: SamplingParams,
        seed: int | Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """Sample ``n`` completions per context in one decode loop over all contexts (``max_batch_rows`` may split
        it): each distinct context is prefilled — and its images encoded — once, and its KV cache is repeated for
        its ``n`` rows. Row ``j`` of context ``i`` draws its noise from its own generator, seeded from (seed, i, j)
        for one int seed and from (seed[i], 0, j) for per-context seeds — the same as context i alone with seed[i] —
        so a completion never depends on its batch mates."""
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
            if len(p) + sampling.max_new_tokens > self.max_positions:
                raise BackendError(f"context {i}: {len(p)} prompt tokens + max_new_tokens={sampling.max_new_tokens} "
                                   f"exceed max_position_embeddings={self.max_positions}")
        per_chunk = len(contexts)
        if self.options.max_batch_rows:
            per_chunk = max(1, self.options.max_batch_rows // n)
        out: list[list[Completion]] = []
        with self._scoring_model(reference=False) as model:
            for lo in range(0, len(contexts), per_chunk):
                idx = range(lo, min(lo + per_chunk, len(contexts)))
                ids, mask = self._left_pad([prompts[i] for i in idx])
                pixels = self._pixels([im for i in idx for im in contexts[i].images])
                gens = [torch.Generator(device="cpu").manual_seed(row_seed(i, j)) for i in idx for j in range(n)]
                tokens, logps = self._sample(model, ids, mask, pixels, n, sampling, gens)
                for k in range(len(idx)):
                    group = []
                    for j in range(n):
                        toks, lps = tokens[k * n + j], logps[k * n + j]
                        text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
                        truncated = not toks or toks[-1] != self.eos_token_id
                        group.append(Completion(token_ids=toks, text=text, logprobs=lps, truncated=truncated))
                    out.append(group)
        return out

    def _forward(self, model: Any, cache: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        """One cached forward; returns (output, its KV cache), naming the cache as this transformers release does."""
        if cache is not None:
            kwargs[self._cache_kw] = cache
        with self._autocast():
            out = model(use_cache=True, **kwargs)
        return out, getattr(out, self._cache_kw, None)

    def _sample(self, model: Any, ids: torch.Tensor, mask: torch.Tensor, pixels: torch.Tensor | None, n: int,
                sampling: SamplingParams, generators: Sequence[torch.Generator]
                ) -> tuple[list[list[int]], list[list[float]]]:
        """KV-cached sampling: the P prompts in ``ids`` are prefilled once, their cache and last logits repeated ``n``
        times (rows context-major), then one forward per new token for all P·n rows. Returns per row the tokens
        (stopping at EOS) and the log-prob of each under the distribution sampled from (temperature / top-k /
        top-p applied); row r's noise comes from ``generators[r]`` only (Gumbel-max)."""
        out, cache = self._forward(model, input_ids=ids, pixel_values=pixels, attention_mask=mask,
                                   position_ids=self._positions(mask), logits_to_keep=1)
        logits = out.logits[:, -1].float()
        if n > 1:  # the G samples of a context share its prefill: index_select the cache along the batch
            index = torch.arange(ids.shape[0], device=self.device).repeat_interleave(n)
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
            else:
                u = torch.stack([torch.rand(logp.shape[-1], generator=g, dtype=torch.float64) for g in generators])
                gumbel = -torch.log(-torch.log(u.clamp_(1e-12, 1.0 - 1e-12)))
                nxt = (logp + gumbel.to(logp.device, logp.dtype)).argmax(-1)  # a sample of softmax(logp)
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
            out, cache = self._forward(model, cache, input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                                       logits_to_keep=1)
            logits = out.logits[:, -1].float()
        return tokens, logps

    def _text_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The policy's text distribution excludes the image special tokens: an emitted image placeholder would be
        taken for an image slot when the completion is scored."""
        banned = [self.image_token_id, self.boi_token_id, self.eoi_token_id]
        logits[..., banned] = float("-inf")
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
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) >= sampling.top_p  # keep the smallest set reaching top_p
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        return F.log_softmax(logits, -1)

    def token_logprobs(
        self, contexts: Sequence[Context], completions: Sequence[Sequence[int]], *, reference: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
        if full_ids.shape[1] > self.max_positions:
            raise BackendError(f"token_logprobs: {full_ids.shape[1]} tokens exceed max_position_embeddings="
                               f"{self.max_positions}")
        # a group's G rows share one Context object: encode each distinct context's images once (the encoder's
        # gradient is then the sum over the rows, as with one copy per row) and repeat the features per row
        unique: dict[int, int] = {}  # id(context) -> its index among the distinct contexts with images
        distinct: list[Context] = []
        for c in contexts:
            if c.images and id(c) not in unique:
                unique[id(c)] = len(distinct)
                distinct.append(c)
        pixels = self._pixels([im for c in distinct for im in c.images])
        grad = torch.enable_grad() if not reference else torch.no_grad()
        with grad, self._scoring_model(reference) as model, self._autocast():
            inputs: dict[str, Any] = {"input_ids": full_ids}
            if pixels is not None:
                core = self.janus if model is self._train_wrapper else model  # the Janus module (not a wrapper)
                per_context = core.model.get_image_features(pixels).pooler_output  # (images, N, h)
                per_context = per_context.reshape(len(distinct), -1, per_context.shape[-1])
                rows = torch.tensor([unique[id(c)] for c in contexts if c.images], device=self.device)
                embeds = core.get_input_embeddings()(full_ids)
                slots = (full_ids == self.image_token_id).unsqueeze(-1)
                feats = per_context[rows].reshape(-1, per_context.shape[-1]).to(embeds.dtype)
                inputs = {"inputs_embeds": embeds.masked_scatter(slots, feats)}
            # only the last t+1 positions are projected to the (large) vocabulary: they predict the completion
            out = model(**inputs, attention_mask=full_mask, position_ids=self._positions(full_mask), use_cache=False,
                        logits_to_keep=t + 1)
            logits = self._text_logits(out.logits[:, :-1].float())  # (B, T, V)
            logp = logits.gather(-1, comp[..., None]).squeeze(-1) - logits.logsumexp(-1)
        maskf = comp_mask.to(logp.dtype)
        return logp * maskf, maskf

    # ---------------------------------------------------------------- images
    @torch.no_grad()
    def generate_images(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[np.ndarray]:
        if len(prompts) != len(seeds):
            raise BackendError(f"generate_images: {len(prompts)} prompts but {len(seeds)} seeds")
        from transformers import GenerationConfig, LogitsProcessorList

        out: list[np.ndarray] = []
        bs = self.options.image_batch_size
        chunks = range(0, len(prompts), bs)
        with self._image_model() as model:
            for start in tqdm(chunks, desc="janus images", unit="batch", leave=False, disable=len(chunks) < 2):
                batch, batch_seeds = prompts[start:start + bs], seeds[start:start + bs]
                rows = [self._prompt_ids(str(p), understanding=False) + [self.boi_token_id] for p in batch]
                for i, r in enumerate(rows):
                    self.check_length(len(r) + self.num_image_tokens, f"image prompt {start + i}")
                ids, mask = self._left_pad(rows)
                sampler = _GuidedSeededSampler(self.options.guidance_scale, self.options.image_temperature,
                                               batch_seeds, self.device)
                gen_cfg = GenerationConfig(
                    do_sample=False, num_beams=1, num_return_sequences=1,
                    guidance_scale=1.0,  # guidance is done by the sampler above
                    max_length=ids.shape[1] + self.num_image_tokens, bos_token_id=self.bos_token_id,
                    pad_token_id=self.image_pad_token_id, eos_token_id=self.eos_token_id,
                    generation_kwargs={"boi_token_id": self.boi_token_id},
                )
                # with float32 master weights the model's .dtype (its first parameter's) is float32, so the static
                # cache generate() would allocate could not hold the autocast bf16 keys: give it a dynamic one
                extra = {}
                if self._autocast_on:
                    from transformers import DynamicCache

                    extra = {self._cache_kw: DynamicCache()}
                with self._autocast():
                    tokens = model.generate(input_ids=ids, attention_mask=mask, generation_mode="image",
                                            generation_config=gen_cfg,
                                            logits_processor=LogitsProcessorList([sampler]), **extra)
                    out.extend(self.decode_image_tokens(model, tokens))
        return out

    def decode_image_tokens(self, model: Any, tokens: torch.Tensor) -> list[np.ndarray]:
        """VQ-decode (B, num_image_tokens) ids into (H, W, 3) uint8 images (the decoder's range is [-1, 1])."""
        pixels = model.decode_image_tokens(tokens.to(self.device)).float()  # (B, H, W, 3)
        arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
        return [np.ascontiguousarray(a) for a in arr]

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        opts = self.options.to_dict()
        opts.pop("device", None)  # where to run is chosen at load time
        if self.peft_model is not None:
            self.peft_model.save_pretrained(str(tmp / ADAPTER_SUBDIR), selected_adapters=[self.options.adapter_name])
            src = tmp / ADAPTER_SUBDIR
            if not (src / self.options.adapter_name).is_dir():  # peft writes the "default" adapter at the top level
                (src / self.options.adapter_name).mkdir()
                for f in list(src.iterdir()):
                    if f.is_file():
                        f.rename(src / self.options.adapter_name / f.name)
            self.tokenizer.save_pretrained(str(tmp / ADAPTER_SUBDIR))
            self.image_processor.save_pretrained(str(tmp / ADAPTER_SUBDIR))
            write_backend_meta(tmp, KIND, options=opts, adapter=True, base_model=str(self.base_dir))
        else:
            self.janus.save_pretrained(str(tmp / MODEL_SUBDIR))
            self.tokenizer.save_pretrained(str(tmp / MODEL_SUBDIR))
            self.image_processor.save_pretrained(str(tmp / MODEL_SUBDIR))
            write_backend_meta(tmp, KIND, options=opts, adapter=False, base_model=MODEL_SUBDIR)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_dtype_for(device: str, dtype: str) -> str:
    """The dtype ``init --check`` loads in on ``device``: the recipe's, except bf16 on a CPU without native bf16
    (the host CPUs of many GPU machines), where float32 shows the same model without failing."""
    if torch.device(device).type == "cpu" and dtype == "bfloat16" and not cpu_supports_bf16():
        return "float32"
    return dtype


def check_model(model_dir: str | Path, device: str, **options: Any) -> dict[str, Any]:
    """Load the Janus at ``model_dir`` with ``options`` on ``device`` once and return its summary: what
    ``init --check`` runs *before* writing anything. bf16 on a CPU without native bf16 loads in float32 instead
    (the summary says so): the check is about the weights and options, not about this host's CPU."""
    opts = JanusOptions.from_dict({k: v for k, v in options.items() if k != "device"}, "janus init options")
    check_dtype = check_dtype_for(device, opts.dtype)
    summary = JanusBackend.load(model_dir, **{**options, "device": device, "dtype": check_dtype}).describe()
    if check_dtype != opts.dtype:
        summary["check_note"] = (f"loaded in {check_dtype} for this check: this CPU has no native {opts.dtype}; "
                                 f"the checkpoint keeps dtype={opts.dtype} for the GPU run")
    return summary


def write_init_checkpoint(model_dir: str | Path, out: str | Path, **options: Any) -> Path:
    """A seer checkpoint that *points at* a transformers Janus directory (no weights copied) and carries the
    backend options (LoRA, dtype, …), so ``seer train … --model OUT`` starts from it with those options."""
    model_dir, out = Path(model_dir).resolve(), Path(out)
    opts = JanusOptions.from_dict(options, "janus init options")
    _read_config(model_dir)
    load_tokenizer_and_processor(model_dir)
    data = opts.to_dict()
    data.pop("device", None)
    out.mkdir(parents=True, exist_ok=True)
    write_backend_meta(out, KIND, options=data, adapter=False, base_model=str(model_dir))
    return out


# -------------------------------------------------------------------- tiny models for tests and examples
TINY_WORDS = (
    "think step by step inside , then give the final answer . image A B : instruction prompt which correctly "
    "follows while keeping subject of recognizable and having better quality ? or rewrite so that generated "
    "write new none a red blue green cat dog house tree in style the with"
).split()


def build_tiny_janus(path: str | Path, seed: int = 0, *, text_layers: int = 2, image_size: int = 32,
                     patch_size: int = 8, max_positions: int = 512) -> Path:
    """Write a tiny random transformers-format Janus directory (config, weights, word-level tokenizer with the Janus
    special tokens, image processor): the pattern every backend test copies. ``image_size/patch_size`` squared is the
    number of image tokens (16 by default; 384/16 gives Janus-Pro's 576, with ``max_positions`` >= 1300 for two
    images); generated images are ``2 * image_size / patch_size`` pixels wide."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import JanusConfig, JanusForConditionalGeneration, PreTrainedTokenizerFast
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    from seer.prompts import FORMAT_TAGS

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<bos>", "<eos>", "<unk>", *SPECIAL_TOKEN_DEFAULTS.values(), "<|User|>", "<|Assistant|>"]
    # the system prompt's words too, so understanding prompts have no unknown tokens
    vocab_list = specials + list(FORMAT_TAGS) + sorted(set(TINY_WORDS) | set(JANUS_SYSTEM_PROMPT.split()))
    vocab = {w: i for i, w in enumerate(vocab_list)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(specials)  # matched before splitting, so "<|User|>:" is two tokens
    # like Janus's Llama tokenizer, add BOS to encoded text (what transformers' JanusProcessor relies on)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={
            "image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"},
    )
    grid = image_size // patch_size
    config = JanusConfig(
        text_config=dict(model_type="llama", vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_positions, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=image_size,
                           patch_size=patch_size, projection_dim=32, num_image_tokens=grid * grid, mlp_ratio=2.0),
        vq_config=dict(embed_dim=8, num_embeddings=32, latent_channels=32, base_channels=32, channel_multiplier=[1, 2],
                       num_res_blocks=1, projection_dim=32, image_token_embed_dim=32),
        image_token_id=vocab["<image_placeholder>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    JanusImageProcessorPil(size={"height": image_size, "width": image_size}, min_size=4,
                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(str(path))
    return path


__all__ = ["JanusBackend", "JanusOptions", "LoraOptions", "build_tiny_janus", "check_image_generation_config",
           "cpu_supports_bf16"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seer.backends.janus init|tiny|describe`` — set up a Janus starting point for ``seer train``."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m seer.backends.janus", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser("init", help="write a seer checkpoint pointing at local Janus weights, with options")
    p_init.add_argument("model_dir", help="transformers-format Janus/Janus-Pro directory (e.g. Janus-Pro-1B)")
    p_init.add_argument("out", help="checkpoint directory to write (only backend.json; weights are not copied)")
    p_init.add_argument("--options", help="YAML mapping of JanusOptions (e.g. recipes/janus_pro_1b/backend.yaml)")
    p_init.add_argument("--check", action="store_true",
                        help="load the model once before writing anything and print its summary")
    p_init.add_argument("--device", default=None,
                        help="where --check loads the model (default: cuda when present, else cpu)")
    p_tiny = sub.add_parser("tiny", help="write a tiny random Janus directory (for tests and trying the pipeline)")
    p_tiny.add_argument("out")
    p_tiny.add_argument("--seed", type=int, default=0)
    p_desc = sub.add_parser("describe", help="load a Janus directory or checkpoint and print its summary")
    p_desc.add_argument("path")
    p_desc.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "init":
            opts: dict[str, Any] = {}
            if args.options:
                try:
                    opts = yaml.safe_load(Path(args.options).read_text()) or {}
                except (OSError, yaml.YAMLError) as e:
                    raise BackendError(f"{args.options}: cannot read options ({e})") from e
                if not isinstance(opts, dict):
                    raise BackendError(f"{args.options}: expected a mapping of Janus options")
            opts.pop("device", None)  # where to run is chosen per command (--device), never stored
            if args.check:  # load first: a failed check leaves no half-made checkpoint directory
                print(json.dumps(check_model(args.model_dir, args.device or default_device(), **opts), indent=2))
            out = write_init_checkpoint(args.model_dir, args.out, **opts)
            print(f"wrote {out / BACKEND_FILE}")
        elif args.cmd == "tiny":
            print(build_tiny_janus(args.out, args.seed))
        else:
            print(json.dumps(JanusBackend.load(args.path, device=args.device).describe(), indent=2))
    except BackendError as e:
        print(f"seer: error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
