"""One-time numerical check of seer's Harmon image modules against the MIT-licensed MAR reference (LTH14/mar).

On tiny configurations with shared weights (the reference's random weights copied into seer's modules through
seer's key map), compare: the MAR encoder forward (with masking and the buffer slots), the MAR decoder forward, a
full guided sampling loop of the diffusion head (noise fed identically to both), and the KL VAE's encoder mean and
decoder. Prints one JSON object with the largest absolute differences and ``"pass"`` (all below ``--tol``).

    PYTHONPATH=. python bench/check_harmon_vs_mar.py --mar-dir /path/to/LTH14/mar [--extra-path DIR ...]

The reference is imported from the given checkout at run time and never copied into seer. It needs ``timm`` (its
ViT block) and ``scipy``; ``--extra-path`` adds folders to ``sys.path`` for them. Without ``--mar-dir`` (or when the
reference cannot be imported) the check prints ``{"skipped": reason}`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seer.backends.harmon_model import official_to_seer
from seer.backends.harmon_modules import (
    KLVAE,
    MAR,
    CosineDiffusion,
    DiffusionHead,
    MARConfig,
    VAEConfig,
    sample_latents,
)

CFG = MARConfig(img_size=16, vae_stride=4, patch_size=1, vae_embed_dim=4, encoder_embed_dim=32, encoder_depth=2,
                encoder_num_heads=4, decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0,
                buffer_size=4, diffloss_d=2, diffloss_w=32, num_sampling_steps=10, class_num=10)


def _import_reference(mar_dir: Path, extra: list[str]) -> tuple[Any, Any, Any] | str:
    for p in [str(mar_dir), *extra]:
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        from models import mar as ref_mar
        from models import vae as ref_vae
        from models.diffloss import DiffLoss  # noqa: F401  (imported by models.mar)
    except ImportError as e:
        return f"cannot import the MAR reference from {mar_dir}: {e}"
    import diffusion.gaussian_diffusion as ref_gd

    return ref_mar, ref_vae, ref_gd


def _randomize(module: nn.Module, seed: int) -> None:
    """MAR zero-initialises its adaLN gates and output layer; random weights make every path count."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mar = MAR(CFG)
        self.diffusion_head = DiffusionHead(CFG.token_dim, CFG.decoder_embed_dim, CFG.diffloss_w, CFG.diffloss_d)


