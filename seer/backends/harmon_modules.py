"""seer's own modules for Harmon's image side: the MAR encoder/decoder, the diffusion MLP head with its sampler, and
the KL-16 VAE. Written for seer from the architecture's description (MAR, Li et al. 2024; Harmon, Wu et al. 2025;
LDM's KL autoencoder); no code of the reference implementations is used. Attribute names follow the official
checkpoints' parameter names so that :mod:`seer.backends.harmon_keys` maps them one to one.

Shapes: B images, L = h·w latent positions, C = VAE latent channels (16), E = MAR width, D = diffusion head width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class MARConfig:
    img_size: int = 256  # the image size the learned position tables were trained for (other sizes interpolate)
    vae_stride: int = 16
    patch_size: int = 1  # latent pixels per MAR token side (Harmon: 1)
    vae_embed_dim: int = 16
    encoder_embed_dim: int = 1280
    encoder_depth: int = 20
    encoder_num_heads: int = 16
    decoder_embed_dim: int = 1280
    decoder_depth: int = 20
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    buffer_size: int = 64
    diffloss_d: int = 12
    diffloss_w: int = 1536
    num_sampling_steps: int = 100
    class_num: int = 1000  # only the name: Harmon's checkpoint carries MAR's unused class table (dropped on load)

    @property
    def seq_side(self) -> int:
        return self.img_size // self.vae_stride // self.patch_size

    @property
    def token_dim(self) -> int:
        return self.vae_embed_dim * self.patch_size ** 2


@dataclass(frozen=True)
class VAEConfig:
    embed_dim: int = 16
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    resolution: int = 256  # decides where the encoder's attention blocks sit (attn_resolutions), as in LDM
    attn_resolutions: tuple[int, ...] = (16,)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


# ---------------------------------------------------------------------------------------------------- ViT block
class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, E) -> (B, N, E), full (bidirectional) attention
        b, n, e = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, e))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, GELU MLP); dropout is left out: seer never trains ϕ."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _resize_table(table: torch.Tensor, side: int, h: int, w: int) -> torch.Tensor:
    """A (1, side·side, E) position table bilinearly resized to (1, h·w, E), for images of another size."""
    if (h, w) == (side, side):
        return table
    grid = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, E, side, side)
    grid = F.interpolate(grid, size=(h, w), mode="bilinear")
    return grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)


# ---------------------------------------------------------------------------------------------------- MAR
class MAR(nn.Module):
    """The MAR encoder and decoder (no class table, no diffusion head: those live elsewhere in seer).

    Encoder input: latents (B, L, C) and a mask (B, L), 1 = masked (dropped); ``buffer_size`` learned-position
    slots filled with ``fake_latent`` come first. Output (B, buffer + unmasked, E). The decoder puts mask tokens back
    at the masked positions and returns the diffusion head's conditions (B, L, E_dec).
    """

    def __init__(self, cfg: MARConfig):
        super().__init__()
        self.cfg = cfg
        e, d, side = cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.seq_side
        self.fake_latent = nn.Parameter(torch.zeros(1, e))  # the buffer slots' content (Harmon: no class label)
        self.z_proj = nn.Linear(cfg.token_dim, e)
        self.z_proj_ln = nn.LayerNorm(e, eps=1e-6)
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, side * side + cfg.buffer_size, e))
        self.encoder_blocks = nn.ModuleList(
            ViTBlock(e, cfg.encoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.encoder_depth))
        self.encoder_norm = nn.LayerNorm(e, eps=1e-6)
        self.decoder_embed = nn.Linear(e, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, side * side + cfg.buffer_size, d))
        self.decoder_blocks = nn.ModuleList(
            ViTBlock(d, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, side * side, d))

    def _pos(self, table: torch.Tensor, h: int, w: int, with_buffer: bool = True) -> torch.Tensor:
        nb = self.cfg.buffer_size if with_buffer else 0
        return torch.cat([table[:, :nb], _resize_table(table[:, nb:], self.cfg.seq_side, h, w)], dim=1)

    def encode(self, x: torch.Tensor, mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """x (B, L, C) latents, mask (B, L) with the same count of ones per row -> (B, buffer + kept, E)."""
        b, n_pos, _ = x.shape
        nb = self.cfg.buffer_size
        x = self.z_proj(x.to(self.z_proj.weight.dtype))  # (B, L, E)
        buf = self.fake_latent.to(x.dtype)[:, None].expand(b, nb, -1)  # (B, nb, E)
        x = torch.cat([buf, x], dim=1) + self._pos(self.encoder_pos_embed_learned, *hw).to(x.dtype)
        x = self.z_proj_ln(x)
        keep = torch.cat([mask.new_zeros(b, nb), mask], dim=1) == 0  # (B, nb + L)
        x = x[keep].reshape(b, -1, x.shape[-1])  # masked positions are dropped, not zeroed
        for block in self.encoder_blocks:
            x = block(x)
        return self.encoder_norm(x)

    def decode(self, x: torch.Tensor, mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """x (B, buffer + kept, E) -> (B, L, E_dec): the diffusion head's condition at every position."""
        b, n_pos = mask.shape
        nb = self.cfg.buffer_size
        x = self.decoder_embed(x)
        keep = torch.cat([mask.new_zeros(b, nb), mask], dim=1) == 0
        full = self.mask_token.to(x.dtype).expand(b, nb + n_pos, -1).clone()
        full[keep] = x.reshape(-1, x.shape[-1])
        x = full + self._pos(self.decoder_pos_embed_learned, *hw).to(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)[:, nb:]
        return x + self._pos(self.diffusion_pos_embed_learned, *hw, with_buffer=False).to(x.dtype)


