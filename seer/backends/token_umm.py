"""The token-UMM backend: a Hugging Face causal LM over word tokens plus discrete image tokens (Janus/Chameleon in
miniature), with a :class:`~seer.backends.image_tokenizer.PatchCodebook` turning images into codes and back.

Sequence formats (the one source of truth; ``seer world pretrain`` trains on exactly these)::

    text task         <bos> {context} <sep> {completion} <eos>        each <image> → <boi> <img_c1> … <img_cL> <eoi>
    image generation  <bos> <gen> {prompt} <boi> <img_c1> … <img_cL> <eoi>

With ``image_cfg_scale > 1`` image sampling uses classifier-free guidance against the empty prompt
(``<bos> <gen> <boi>``), as Janus does; a model meant for it should see image examples with the prompt dropped
(``encode_image_example("", image)``) during pretraining.

θ and ϕ (paper Sec. 3.1): ϕ = the image-token rows of ``embed_tokens`` and ``lm_head`` plus the image tokenizer; θ is
every other parameter, including the shared transformer body, as in Janus where the LLM trains while the generation
embeddings and head stay frozen. The embedding and output matrices hold both, so θ includes them whole: a gradient
hook zeroes the ϕ rows' gradients and :meth:`TokenUMMBackend.after_optimizer_step` copies the saved ϕ rows back, so
AdamW's weight decay cannot move them either.

Text sampling and scoring use the same restricted vocabulary (text tokens and ``<eos>``; image tokens and
``<pad> <unk> <bos> <sep> <gen> <boi> <eoi>`` masked), so the log-probs the sampler saw at temperature 1 equal the
ones :meth:`TokenUMMBackend.token_logprobs` recomputes. Every sampled row draws its noise from its own
``torch.Generator`` (Gumbel-max), so a row's result depends on its own inputs and seed only, not on its batch-mates.

**Decoupled image input (world v2).** A backend built with a :class:`VisionInput` reads the images of understanding
contexts through a frozen vision encoder and a trained aligner (Janus's SigLIP + aligner in miniature): the code tokens
of a ``<boi> … <eoi>`` span in a sequence without ``<gen>`` are embedded as ``aligner(encoder(pixels))`` instead of by
their ``embed_tokens`` rows, while generation (``<gen>`` sequences and decoded codes) keeps the VQ code rows. The
encoder reads the pixels its codes decode to; in the world a render and a generation *are* their codes (the round trip
is exact), and the token ids stay the one key of a context, so shared prefills and caches need no image tensors. The
encoder is ϕ (frozen, in :meth:`TokenUMMBackend.frozen_state`); the aligner is θ.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from seer.backends.base import (
    IMAGE_PLACEHOLDER,
    BackendError,
    Completion,
    Context,
    SamplingParams,
    cache_keyword,
    check_image,
    per_context_seeds,
    read_backend_meta,
    write_backend_meta,
)
from seer.backends.image_tokenizer import PatchCodebook
from seer.backends.text_tokenizer import (
    BOI,
    BOS,
    EOI,
    EOS,
    GEN,
    PAD,
    SEP,
    UNK,
    build_word_tokenizer,
    collect_words,
    decode,
    image_token_range,
)
from seer.prompts import DEFAULT_TEMPLATES, NO_INSTRUCTION

KIND = "token_umm"
DTYPES = ("float32", "bfloat16")
_MODEL_FILES = ("config.json", "model.safetensors")
_TOKENIZER_FILE = "tokenizer.json"
_ALIGNER_FILE = "aligner.safetensors"
_CACHE = cache_keyword(LlamaForCausalLM)  # "cache" where transformers deprecates past_key_values


def collate(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``(input_ids, loss_mask)`` examples into ``input_ids``, ``attention_mask`` and ``labels`` (B, S)
    LongTensors. ``labels`` is ``input_ids`` where the loss mask is 1 and -100 elsewhere, aligned with the inputs
    (not shifted), as ``LlamaForCausalLM(input_ids, attention_mask, labels=labels)`` expects."""
    if not examples:
        raise BackendError("collate: no examples")
    S = max(len(ids) for ids, _ in examples)
    B = len(examples)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, S), dtype=torch.long)
    labels = torch.full((B, S), -100, dtype=torch.long)
    for b, (ids, mask) in enumerate(examples):
        if len(ids) != len(mask):
            raise BackendError(f"collate: example {b} has {len(ids)} ids but a loss mask of {len(mask)}")
        ids_t = torch.as_tensor(list(ids), dtype=torch.long)
        mask_t = torch.as_tensor(list(mask), dtype=torch.bool)
        input_ids[b, : len(ids)] = ids_t
        attention_mask[b, : len(ids)] = 1
        labels[b, : len(ids)] = torch.where(mask_t, ids_t, torch.full_like(ids_t, -100))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@contextlib.contextmanager
