"""Harmon as one ``torch.nn.Module`` for seer, its directory format, and the key map from the official checkpoints.

The model: transformers' native ``Qwen2ForCausalLM`` (``language_model``), seer's MAR encoder/decoder (``mar``), the
diffusion MLP head (``diffusion_head``), the two projections between the MAR width and the language model's
(``proj_in``: MAR → LM, ``proj_out``: LM → MAR) and the KL-16 VAE (``vae``). See ``seer/backends/harmon.py`` for how
it departs from Harmon.

A seer Harmon directory holds ``harmon.json`` (``model_type: seer_harmon``: the Qwen2 config, the MAR and VAE
configs, the VAE latent scale and the image placeholder token), ``model.safetensors`` (seer's parameter names) and
the tokenizer. ``convert_official`` builds one from the released files: Harmon's ``harmon_1.5b.pth`` (names
``llm.*``, ``mar.*``, ``proj_in.*``, ``proj_out.*``; the VAE is not in it), MAR's ``kl16.ckpt`` (``{"model": {...}}``
with ``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*``) and the Qwen2.5 directory the LLM config
and tokenizer come from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seer.backends.base import BackendError
from seer.backends.harmon_modules import KLVAE, MAR, DiffusionHead, MARConfig, VAEConfig

MODEL_TYPE = "seer_harmon"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "harmon.json"  # not config.json: transformers' Auto* classes would read it as theirs
DEFAULT_IMAGE_TOKEN = "<|image_pad|>"  # a Qwen2.5 special token; marks the slots the image features fill
# official name prefix -> seer name prefix, first match wins (the key map; ``official_to_seer`` applies it)
HARMON_PREFIXES = (
    ("llm.", "language_model."),
    ("mar.diffloss.net.", "diffusion_head."),
    ("mar.", "mar."),
    ("proj_in.", "proj_in."),
    ("proj_out.", "proj_out."),
)
# in Harmon's checkpoint, never used by Harmon's forward passes: MAR's class-label table (Harmon conditions on text)
HARMON_UNUSED = ("mar.class_emb.weight",)
VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")  # kl16.ckpt: "vae." is prepended


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.SiLU(), nn.Linear(hidden, cout))


class HarmonModel(nn.Module):
    """Harmon's modules and the two forwards seer needs from them (understanding; one generation step)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        from transformers import Qwen2Config, Qwen2ForCausalLM

        self.config = config
        self.mar_cfg = MARConfig(**config["mar"])
        self.vae_cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["vae"].items()})
        self.vae_scale = float(config["vae_scale"])
        self.image_token_id = int(config["image_token_id"])
        llm_cfg = Qwen2Config(**config["llm"])
        self.language_model = Qwen2ForCausalLM(llm_cfg)
        h, e = llm_cfg.hidden_size, self.mar_cfg.encoder_embed_dim
        self.mar = MAR(self.mar_cfg)
        self.diffusion_head = DiffusionHead(self.mar_cfg.token_dim, self.mar_cfg.decoder_embed_dim,
                                            self.mar_cfg.diffloss_w, self.mar_cfg.diffloss_d)
        self.proj_in = _mlp(e, h, h)  # MAR encoder width -> LM width
        self.proj_out = _mlp(h, h, e)  # LM width -> MAR encoder width (a residual onto the MAR encoding)
        self.vae = KLVAE(self.vae_cfg)

    # ------------------------------------------------------------ image <-> latent tokens
    @property
    def patch(self) -> int:
        """Pixels per MAR token side: the VAE's stride times MAR's patch size (16 for Harmon)."""
        return self.vae_cfg.stride * self.mar_cfg.patch_size

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, h·w, C·p²) scaled latent tokens, row-major; the posterior mean (not a
        sample: scoring must be deterministic)."""
        z = self.vae.encode_mean(pixels.to(self.vae.quant_conv.weight.dtype)) * self.vae_scale  # (B, C, H/s, W/s)
        b, c, hh, ww = z.shape
        p = self.mar_cfg.patch_size
        z = z.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
        return z.reshape(b, (hh // p) * (ww // p), c * p * p)

    def tokens_to_image(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, h·w, C·p²) latent tokens -> (B, 3, H, W) pixels (about [-1, 1])."""
        b = tokens.shape[0]
        h, w = hw
        p, c = self.mar_cfg.patch_size, self.mar_cfg.vae_embed_dim
        z = tokens.reshape(b, h, w, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h * p, w * p)
        return self.vae.decode((z / self.vae_scale).to(self.vae.post_quant_conv.weight.dtype))

    def to_llm(self, enc: torch.Tensor) -> torch.Tensor:
        """MAR encodings (B, buffer + n, E) -> LM inputs (B, n + buffer, H): projected, and the buffer slots moved
        after the image tokens, as Harmon feeds them."""
        z = self.proj_in(enc)
        nb = self.mar_cfg.buffer_size
        return torch.cat([z[:, nb:], z[:, :nb]], dim=1)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Understanding: (B, 3, H, W) -> (B, h·w + buffer, H) LM inputs (nothing masked)."""
        tokens = self.image_tokens(pixels)
        hw = (pixels.shape[2] // self.patch, pixels.shape[3] // self.patch)
        mask = tokens.new_zeros(tokens.shape[:2])
        return self.to_llm(self.mar.encode(tokens, mask, hw))

    def slots_per_image(self, size: int) -> int:
        return (size // self.patch) ** 2 + self.mar_cfg.buffer_size

    # ------------------------------------------------------------ understanding forward (θ's gradient path)
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                pixels: torch.Tensor | None = None, image_rows: torch.Tensor | None = None,
                logits_to_keep: int = 0) -> torch.Tensor:
        """Logits (B, T', V) of the prompts ``input_ids`` (B, T) whose ``image_token_id`` slots are filled, in
        order, with the features of ``pixels`` (I, 3, H, W) — image ``k`` of a row is ``pixels[image_rows[r, k]]``
        flattened, so G rows sharing a context share one encoding. Used through ``train_module`` (DDP/peft)."""
        lm = self.language_model
        embeds = lm.get_input_embeddings()(input_ids)  # (B, T, H)
        if pixels is not None:
            feats = self.image_features(pixels).to(embeds.dtype)  # (I, N, H)
            per_row = feats[image_rows].reshape(input_ids.shape[0], -1, feats.shape[-1])  # (B, k·N, H)
            slots = (input_ids == self.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, per_row)
        out = lm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                 logits_to_keep=logits_to_keep)
        return out.logits


# -------------------------------------------------------------------- the key map
def official_to_seer(harmon_sd: dict[str, torch.Tensor], vae_sd: dict[str, torch.Tensor],
                     where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename the official Harmon and KL-16 state dicts to seer's names. Returns (state dict, names dropped); a name
    that matches no rule is an error naming it (a file that is not Harmon's)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for name, t in harmon_sd.items():
        if name in HARMON_UNUSED:
            dropped.append(name)
            continue
        for src, dst in HARMON_PREFIXES:
            if name.startswith(src):
                out[dst + name[len(src):]] = t
                break
        else:
            if name.startswith("vae."):  # a Harmon state dict saved with its VAE: same names as kl16.ckpt
                out[name] = t
                continue
            raise BackendError(f"{where}: parameter {name!r} is not a Harmon parameter (expected names under "
                               f"{[p for p, _ in HARMON_PREFIXES]})")
    for name, t in vae_sd.items():
        if name.startswith(VAE_PREFIXES):
            out["vae." + name] = t
        else:
            dropped.append(name)  # e.g. the VAE's training loss / discriminator
    return out, dropped


def tied_names(model: HarmonModel) -> set[str]:
    """Parameter names that alias another parameter (lm_head tied to the embeddings): not stored."""
    seen: dict[int, str] = {}
    tied = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        else:
            seen[id(p)] = name
    return tied


def load_state(model: HarmonModel, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` strictly: the first missing, unexpected or mis-shaped parameter is named."""
    own = {k: v for k, v in model.state_dict().items() if k not in tied_names(model)}
    for name, t in own.items():
        if name not in state:
            raise BackendError(f"{where}: missing parameter {name!r} (shape {tuple(t.shape)}); not a Harmon "
                               f"checkpoint, or one of another configuration ({len(state)} tensors found)")
        if tuple(state[name].shape) != tuple(t.shape):
            raise BackendError(f"{where}: parameter {name!r} has shape {tuple(state[name].shape)}, the config "
                               f"expects {tuple(t.shape)}")
    extra = sorted(set(state) - set(own) - tied_names(model))
    if extra:
        raise BackendError(f"{where}: unexpected parameter {extra[0]!r} ({len(extra)} in all); not a Harmon "
                           "checkpoint of this configuration")
    model.load_state_dict({k: state[k] for k in own}, strict=False)


# -------------------------------------------------------------------- directory format
def read_config(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise BackendError(f"{model_dir}: model directory does not exist")
    cfg_file = model_dir / CONFIG_FILE
    if not cfg_file.is_file():
        other = ""
        if (model_dir / "config.json").is_file():
            try:
                got = json.loads((model_dir / "config.json").read_text()).get("model_type")
            except (json.JSONDecodeError, AttributeError):
                got = None
            other = f" ({model_dir / 'config.json'} says model_type {got!r}: not a seer Harmon directory)"
        raise BackendError(f"{cfg_file}: missing{other}; expected a seer Harmon directory ({CONFIG_FILE}, "
                           f"{WEIGHTS_FILE}, tokenizer) — build one from the released weights with "
                           "`python -m seer.backends.harmon convert`")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise BackendError(f"{cfg_file}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict) or cfg.get("model_type") != MODEL_TYPE:
        got = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise BackendError(f"{cfg_file}: model_type {got!r} is not a seer Harmon directory (expected "
                           f"{MODEL_TYPE!r}); convert Harmon's released weights with "
                           "`python -m seer.backends.harmon convert`")
    for key, cls in (("mar", MARConfig), ("vae", VAEConfig)):
        block = cfg.get(key)
        if not isinstance(block, dict):
            raise BackendError(f"{cfg_file}: field {key!r} missing or not a mapping")
        unknown = sorted(set(block) - {f.name for f in fields(cls)})
        if unknown:
            raise BackendError(f"{cfg_file}: unknown {key} field(s) {unknown}")
    for key in ("llm", "vae_scale", "image_token_id"):
        if key not in cfg:
            raise BackendError(f"{cfg_file}: field {key!r} missing")
    if cfg["llm"].get("model_type", "qwen2") != "qwen2":
        raise BackendError(f"{cfg_file}: llm.model_type {cfg['llm'].get('model_type')!r}; Harmon's LM is qwen2")
    return cfg


def load_model(model_dir: Path, dtype: torch.dtype = torch.float32) -> HarmonModel:
    """Build the model from ``harmon.json`` and load ``model.safetensors`` strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = read_config(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise BackendError(f"{weights}: missing; the Harmon weights")
    with torch.device("meta"):
        model = HarmonModel(cfg)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise BackendError(f"{weights}: cannot read ({e})") from e
    model = materialize(model)
    load_state(model, state, str(weights))
    return model.to(dtype)


def materialize(model: HarmonModel) -> HarmonModel:
    """A model built on the meta device, given real (uninitialised) CPU storage: its non-persistent buffers (the
    rotary frequencies) rebuilt and the LM head re-tied to the embeddings (``to_empty`` unties them)."""
    model = model.to_empty(device="cpu")
    lm = model.language_model.model
    if hasattr(lm, "rotary_emb"):
        lm.rotary_emb = type(lm.rotary_emb)(lm.config)
    if model.language_model.config.tie_word_embeddings:
        model.language_model.tie_weights()
    return model


def save_model(model: HarmonModel, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tied = tied_names(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in tied}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")


def harmon_config(llm: dict[str, Any], mar: MARConfig, vae: VAEConfig, vae_scale: float,
                  image_token_id: int) -> dict[str, Any]:
    return {"model_type": MODEL_TYPE, "llm": llm, "mar": asdict(mar), "vae": asdict(vae), "vae_scale": vae_scale,
            "image_token_id": image_token_id}


# Harmon-1.5B (configs/models/qwen2_5_1_5b_kl16_mar_h.py): MAR-Huge, 64 buffer slots, 12x1536 diffusion head, KL-16
HARMON_1_5B_MAR = MARConfig()
HARMON_1_5B_VAE = VAEConfig()
HARMON_VAE_SCALE = 0.2325