# ---------------------------------------------------------------------------------------------------- diffusion head
class _TimeEmbed(nn.Module):
    def __init__(self, width: int, freq: int = 256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (N,) timesteps -> (N, D): sinusoidal features, then MLP
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        ang = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1).to(self.mlp[0].weight.dtype))


class _AdaLNBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.in_ln(x) * (1 + scale) + shift)


class _FinalLayer(nn.Module):
    def __init__(self, width: int, out: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """The MLP denoiser: (x_t (N, C), t (N,), condition (N, E_dec)) -> (N, 2C) = predicted noise and the learned
    variance interpolation value in [-1, 1] (per channel)."""

    def __init__(self, channels: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        self.channels = channels
        self.time_embed = _TimeEmbed(width)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.input_proj = nn.Linear(channels, width)
        self.res_blocks = nn.ModuleList(_AdaLNBlock(width) for _ in range(depth))
        self.final_layer = _FinalLayer(width, 2 * channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        w = self.input_proj.weight.dtype
        h = self.input_proj(x.to(w))
        y = self.time_embed(t) + self.cond_embed(c.to(w))
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)


class CosineDiffusion:
    """DDPM ancestral sampling on the cosine noise schedule (Nichol & Dhariwal 2021), 1000 training steps evenly
    respaced to ``steps`` sampling steps, ε-prediction with a learned variance interpolated between the posterior
    variance and β (the "learned range" parameterisation). All schedule arithmetic is float64 numpy, as in the
    schedule's definition; each step's tensors are float32."""

    def __init__(self, steps: int, train_steps: int = 1000):
        if not 1 <= steps <= train_steps:
            raise ValueError(f"diffusion sampling steps must be in 1..{train_steps}, got {steps}")

        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1 - alpha_bar((i + 1) / train_steps) / alpha_bar(i / train_steps), 0.999)
                          for i in range(train_steps)], dtype=np.float64)
        cum = np.cumprod(1.0 - betas)
        stride = (train_steps - 1) / (steps - 1) if steps > 1 else 1
        kept = sorted({round(k * stride) for k in range(steps)})  # evenly spaced, first and last included
        self.timesteps = np.array(kept)  # original step index of each sampling step, ascending
        kept_cum = cum[kept]
        self.betas = 1.0 - kept_cum / np.append(1.0, kept_cum[:-1])
        self.cum = kept_cum
        self.cum_prev = np.append(1.0, kept_cum[:-1])
        post_var = self.betas * (1.0 - self.cum_prev) / (1.0 - self.cum)
        # the posterior variance is 0 at the first step; its log is clipped to the second step's value
        self.post_log_var = np.log(np.append(post_var[1], post_var[1:])) if len(post_var) > 1 else np.log(
            np.maximum(post_var, 1e-20))
        self.coef_x0 = self.betas * np.sqrt(self.cum_prev) / (1.0 - self.cum)
        self.coef_xt = (1.0 - self.cum_prev) * np.sqrt(1.0 - self.betas) / (1.0 - self.cum)

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, i: int, x: torch.Tensor, eps: torch.Tensor, var_value: torch.Tensor, noise: torch.Tensor | None,
             temperature: float) -> torch.Tensor:
        """x_{i-1} from x_i (N, C), given the predicted noise and variance value (N, C) at sampling step ``i``;
        ``noise`` (N, C) is unused at i = 0 (no noise on the last step), scaled by ``temperature`` otherwise."""
        x0 = math.sqrt(1.0 / self.cum[i]) * x - math.sqrt(1.0 / self.cum[i] - 1.0) * eps
        mean = self.coef_x0[i] * x0 + self.coef_xt[i] * x
        if i == 0 or noise is None:
            return mean
        frac = (var_value + 1) / 2
        log_var = frac * math.log(self.betas[i]) + (1 - frac) * self.post_log_var[i]
        return mean + torch.exp(0.5 * log_var) * noise * temperature