def _quiet_hf() -> Iterator[None]:
    """No transformers progress bars for our one-shard saves and loads (checkpoints are written every N steps)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _row_seed(*entropy: int) -> int:
    """A 63-bit seed mixed from integers (any sign), so nearby seeds give unrelated streams."""
    words = np.random.SeedSequence([int(e) % (1 << 64) for e in entropy]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1])) & ((1 << 63) - 1)


def _gumbel(generators: Sequence[torch.Generator], n: int) -> torch.Tensor:
    """(B, n) Gumbel noise, row b drawn from ``generators[b]`` only."""
    u = torch.stack([torch.rand(n, generator=g, dtype=torch.float64) for g in generators])
    u = u.clamp_(1e-12, 1.0 - 1e-12)
    return (-torch.log(-torch.log(u))).to(torch.float32)


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k / nucleus top-p set to -inf; (B, V) → (B, V)."""
    if top_k and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if 0.0 < top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token once the mass of the tokens before it already reaches top_p (the first is always kept)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


class VisionInput(torch.nn.Module):
    """Understanding images through a frozen encoder (ϕ) and a trained aligner (θ); see the module docstring.

    ``centroids`` (K, 48) are the codebook's patch pixel values in [0, 255] and ``perm`` the codebook's token order
    (token t is raster cell ``perm[t]``), so codes decode to the raster cells the encoder reads."""

    def __init__(self, encoder: torch.nn.Module, aligner: torch.nn.Module, centroids: np.ndarray, perm: np.ndarray):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.aligner = aligner
        self.register_buffer("centroids", torch.as_tensor(np.asarray(centroids, np.float32)).reshape(
            len(centroids), -1) / 255.0, persistent=False)
        perm = torch.as_tensor(np.asarray(perm), dtype=torch.long)
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv", torch.argsort(perm), persistent=False)

    def features(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, L) code indices (token order) → (N, L, hidden) aligned features (token order)."""
        patches = self.centroids[codes][:, self.inv]  # (N, L, 48) raster order
        with torch.no_grad():
            feats = self.encoder(patches)  # the encoder is frozen: no graph through it
        return self.aligner(feats)[:, self.perm]

    def embed(self, input_ids: torch.Tensor, embeds: torch.Tensor, span: tuple[int, int, int, int, int, int]):
        """Replace the embeddings of understanding-image codes in ``embeds`` (B, S, H); ``span`` = (image_start,
        num_codes, tokens_per_image, boi, eoi, gen ids)."""
        lo, K, L, boi, eoi, gen = span
        is_code = (input_ids >= lo) & (input_ids < lo + K)
        inside = ((input_ids == boi).long().cumsum(1) - (input_ids == eoi).long().cumsum(1)) > 0
        und = is_code & inside & ~(input_ids == gen).any(1, keepdim=True)
        if not bool(und.any()):
            return embeds
        rows, cols = und.nonzero(as_tuple=True)  # row-major: each image's L codes are consecutive
        if rows.numel() % L:
            raise BackendError(f"an understanding image span holds {rows.numel()} code tokens, not a multiple of "
                               f"the {L} tokens per image")
        codes = (input_ids[rows, cols] - lo).view(-1, L)
        feats = self.features(codes).reshape(-1, embeds.shape[-1]).to(embeds.dtype)
        return embeds.index_put((rows, cols), feats)


class UMMNet(torch.nn.Module):
    """A ``LlamaForCausalLM`` whose understanding images are read through a :class:`VisionInput`; it takes the
    same keyword arguments as the language model (``input_ids`` required) and returns its output."""

    def __init__(self, llm: LlamaForCausalLM, vision: VisionInput, span: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.llm = llm
        self.vision = vision
        self.span = span

    @property
    def config(self):
        return self.llm.config

    def forward(self, input_ids: torch.Tensor, **kwargs: Any):
        embeds = self.llm.get_input_embeddings()(input_ids)
        embeds = self.vision.embed(input_ids, embeds, self.span)
        return self.llm(inputs_embeds=embeds, **kwargs)


class TokenUMMBackend:
    """A :class:`~seer.backends.base.UnifiedBackend` over a ``LlamaForCausalLM`` with text and image tokens.

    Options: ``max_batch`` rows per forward (bigger requests are chunked); ``image_temperature`` for image-token
    sampling (0 = argmax); ``image_cfg_scale`` (1 = no classifier-free guidance); ``dtype`` "float32" or
    "bfloat16" (CPU autocast for every forward, weights stay float32; on a CPU without native bf16 instructions it
    measured about 2x slower than float32, see ``bench/bench_backend.py``).
    """

    kind = KIND

    def __init__(
        self,
        model: LlamaForCausalLM,
        tokenizer: PreTrainedTokenizerFast,
        image_tokenizer: PatchCodebook,
        *,
        max_batch: int = 32,
        image_temperature: float = 1.0,
        image_cfg_scale: float = 1.0,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        vision: VisionInput | None = None,
    ):
        if dtype not in DTYPES:
            raise BackendError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if max_batch < 1:
            raise BackendError(f"max_batch must be >= 1, got {max_batch}")
        if image_temperature < 0:
            raise BackendError(f"image_temperature must be >= 0 (0 = argmax), got {image_temperature}")
        if image_cfg_scale < 1.0:
            raise BackendError(f"image_cfg_scale must be >= 1 (1 = no guidance), got {image_cfg_scale}")
        if len(tokenizer) != model.config.vocab_size:
            raise BackendError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                               f"{model.config.vocab_size}")
        self.image_start, self.num_image_codes = image_token_range(tokenizer)
        if self.num_image_codes != image_tokenizer.num_codes:
            raise BackendError(f"tokenizer has {self.num_image_codes} image tokens but the image tokenizer has "
                               f"{image_tokenizer.num_codes} codes")
        self.model = model.to(device).float()
        self.model.eval()  # no dropout in this model; eval() only keeps HF from warning
        self.tokenizer = tokenizer
        self.image_tokenizer = image_tokenizer
        self.device = torch.device(device)
        self.max_batch = int(max_batch)
        self.image_temperature = float(image_temperature)
        self.image_cfg_scale = float(image_cfg_scale)
        self.dtype = dtype
        self.share_prefix = True  # token_logprobs runs a context repeated in the batch once (see _score_shared)

        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (PAD, UNK, BOS, EOS, SEP, GEN, BOI, EOI)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = ids[PAD], ids[UNK], ids[BOS], ids[EOS]
        self.sep_id, self.gen_id, self.boi_id, self.eoi_id = ids[SEP], ids[GEN], ids[BOI], ids[EOI]
        self.num_text = self.image_start  # text ids are [0, image_start): the restricted vocabulary lives there
        masked = [self.pad_id, self.unk_id, self.bos_id, self.sep_id, self.gen_id, self.boi_id, self.eoi_id]
        self._text_bias = torch.zeros(self.num_text, device=self.device)
        self._text_bias[masked] = -math.inf
        self._allowed_text = torch.isfinite(self._text_bias).cpu()

        self._phi_rows = slice(self.image_start, self.image_start + self.num_image_codes)
        self._phi_params = {
            "model.embed_tokens.weight": self.model.get_input_embeddings().weight,
            "lm_head.weight": self.model.get_output_embeddings().weight,
        }
        self._phi_saved = {k: p[self._phi_rows].detach().clone() for k, p in self._phi_params.items()}
        for p in self._phi_params.values():
            p.register_hook(self._zero_phi_grad)
        self.vision = vision
        # the module every forward runs: the language model itself, or with the decoupled vision input
        self.net: torch.nn.Module = self.model
        if vision is not None:
            span = (self.image_start, self.num_image_codes, image_tokenizer.tokens_per_image, self.boi_id,
                    self.eoi_id, self.gen_id)
            self.net = UMMNet(self.model, vision.to(device).float(), span)
        self._train_module: torch.nn.Module = self.net
        self._reference: LlamaForCausalLM | None = None
        self.set_reference()

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        words: Sequence[str],
        codebook: PatchCodebook,
        *,
        hidden: int = 256,
        layers: int = 4,
        heads: int = 4,
        intermediate: int | None = None,
        max_position: int = 512,
        seed: int = 0,
        **options: Any,
    ) -> TokenUMMBackend:
        """A randomly initialised model over ``words`` and the codebook's image codes. ``intermediate`` defaults
        to ~8/3 · hidden (the SwiGLU ratio of Llama), rounded up to a multiple of 32. ``options`` go to
        ``__init__`` (``max_batch``, ``image_temperature``, ``image_cfg_scale``, ``dtype``, ``device``)."""
        if hidden % heads:
            raise BackendError(f"hidden size {hidden} is not divisible by the number of heads {heads}")
        tokenizer = build_word_tokenizer(words, codebook.num_codes)
        if intermediate is None:
            intermediate = 32 * math.ceil(8 * hidden / 3 / 32)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_position,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            attention_dropout=0.0,
            pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
            bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
            eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        return cls(model, tokenizer, codebook, **options)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | None = None,
        max_batch: int | None = None,
        image_temperature: float | None = None,
        image_cfg_scale: float | None = None,
    ) -> TokenUMMBackend:
        """Open a directory written by :meth:`save`. Options left ``None`` take the saved values."""
        path = Path(path)
        meta = read_backend_meta(path)
        meta_file = path / "backend.json"
        if meta["kind"] != KIND:
            raise BackendError(f"{meta_file}: kind is {meta['kind']!r}, expected {KIND!r}")
        for name in (*_MODEL_FILES, _TOKENIZER_FILE, PatchCodebook.FILE):
            if not (path / name).is_file():
                raise BackendError(f"{path / name}: missing; a token_umm checkpoint needs {', '.join(_MODEL_FILES)}, "
                                   f"{_TOKENIZER_FILE} and {PatchCodebook.FILE}")
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        except Exception as e:  # tokenizers raises plain Exceptions for a corrupted file
            raise BackendError(f"{path / _TOKENIZER_FILE}: cannot be read as a tokenizer ({e})") from e
        codebook = PatchCodebook.load(path)
        try:
            config = LlamaConfig.from_pretrained(str(path))
        except Exception as e:
            raise BackendError(f"{path / 'config.json'}: cannot be read as a LlamaConfig ({e})") from e
        if len(tokenizer) != config.vocab_size:
            raise BackendError(f"{path / _TOKENIZER_FILE}: tokenizer has {len(tokenizer)} tokens but "
                               f"{path / 'config.json'} says vocab_size {config.vocab_size}")
        try:
            _, num_codes = image_token_range(tokenizer)
        except BackendError as e:
            raise BackendError(f"{path / _TOKENIZER_FILE}: {e}") from e
        if num_codes != codebook.num_codes:
            raise BackendError(f"{path / PatchCodebook.FILE}: codebook has {codebook.num_codes} codes but "
                               f"{path / _TOKENIZER_FILE} has {num_codes} image tokens")
        for key, have in (("num_image_codes", codebook.num_codes), ("tokens_per_image", codebook.tokens_per_image),
                          ("vocab_size", config.vocab_size)):
            if key in meta and int(meta[key]) != have:
                raise BackendError(f"{meta_file}: {key} is {meta[key]} but the checkpoint's files give {have}")
        if "image_size" in meta and tuple(meta["image_size"]) != tuple(codebook.image_size):
            raise BackendError(f"{meta_file}: image_size is {meta['image_size']} but {path / PatchCodebook.FILE} "
                               f"has {list(codebook.image_size)}")
        try:
            with _quiet_hf():
                model = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        except Exception as e:
            raise BackendError(f"{path / 'model.safetensors'}: cannot be loaded ({e})") from e
        vision = _load_vision(path, meta, codebook, config.hidden_size) if "vision" in meta else None
        return cls(
            model,
            tokenizer,
            codebook,
            vision=vision,
            max_batch=meta.get("max_batch", 32) if max_batch is None else max_batch,
            image_temperature=meta.get("image_temperature", 1.0) if image_temperature is None else image_temperature,
            image_cfg_scale=meta.get("image_cfg_scale", 1.0) if image_cfg_scale is None else image_cfg_scale,
            dtype=meta.get("dtype", "float32") if dtype is None else dtype,
            device=device,
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with _quiet_hf():
            self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        self.image_tokenizer.save(path)
        vision_meta = {}
        if self.vision is not None:
            from safetensors.torch import save_file

            self.vision.encoder.save(path)
            save_file({k: v.detach().float().contiguous() for k, v in self.vision.aligner.state_dict().items()},
                      str(path / _ALIGNER_FILE))
            vision_meta = {"vision": {"encoder": "seer.world.vision", "aligner": _ALIGNER_FILE}}
        write_backend_meta(
            path,
            KIND,
            vocab_size=self.model.config.vocab_size,
            num_image_codes=self.num_image_codes,
            tokens_per_image=self.image_tokenizer.tokens_per_image,
            image_size=list(self.image_tokenizer.image_size),
            image_tokenizer="patch_codebook",
            max_batch=self.max_batch,
            image_temperature=self.image_temperature,
            image_cfg_scale=self.image_cfg_scale,
            dtype=self.dtype,
            **vision_meta,
        )

    # -- sequence formats ----------------------------------------------------------------------------------------
    def _words(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        # text can never smuggle image codes in: "<img_3>" typed into a prompt is an unknown word
        return [i if i < self.image_start else self.unk_id for i in ids]

    def _image_ids(self, image: Any, where: str) -> list[int]:
        image = check_image(image, where)
        h, w = self.image_tokenizer.image_size
        if image.shape[:2] != (h, w):
            raise BackendError(f"{where}: expected a ({h}, {w}, 3) image for this model's image tokenizer, "
                               f"got {tuple(image.shape)}")
        codes = self.image_tokenizer.encode(image[None])[0]
        return [self.image_start + int(c) for c in codes]

    def encode_context(self, context: Context | str, where: str = "context") -> list[int]:
        """``<bos> {context} <sep>`` with each ``<image>`` expanded into ``<boi>`` codes ``<eoi>``."""
        if isinstance(context, str):
            context = Context(context)
        parts = context.text.split(IMAGE_PLACEHOLDER)
        ids = [self.bos_id]
        for i, part in enumerate(parts):
            if i:
                ids += [self.boi_id, *self._image_ids(context.images[i - 1], f"{where} image {i - 1}"), self.eoi_id]
            ids += self._words(part)
        ids.append(self.sep_id)
        return ids

    def encode_completion(self, completion: str) -> list[int]:
        """A completion's tokens followed by ``<eos>``."""
        return [*self._words(completion), self.eos_id]

    def encode_text_example(self, context: Context | str, completion: str) -> tuple[list[int], list[int]]:
        """``(input_ids, loss_mask)`` of a text task; the loss covers the completion and its ``<eos>``."""
        ctx, comp = self.encode_context(context), self.encode_completion(completion)
        return ctx + comp, [0] * len(ctx) + [1] * len(comp)

    def encode_image_prompt(self, prompt: str) -> list[int]:
        """``<bos> <gen> {prompt} <boi>``: what image generation continues from."""
        return [self.bos_id, self.gen_id, *self._words(prompt), self.boi_id]

    def encode_image_example(self, prompt: str, image: Any) -> tuple[list[int], list[int]]:
        """``(input_ids, loss_mask)`` of an image-generation example; the loss covers the codes and ``<eoi>``."""
        head = self.encode_image_prompt(prompt)
        tail = [*self._image_ids(image, f"image for prompt {prompt!r}"), self.eoi_id]
        return head + tail, [0] * len(head) + [1] * len(tail)

    def collate(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> dict[str, torch.Tensor]:
        return collate(examples, self.pad_id)

    def decode_text(self, ids: Sequence[int]) -> str:
        return decode(self.tokenizer, ids)

    # -- forwards ------------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def check_length(self, n: int, what: str) -> None:
        """Raise a :class:`BackendError` naming ``what`` when ``n`` positions exceed the model's context."""
        limit = self.model.config.max_position_embeddings
        if n > limit:
            raise BackendError(f"{what} needs {n} positions but the model has max_position_embeddings={limit}")

    _check_length = check_length  # the name seer.stages.common.check_contexts looks up

    @torch.no_grad()
    def _sample(
        self,
        prompts: list[list[int]],
        max_new: int,
        pick: Any,
        generators: list[torch.Generator],
        stop: bool,
        row_of: list[int] | None = None,
    ) -> tuple[list[list[int]], list[list[float]], list[bool]]:
        """KV-cache decoding of left-padded ``prompts``; ``pick(logits (B, V), generators) -> (tokens, logprobs)``.
        With ``row_of``, the prompts are prefilled once and row b continues prompt ``row_of[b]`` (the n samples of
        one context share its prefill). Returns per row the new tokens (up to and including ``<eos>`` when
        ``stop``), their log-probs, and whether the row hit ``max_new`` without ``<eos>``."""
        dev = self.device
        input_ids, attn, pos = self._left_pad(prompts)
        with self._autocast():
            out = self.net(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True,
                           logits_to_keep=1)
        cache, logits = getattr(out, _CACHE), out.logits[:, -1].float()
        if row_of is not None:
            index = torch.as_tensor(row_of, dtype=torch.long, device=dev)
            cache.reorder_cache(index)  # (P, ...) → (B, ...): index_select along the batch
            logits, attn, pos = logits[index], attn[index], pos[index]
        B = attn.shape[0]
        next_pos = pos[:, -1:] + 1  # (B, 1)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        tokens, logps = [], []
        for step in range(max_new):
            tok, lp = pick(logits, generators)  # (B,), (B,)
            tok = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            tokens.append(tok)
            logps.append(lp)
            if stop:
                done = done | (tok == self.eos_id)
            if step == max_new - 1 or bool(done.all()):
                break
            attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=dev)], 1)
            with self._autocast():
                out = self.net(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos,
                               use_cache=True, **{_CACHE: cache})
            cache, logits = getattr(out, _CACHE), out.logits[:, -1].float()
            next_pos = next_pos + 1
        T = torch.stack(tokens, 1).cpu()  # (B, steps)
        LP = torch.stack(logps, 1).cpu()
        rows, row_lps, truncated = [], [], []
        for b in range(B):
            ids = T[b].tolist()
            n = ids.index(self.eos_id) + 1 if stop and self.eos_id in ids else len(ids)
            rows.append(ids[:n])
            row_lps.append(LP[b, :n].tolist())
            truncated.append(not (stop and self.eos_id in ids[:n]))
        return rows, row_lps, truncated

    def generate_text(
        self, contexts: Sequence[Context], n: int, sampling: SamplingParams,
        seed: int | Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        if n < 1:
            raise BackendError(f"n must be >= 1, got {n}")
        if sampling.max_new_tokens < 1:
            raise BackendError(f"max_new_tokens must be >= 1, got {sampling.max_new_tokens}")
        if not sampling.greedy and sampling.temperature <= 0:
            raise BackendError(f"temperature must be > 0 when sampling (use greedy=True for argmax), got "
                               f"{sampling.temperature}")
        if sampling.top_k < 0 or not 0.0 < sampling.top_p <= 1.0:
            raise BackendError(f"top_k must be >= 0 (0 = off) and top_p in (0, 1] (1 = off), got top_k="
                               f"{sampling.top_k}, top_p={sampling.top_p}")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        seeds = per_context_seeds(seed, len(contexts))
        if seeds is None:
            row_seed = functools.partial(_row_seed, seed)  # row (i, j)
        else:

            def row_seed(i: int, j: int) -> int:  # as if context i were sampled alone with its own seed
                return _row_seed(seeds[i], 0, j)
        encoded = [self.encode_context(c, f"context {i}") for i, c in enumerate(contexts)]
        for i, ids in enumerate(encoded):
            self.check_length(len(ids) + sampling.max_new_tokens, f"context {i} plus max_new_tokens")
        rows = [(i, j) for i in range(len(encoded)) for j in range(n)]
        temperature = 1.0 if sampling.greedy else sampling.temperature
        bias = self._text_bias

        def pick(logits: torch.Tensor, gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
            z = logits[:, : self.num_text] / temperature + bias  # (B, V_text), masked ids at -inf
            logp_all = z.log_softmax(-1)
            if sampling.greedy:
                tok = z.argmax(-1)
            else:
                z = _filter_top_k_top_p(z, sampling.top_k, sampling.top_p)
                tok = (z + _gumbel(gens, z.shape[-1]).to(z.device)).argmax(-1)
            return tok, logp_all.gather(-1, tok[:, None]).squeeze(-1)

        out: list[list[Completion]] = [[] for _ in encoded]
        for s in range(0, len(rows), self.max_batch):
            chunk = rows[s : s + self.max_batch]
            gens = [torch.Generator().manual_seed(row_seed(i, j)) for i, j in chunk]
            unique = list(dict.fromkeys(i for i, _ in chunk))
            ids, lps, trunc = self._sample([encoded[i] for i in unique], sampling.max_new_tokens, pick, gens, True,
                                           row_of=[unique.index(i) for i, _ in chunk])
            for (i, _), t, lp, tr in zip(chunk, ids, lps, trunc, strict=True):
                out[i].append(Completion(token_ids=t, text=self.decode_text(t), logprobs=lp, truncated=tr))
        return out

    def generate_images(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[np.ndarray]:
        if len(prompts) != len(seeds):
            raise BackendError(f"generate_images: {len(prompts)} prompts but {len(seeds)} seeds")
        L = self.image_tokenizer.tokens_per_image
        encoded = [self.encode_image_prompt(p) for p in prompts]
        for i, ids in enumerate(encoded):
            self.check_length(len(ids) + L, f"image prompt {i} plus {L} image tokens")
        lo, K, temperature, cfg = self.image_start, self.num_image_codes, self.image_temperature, self.image_cfg_scale
        guided = cfg != 1.0
        unconditional = self.encode_image_prompt("")  # <bos> <gen> <boi>: the prompt-dropped image example

        def pick(logits: torch.Tensor, gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
            z = logits[:, lo : lo + K]  # (B, K) or (2B, K) with guidance: only image tokens can be drawn
            if guided:  # classifier-free guidance (as in Janus): rows [conditional; unconditional]
                cond, unc = z.chunk(2)
                z = unc + cfg * (cond - unc)
            if temperature == 0:
                code = z.argmax(-1)
            else:
                code = (z / temperature + _gumbel(gens, K).to(z.device)).argmax(-1)
            tok = code + lo
            tok = torch.cat([tok, tok]) if guided else tok  # the unconditional row follows the same image
            return tok, torch.zeros(tok.shape[0])

        images: list[np.ndarray] = []
        for s in range(0, len(encoded), self.max_batch):
            batch = encoded[s : s + self.max_batch]
            gens = [torch.Generator().manual_seed(_row_seed(0x1A6E, seed)) for seed in seeds[s : s + self.max_batch]]
            row_of = None
            if guided:  # the unconditional prompt is prefilled once for the whole chunk
                row_of = list(range(len(batch))) + [len(batch)] * len(batch)
                batch = [*batch, unconditional]
            ids, _, _ = self._sample(batch, L, pick, gens, False, row_of=row_of)
            codes = np.asarray(ids[: len(gens)], dtype=np.int64) - lo
            images.extend(self.image_tokenizer.decode(codes))
        return images

    def token_logprobs(
        self, contexts: Sequence[Context], completions: Sequence[Sequence[int]], *, reference: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(contexts) != len(completions):
            raise BackendError(f"token_logprobs: {len(contexts)} contexts but {len(completions)} completions")
        comps = [[int(t) for t in c] for c in completions]
        for b, comp in enumerate(comps):
            for t, tok in enumerate(comp):
                if not (0 <= tok < self.num_text) or not self._allowed_text[tok]:
                    raise BackendError(f"completion {b} token {t}: id {tok} is not a text token of the sampling "
                                       f"vocabulary (text ids < {self.num_text}, without pad/unk/bos/sep/gen/boi/eoi)")
        encoded = [self.encode_context(c, f"context {i}") for i, c in enumerate(contexts)]
        T = max((len(c) for c in comps), default=0)
        B = len(comps)
        mask = torch.zeros((B, T), device=self.device)
        for b, comp in enumerate(comps):
            mask[b, : len(comp)] = 1.0
        if T == 0:
            return torch.zeros((B, 0), device=self.device), mask
        chunks = []
        for s in range(0, B, self.max_batch):
            fn = self._score_reference if reference else self._score
            chunks.append(fn(encoded[s : s + self.max_batch], comps[s : s + self.max_batch], T))
        return torch.cat(chunks, 0) * mask, mask

    @torch.no_grad()
    def _score_reference(self, ctxs: list[list[int]], comps: list[list[int]], T: int) -> torch.Tensor:
        assert self._reference is not None
        return self._score(ctxs, comps, T, module=self._reference)

    def _score(
        self, ctxs: list[list[int]], comps: list[list[int]], T: int, module: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """(B, T) log-probs of ``comps`` after ``ctxs`` (right-padded, padding positions hold garbage)."""
        module = self._train_module if module is None else module
        for i, (c, x) in enumerate(zip(ctxs, comps, strict=True)):
            self.check_length(len(c) + len(x), f"context {i} plus its completion")
        # a GRPO group scores G completions of one context: run that context once. Only on the bare model: a DDP
        # wrapper expects a single forward per backward
        repeated = len({tuple(c) for c in ctxs}) < len(ctxs)
        if self.share_prefix and repeated and isinstance(module, (LlamaForCausalLM, UMMNet)):
            return self._score_shared(ctxs, comps, T, module)
        return self._score_flat(ctxs, comps, T, module)

    def _restricted_logprobs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits, (B, T) targets → (B, T) log-probs over the text sampling vocabulary."""
        z = logits[..., : self.num_text].float() + self._text_bias
        return z.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-pad token lists: (ids, attention mask, position ids), each (P, L); positions count real tokens only,
        so a padded row continues exactly as an unpadded one would."""
        P, L = len(seqs), max(len(q) for q in seqs)
        ids = torch.full((P, L), self.pad_id, dtype=torch.long, device=self.device)
        attn = torch.zeros((P, L), dtype=torch.long, device=self.device)
        for b, q in enumerate(seqs):
            ids[b, L - len(q) :] = torch.as_tensor(q, dtype=torch.long)
            attn[b, L - len(q) :] = 1
        return ids, attn, (attn.cumsum(1) - 1).clamp(min=0)

    def _targets(self, comps: list[list[int]], T: int) -> torch.Tensor:
        targets = torch.full((len(comps), T), self.eos_id, dtype=torch.long, device=self.device)
        for b, comp in enumerate(comps):
            targets[b, : len(comp)] = torch.as_tensor(comp, dtype=torch.long)
        return targets

    def _score_shared(
        self, ctxs: list[list[int]], comps: list[list[int]], T: int, module: torch.nn.Module
    ) -> torch.Tensor:
        """Prefill each distinct context once (left-padded, so its last logit predicts completion token 0), expand
        the KV cache to the rows (index_select keeps the graph: the context's gradient sums over its rows), then run
        the right-padded completions on top."""
        dev = self.device
        slot: dict[tuple[int, ...], int] = {}
        row_of = [slot.setdefault(tuple(c), len(slot)) for c in ctxs]
        unique = list(slot)
        ctx_ids, ctx_attn, ctx_pos = self._left_pad(unique)
        index = torch.as_tensor(row_of, dtype=torch.long, device=dev)
        targets = self._targets(comps, T)
        with self._autocast():
            out = module(input_ids=ctx_ids, attention_mask=ctx_attn, position_ids=ctx_pos, use_cache=True,
                         logits_to_keep=1)
            logits = out.logits[index]  # (B, 1, V): predicts completion token 0
            if T > 1:
                cache = getattr(out, _CACHE)
                cache.reorder_cache(index)  # (P, ...) → (B, ...)
                attn = torch.cat([ctx_attn[index], torch.ones((len(ctxs), T - 1), dtype=torch.long, device=dev)], 1)
                pos = ctx_pos[index, -1:] + 1 + torch.arange(T - 1, device=dev)  # (B, T-1)
                rest = module(input_ids=targets[:, : T - 1], attention_mask=attn, position_ids=pos,
                              use_cache=True, **{_CACHE: cache}).logits  # (B, T-1, V)
                logits = torch.cat([logits, rest], 1)
        return self._restricted_logprobs(logits, targets)

    def _score_flat(
        self, ctxs: list[list[int]], comps: list[list[int]], T: int, module: torch.nn.Module
    ) -> torch.Tensor:
        """One right-padded forward over ``context + completion`` per row."""
        seqs = [c + x for c, x in zip(ctxs, comps, strict=True)]
        B, S = len(seqs), max(len(s) for s in seqs)
        dev = self.device
        input_ids = torch.full((B, S), self.pad_id, dtype=torch.long, device=dev)
        attn = torch.zeros((B, S), dtype=torch.long, device=dev)
        for b, s in enumerate(seqs):
            input_ids[b, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            attn[b, : len(s)] = 1
        # logits at position ctx_len - 1 + t predict completion token t; keep only the tail that holds them
        first = min(len(c) for c in ctxs) - 1
        keep = S - first
        with self._autocast():
            logits = module(input_ids=input_ids, attention_mask=attn, logits_to_keep=keep).logits  # (B, keep, V)
        idx = torch.tensor([[len(c) - 1 + t - first for t in range(T)] for c in ctxs], device=dev).clamp(max=keep - 1)
        logits = logits.gather(1, idx[..., None].expand(-1, -1, logits.shape[-1]))  # (B, T, V)
        return self._restricted_logprobs(logits, self._targets(comps, T))

    # -- θ / ϕ ---------------------------------------------------------------------------------------------------
    def _zero_phi_grad(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[self._phi_rows] = 0
        return grad

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def frozen_state(self) -> dict[str, torch.Tensor]:
        rows = f"[{self.image_start}:{self.image_start + self.num_image_codes}]"
        state = {f"{k}{rows}": p[self._phi_rows].detach().clone() for k, p in self._phi_params.items()}
        state["image_tokenizer.centroids"] = torch.from_numpy(self.image_tokenizer.centroids.copy())
        if self.vision is not None:
            state.update({f"vision.encoder.{k}": v.detach().clone()
                          for k, v in self.vision.encoder.state_dict().items()})
        return state

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        for k, p in self._phi_params.items():
            p[self._phi_rows] = self._phi_saved[k]

    def set_reference(self) -> None:
        ref = copy.deepcopy(self.net)
        ref.requires_grad_(False)
        ref.eval()
        self._reference = ref

    def train_module(self) -> torch.nn.Module:
        return self.net

    def use_train_module(self, module: torch.nn.Module) -> None:
        """Use ``module`` (e.g. a DDP wrapper of :meth:`train_module`) for differentiable forwards; generation
        keeps using the unwrapped model, which shares its parameters."""
        self._train_module = module

    def model_summary(self) -> dict[str, Any]:
        cfg = self.model.config
        total = sum(p.numel() for p in self.model.parameters())
        phi_rows = sum(p[self._phi_rows].numel() for p in self._phi_params.values())
        return {
            "kind": KIND,
            "theta_params": total - phi_rows,
            "phi_params": phi_rows + int(self.image_tokenizer.centroids.size),
            "phi_model_rows": phi_rows,
            "phi_image_tokenizer": int(self.image_tokenizer.centroids.size),
            "total_model_params": total,
            "vocab_size": cfg.vocab_size,
            "text_tokens": self.num_text,
            "image_codes": self.num_image_codes,
            "tokens_per_image": self.image_tokenizer.tokens_per_image,
            "image_size": list(self.image_tokenizer.image_size),
            "hidden": cfg.hidden_size,
            "layers": cfg.num_hidden_layers,
            "heads": cfg.num_attention_heads,
            "intermediate": cfg.intermediate_size,
            "max_position": cfg.max_position_embeddings,
            "dtype": self.dtype,
            **({} if self.vision is None else {
                "vision_encoder_params (phi)": sum(p.numel() for p in self.vision.encoder.parameters()),
                "aligner_params (theta)": sum(p.numel() for p in self.vision.aligner.parameters())}),
        }


def _load_vision(path: Path, meta: dict, codebook: PatchCodebook, hidden: int) -> VisionInput:
    """The decoupled vision input of a saved backend (``backend.json`` names it under ``vision``)."""
    from safetensors.torch import load_file

    from seer.world.vision import Aligner, VisionEncoder

    spec = meta["vision"]
    if not isinstance(spec, dict) or spec.get("encoder") != "seer.world.vision":
        raise BackendError(f"{path / 'backend.json'}: vision is {spec!r}; the only known encoder is "
                           f"{{'encoder': 'seer.world.vision', 'aligner': {_ALIGNER_FILE!r}}}")
    encoder = VisionEncoder.load(path)
    cells, values = encoder.pos.shape[0], encoder.stem[0].in_features
    if cells != codebook.tokens_per_image or codebook.patch * codebook.patch * 3 != values:
        raise BackendError(f"{path}: the vision encoder reads {encoder.pos.shape[0]} cells of "
                           f"{encoder.stem[0].in_features} values but the codebook makes {codebook.tokens_per_image} "
                           f"tokens of {codebook.patch}x{codebook.patch} patches")
    aligner = Aligner(encoder.cfg.dim, hidden)
    f = path / _ALIGNER_FILE
    if not f.is_file():
        raise BackendError(f"{f}: missing; backend.json names a vision input, which needs its aligner")
    try:
        aligner.load_state_dict(load_file(str(f)))
    except (RuntimeError, OSError) as e:
        raise BackendError(f"{f}: does not fit a {encoder.cfg.dim} -> {hidden} aligner ({e})") from e
    return VisionInput(encoder, aligner, codebook.centroids, codebook._perm)


# words of a tiny world, so the tiny backend can tokenise everyday test prompts without <unk>
_TINY_WORDS = (
    "a an the of in on with and or it is to as from made make turn into out entirely carved "
    "cat dog bird fish house tree car cup ball apple flower boat "
    "red green blue yellow black white orange purple small big "
    "ice wood glass stone metal paper gold fire water "
    "above below top side view front back left right close far "
    "0 1 2 3 4 5 6 7 8 9 , . ? ! : ; ' ( ) -"
).split()


def tiny_words() -> list[str]:
    """The tiny backend's vocabulary: every word of the default templates, the verdicts A/B, and ``_TINY_WORDS``."""
    texts = [DEFAULT_TEMPLATES.system, DEFAULT_TEMPLATES.evaluator, DEFAULT_TEMPLATES.reprompt]
    texts = [t.replace("{instruction}", " ").replace("{prompt}", " ") for t in texts]
    return collect_words([*texts, "A B", NO_INSTRUCTION, " ".join(_TINY_WORDS)])


def tiny_random_backend(seed: int = 0, vision: bool = False, **options: Any) -> TokenUMMBackend:
    """A random, very small token UMM for fast tests: hidden 32, 2 layers, 16×16 images in 4×4 patches (16 tokens
    per image), 32 image codes; ``vision=True`` adds a random decoupled vision input (encoder width 16, 1 layer)."""
    codebook = PatchCodebook.random(32, (16, 16), 4, seed=seed)
    if vision:
        from seer.world.vision import Aligner, EncoderConfig, VisionEncoder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = VisionEncoder(EncoderConfig(dim=16, layers=1, heads=2, cells=codebook.tokens_per_image))
            options["vision"] = VisionInput(encoder, Aligner(16, 32), codebook.centroids, codebook._perm)
    return TokenUMMBackend.create(tiny_words(), codebook, hidden=32, layers=2, heads=2, intermediate=64,
                                  max_position=512, seed=seed, **options)
