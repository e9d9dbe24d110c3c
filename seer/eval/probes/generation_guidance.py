"""A world base's image generation at several classifier-free guidance scales; prints JSON.

    seer world probe generation_guidance [--base DIR] [--data DIR] [--scales 1,2] [--n 192] [--seed 0]

Per scale: generation accuracy per attribute on ``--n`` fresh concrete captions (as ``seer world report``'s
``generation``), and how often the image of each test sample's correct concrete rewrite satisfies its instruction
with the subject kept (``reference_rewrite``, the generator's ceiling; ``--data`` is ``seer world build-data``
output, default the shipped data). Guidance above 1 needs a base pretrained with ``--uncond`` > 0 to mean anything.
About 1 min per scale at ``--n 192`` on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def measure(base: str | None, data: str | None, scales: list[float], n: int, seed: int) -> dict:
    from seer.data import load_samples
    from seer.world import ASSETS_BASE, load_base
    from seer.world.report import _gen, _satisfy_rates, generation_accuracy

    backend, oracle, _ = load_base(base)
    data_dir = Path(data) if data else ASSETS_BASE.parent / "data"
    test = load_samples(data_dir / "samples_test.jsonl")
    res: dict = {"base": base or "shipped", "data": str(data_dir), "n_captions": n, "n_test": len(test)}
    for scale in scales:
        backend.image_cfg_scale = scale
        imgs = _gen(backend, [s.reference_reprompt for s in test], [seed + i for i in range(len(test))])
        res[f"scale_{scale:g}"] = {"generation": generation_accuracy(backend, oracle, n, seed),
                                   "reference_rewrite": _satisfy_rates(oracle, test, imgs)}
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="seer world probe generation_guidance", description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=None, help="a base directory (default: the shipped base)")
    ap.add_argument("--data", default=None, help="world data directory (default: the shipped data)")
    ap.add_argument("--scales", default="1,2", help="comma-separated guidance scales (>= 1)")
    ap.add_argument("--n", type=int, default=192, help="fresh concrete captions per scale")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",")]
    print(json.dumps(measure(args.base, args.data, scales, args.n, args.seed), indent=2))


if __name__ == "__main__":
    main()