def sample_latents(head: DiffusionHead, schedule: CosineDiffusion, cond: torch.Tensor, uncond: torch.Tensor | None,
                   cfg: float, temperature: float, counts: Sequence[int],
                   generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Sample one latent per condition row. ``cond`` (N, E_dec) rows are grouped by image: image j owns ``counts[j]``
    consecutive rows and draws all its noise from ``generators[j]`` (on the CPU, so a device never changes a
    sample), so an image's latents depend on its own rows only. With ``uncond`` (N, E_dec) and ``cfg`` != 1 the
    predicted noise is guided: ε_u + cfg·(ε_c − ε_u); the variance is the conditional row's. Returns (N, C)."""
    c = head.channels
    dev = cond.device

    def noise() -> torch.Tensor:
        parts = [torch.randn(k, c, generator=g) for k, g in zip(counts, generators, strict=True)]
        return torch.cat(parts).to(dev)

    x = noise()  # x_T, unscaled by temperature
    guided = uncond is not None and cfg != 1.0
    cond_in = torch.cat([cond, uncond]) if guided else cond
    for i in reversed(range(len(schedule))):
        t = torch.full((cond_in.shape[0],), int(schedule.timesteps[i]), device=dev, dtype=torch.long)
        out = head(torch.cat([x, x]) if guided else x, t, cond_in).float()  # (N or 2N, 2C)
        eps, var_value = out[: len(x), :c], out[: len(x), c:]
        if guided:
            eps = out[len(x):, :c] + cfg * (eps - out[len(x):, :c])
        x = schedule.step(i, x, eps, var_value, noise() if i > 0 else None, temperature)
    return x


# ---------------------------------------------------------------------------------------------------- KL VAE
def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class _AttnBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm = _norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # single-head attention over the h·w pixels
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, hw, c)
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


class _Down(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right/bottom only, then stride 2


class _Up(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = _ResBlock(ch, ch), _AttnBlock(ch), _ResBlock(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        mult_in = (1, *cfg.ch_mult)
        res, cin = cfg.resolution, cfg.ch
        self.down = nn.ModuleList()
        for i, m in enumerate(cfg.ch_mult):
            level, cin, cout = _Level(), cfg.ch * mult_in[i], cfg.ch * m
            for _ in range(cfg.num_res_blocks):
                level.block.append(_ResBlock(cin, cout))
                cin = cout
                if res in cfg.attn_resolutions:
                    level.attn.append(_AttnBlock(cin))
            if i != len(cfg.ch_mult) - 1:
                level.downsample = _Down(cin)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(cin)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, 2 * cfg.embed_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 2·embed, H/stride, W/stride)
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class _Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.embed_dim, cin, 3, padding=1)
        self.mid = _Mid(cin)
        levels: list[_Level] = []
        for i in reversed(range(len(cfg.ch_mult))):  # built coarse to fine, stored fine to coarse (as LDM)
            level, cout = _Level(), cfg.ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(_ResBlock(cin, cout))
                cin = cout
            if i != 0:
                level.upsample = _Up(cin)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, embed, h, w) -> (B, 3, h·stride, w·stride)
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class KLVAE(nn.Module):
    """LDM's KL autoencoder (MAR's KL-16): pixels in [-1, 1] <-> latents of ``embed_dim`` channels."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = _Encoder(cfg)
        self.decoder = _Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.embed_dim, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.embed_dim, 1)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the posterior mean (B, embed, H/stride, W/stride)."""
        return self.quant_conv(self.encoder(x)).chunk(2, dim=1)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))
