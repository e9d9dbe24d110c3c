"""``seer world pretrain | build-data | show | report | probe``."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields


def _field_help(cls) -> dict[str, str]:
    """The ``# comment`` after each field of a config dataclass: its help text."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m[1]] = m[2]
    return out


def _add_dataclass_args(p: argparse.ArgumentParser, cls, skip=()) -> None:
    helps = _field_help(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helps.get(f.name))
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            p.add_argument(flag, type=typ, default=f.default, help=helps.get(f.name))


def _pretrain(args) -> int:
    from seer.world.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(PretrainConfig)})
    meta = pretrain(cfg)
    print(json.dumps({k: meta[k] for k in ("steps_done", "times", "final_loss_by_kind", "params")}, indent=2))
    return 0


def _oracle(args) -> int:
    from seer.world.pretrain import train_oracle_into

    print(json.dumps(train_oracle_into(args.out, seed=args.seed, steps=args.steps), indent=2))
    return 0


def _threads(n: int) -> None:
    from seer.run import set_threads

    set_threads(n)


def _build_data(args) -> int:
    from seer.world.build_data import BuildConfig, build_data

    _threads(args.threads)
    cfg = BuildConfig(**{f.name: getattr(args, f.name) for f in fields(BuildConfig)})
    if args.shortcut_set_only:
        from seer.world.build_data import add_shortcut_set

        print(json.dumps(add_shortcut_set(cfg), indent=2))
        return 0
    print(json.dumps(build_data(cfg), indent=2))
    return 0


def _show(args) -> int:
    from seer.world.show import show

    _threads(args.threads)
    show(args.out, base=args.base, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


def _report(args) -> int:
    from seer.world.report import report

    _threads(args.threads)
    res = report(base=args.base, data=args.data, seed=args.seed, quick=args.quick)
    text = json.dumps(res, indent=2)
    if args.out:
        from seer.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)
    print(gate_table(res["gates"]))
    return 0


def gate_table(gates: list[dict]) -> str:
    """The report's gates as a Markdown table (what `seer world report` prints last, and the README quotes)."""
    mark = {True: "met", False: "missed", None: "not measured"}
    rows = ["| gate | measured | threshold | |", "|---|---|---|---|"]
    rows += [f"| {g['name']} | {g['value']} | {g['threshold']} | {mark[g['met']]}"
             f"{' (' + g['note'] + ')' if g.get('note') and g['met'] is None else ''} |" for g in gates]
    met = sum(g["met"] is True for g in gates)
    return "\n".join(rows) + f"\n\n{met} of {len(gates)} gates met"


def _probe(args) -> int:
    from seer.eval.probes import run

    return run(args.name, args.args)


def register(subparsers) -> None:
    from seer.world.build_data import BuildConfig
    from seer.world.pretrain import PretrainConfig

    world = subparsers.add_parser("world", help="the CPU world testbed: pretrain the base, build data, show, report")
    sub = world.add_subparsers(dest="world_command", metavar="WORLD_COMMAND")

    p = sub.add_parser("pretrain", help="fit the codebook, train the oracle and pretrain the tiny UMM")
    _add_dataclass_args(p, PretrainConfig)
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("oracle", help="train only the oracle judge into a base directory (codebook fitted if missing)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.set_defaults(func=_oracle)

    from seer.eval.probes import PROBES

    p = sub.add_parser("probe", help="run one of seer's research probes of the world (prints JSON): "
                       + ", ".join(PROBES), add_help=True)
    p.add_argument("name", choices=PROBES, help="the probe")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the probe's own arguments (NAME --help lists them)")
    p.set_defaults(func=_probe)

    p = sub.add_parser("build-data", help="write Visual Instruction Elaboration data (samples, quadruplets, PNGs)")
    _add_dataclass_args(p, BuildConfig)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.add_argument("--shortcut-set-only", action="store_true",
                   help="only add the shortcut-proof Table 1 set (pairs_shortcut_test.jsonl) to an existing "
                   "build-data folder --out from an older build; nothing else in it is touched")
    p.set_defaults(func=_build_data)

    p = sub.add_parser("show", help="write a PNG grid: renders, round-trips, base generations, naive vs rewritten")
    p.add_argument("--out", default="world_grid.png")
    p.add_argument("--base", default=None, help="base directory (default: the shipped base)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.set_defaults(func=_show)

    p = sub.add_parser("report", help="measure the world (oracle, generation, understanding, gap, priors) as JSON")
    p.add_argument("--base", default=None, help="base directory (default: the shipped base)")
    p.add_argument("--data", default=None, help="a build-data output directory (default: build one in a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="fewer samples per measurement")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.set_defaults(func=_report)
    world.set_defaults(func=lambda a: (world.print_help(), 2)[1])