def check(mar_dir: Path, extra: list[str], tol: float) -> dict[str, Any]:
    ref = _import_reference(mar_dir, extra)
    if isinstance(ref, str):
        return {"skipped": ref}
    ref_mar, ref_vae, ref_gd = ref
    torch.manual_seed(0)
    r = ref_mar.MAR(img_size=CFG.img_size, vae_stride=CFG.vae_stride, patch_size=CFG.patch_size,
                    encoder_embed_dim=CFG.encoder_embed_dim, encoder_depth=CFG.encoder_depth,
                    encoder_num_heads=CFG.encoder_num_heads, decoder_embed_dim=CFG.decoder_embed_dim,
                    decoder_depth=CFG.decoder_depth, decoder_num_heads=CFG.decoder_num_heads, mlp_ratio=CFG.mlp_ratio,
                    norm_layer=partial(nn.LayerNorm, eps=1e-6), vae_embed_dim=CFG.vae_embed_dim,
                    buffer_size=CFG.buffer_size, diffloss_d=CFG.diffloss_d, diffloss_w=CFG.diffloss_w,
                    num_sampling_steps=str(CFG.num_sampling_steps), class_num=CFG.class_num).eval()
    _randomize(r, 1)
    # the reference's names under Harmon's "mar." prefix, through seer's key map
    state, dropped = official_to_seer({f"mar.{k}": v for k, v in r.state_dict().items()}, {})
    ours = _Pair().eval()
    ours.load_state_dict(state, strict=True)

    b, n = 3, CFG.seq_side ** 2
    g = torch.Generator().manual_seed(2)
    x = torch.randn(b, n, CFG.token_dim, generator=g)
    order = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    mask = torch.zeros(b, n).scatter_(1, order[:, :10], 1.0)  # 10 of 16 masked in every row
    out: dict[str, Any] = {"dropped_by_key_map": dropped}
    with torch.no_grad():
        ref_enc = r.forward_mae_encoder(x, mask, r.fake_latent.expand(b, -1))
        our_enc = ours.mar.encode(x, mask, (CFG.seq_side, CFG.seq_side))
        out["mar_encoder_max_abs_diff"] = float((ref_enc - our_enc).abs().max())
        ref_dec = r.forward_mae_decoder(ref_enc, mask)
        our_dec = ours.mar.decode(ref_enc, mask, (CFG.seq_side, CFG.seq_side))
        out["mar_decoder_max_abs_diff"] = float((ref_dec - our_dec).abs().max())

        # a full guided diffusion-head sampling loop for the 10 masked tokens of each row, noise shared
        sel = mask.bool()
        zc, zu = ref_dec[sel], ref_dec.flip(0)[sel]  # (30, E_dec) each: "conditional" and "unconditional" rows
        cfg, temp = 2.5, 0.9
        schedule = CosineDiffusion(CFG.num_sampling_steps)
        seeds = [10, 11, 12]
        ours_lat = sample_latents(ours.diffusion_head, schedule, zc, zu, cfg, temp, [10, 10, 10],
                                  [torch.Generator().manual_seed(s) for s in seeds])
        # the same noise sequence seer draws: x_T, then one draw per step except the last
        gens = [torch.Generator().manual_seed(s) for s in seeds]

        def draw() -> torch.Tensor:
            return torch.cat([torch.randn(10, CFG.token_dim, generator=gg) for gg in gens])

        x_t = draw()
        noises = [draw() for _ in range(len(schedule) - 1)] + [torch.zeros_like(x_t)]
        diff = r.diffloss.gen_diffusion
        real_randn_like = ref_gd.th.randn_like
        feed = iter(noises)
        ref_gd.th.randn_like = lambda t: torch.cat([next(feed), torch.zeros_like(x_t)])[: t.shape[0]]
        try:
            img = torch.cat([x_t, x_t])  # the reference carries [cond, uncond] halves; the first half is the sample
            for i in reversed(range(diff.num_timesteps)):
                t = torch.full((img.shape[0],), i, dtype=torch.long)
                img = diff.p_sample(r.diffloss.net.forward_with_cfg, img, t, clip_denoised=False,
                                    model_kwargs={"c": torch.cat([zc, zu]), "cfg_scale": cfg},
                                    temperature=temp)["sample"]
        finally:
            ref_gd.th.randn_like = real_randn_like
        out["diffusion_sampling_max_abs_diff"] = float((img[: len(x_t)] - ours_lat).abs().max())
        out["diffusion_respaced_timesteps_equal"] = sorted(diff.timestep_map) == schedule.timesteps.tolist()

        # the KL VAE (MAR's models/vae.py), a small channel multiplier on 16x16 images
        rv = ref_vae.AutoencoderKL(embed_dim=4, ch_mult=(1, 1, 2), use_variational=True).eval()
        _randomize(rv, 3)
        vstate, _ = official_to_seer({}, rv.state_dict())
        ov = KLVAE(VAEConfig(embed_dim=4, ch=128, ch_mult=(1, 1, 2), num_res_blocks=2, resolution=256,
                             attn_resolutions=(16,))).eval()
        ov.load_state_dict({k.removeprefix("vae."): v for k, v in vstate.items()}, strict=True)
        px = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
        ref_mean = rv.encode(px).mean
        out["vae_encoder_max_abs_diff"] = float((ref_mean - ov.encode_mean(px)).abs().max())
        z = torch.randn(2, 4, 4, 4, generator=g)
        out["vae_decoder_max_abs_diff"] = float((rv.decode(z) - ov.decode(z)).abs().max())
    diffs = [v for k, v in out.items() if k.endswith("max_abs_diff")]
    out["tol"] = tol
    out["pass"] = all(d <= tol for d in diffs) and out["diffusion_respaced_timesteps_equal"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mar-dir", help="a local checkout of https://github.com/LTH14/mar")
    p.add_argument("--extra-path", action="append", default=[], help="folder added to sys.path (timm, scipy)")
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args(argv)
    if not args.mar_dir or not Path(args.mar_dir, "models", "mar.py").is_file():
        print(json.dumps({"skipped": f"no MAR checkout at {args.mar_dir!r} (pass --mar-dir)"}))
        return 0
    result = check(Path(args.mar_dir), args.extra_path, args.tol)
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0 if result.get("pass", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
