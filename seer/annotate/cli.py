"""``seer annotate create | serve | results | links | demo``: blind pairwise human evaluation (App. A.2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _annotator_names(args: argparse.Namespace) -> list[str]:
    from seer.cli import UserError

    if args.annotator:
        return [n.strip() for n in args.annotator]
    if args.annotators < 1:
        raise UserError(f"--annotators must be at least 1, got {args.annotators}")
    return [f"annotator-{i}" for i in range(1, args.annotators + 1)]


def _create(args: argparse.Namespace) -> int:
    from seer.annotate.app import annotator_links
    from seer.annotate.study import create_study

    out = create_study(args.pairs, args.out, _annotator_names(args), seed=args.seed,
                       allow_outside=args.allow_outside)
    links, admin = annotator_links(out, f"http://127.0.0.1:{args.port}")
    print(f"created study {out} ({len(links)} annotators)")
    print(f"serve it with: seer annotate serve {out}   (links assume --port {args.port})")
    for name, link in links:
        print(f"  {name}: {link}")
    print(f"admin: {admin}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from seer.annotate.app import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: anyone who can reach it and holds a link can vote; use HTTPS in front")
    serve(args.study, host=args.host, port=args.port, quiet=not args.verbose, public_url=args.public_url)
    return 0


def _results(args: argparse.Namespace) -> int:
    from seer.annotate.results import compute_results, load_comparison, to_markdown
    from seer.io import atomic_write_json, atomic_write_text

    results = compute_results(args.study, n_boot=args.n_boot, seed=args.seed)
    comparison = load_comparison(args.oracle, source=args.oracle_label) if args.oracle else None
    if comparison is not None:
        results["comparison"] = {"path": str(args.oracle), "rows": comparison}
    out = Path(args.out) if args.out else Path(args.study)
    markdown = to_markdown(results, comparison)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown)
    print(markdown)
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


def _links(args: argparse.Namespace) -> int:
    from seer.annotate.app import annotator_links
    from seer.annotate.study import add_annotator, connect

    if args.add:
        conn = connect(args.study)
        try:
            for name in args.add:
                add_annotator(conn, name)
        finally:
            conn.close()
    links, admin = annotator_links(args.study, args.base_url)
    if args.json:
        print(json.dumps({"annotators": dict(links), "admin": admin}, indent=2))
    else:
        for name, link in links:
            print(f"{name}: {link}")
        print(f"admin: {admin}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from seer.annotate.demo import write_demo_pairs

    path = write_demo_pairs(args.out, n_cases=args.cases, images=args.images, seed=args.seed)
    print(f"wrote {path}; next: seer annotate create --pairs {path} --out STUDY")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("annotate", help="blind pairwise human evaluation: create a study, serve it, results")
    sub = p.add_subparsers(dest="annotate_command", metavar="ACTION")

    c = sub.add_parser("create", help="make a study folder from a pairs JSONL (see docs/annotate.md)")
    c.add_argument(
        "--pairs",
        required=True,
        help="pairs JSONL: case_id, instruction, prompt, category, "
        "distribution, system, opponent, image_system, image_opponent (paths relative to the file)",
    )
    c.add_argument("--out", required=True, help="the new study folder (must not exist or be empty)")
    c.add_argument("--annotators", type=int, default=6, help="number of annotators (paper: 6), named annotator-1…")
    c.add_argument(
        "--annotator", action="append", metavar="NAME", help="an annotator by name (repeat; overrides --annotators)"
    )
    c.add_argument("--seed", type=int, default=0, help="seed of each annotator's pair order and image sides")
    c.add_argument("--port", type=int, default=8765, help="port assumed in the printed links")
    c.add_argument("--allow-outside", action="store_true",
                   help="accept image paths that lead outside the pairs file's folder (.., absolute, symlinks)")
    c.set_defaults(func=_create)

    s = sub.add_parser("serve", help="run the annotation web app on a study")
    s.add_argument("study", help="study folder made by `seer annotate create`")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    s.add_argument("--verbose", action="store_true", help="log every request (tokens are redacted)")
    s.add_argument("--public-url", help="the URL annotators reach the server at, for the links (default: the bound "
                   "address); never taken from a request's Host header")
    s.set_defaults(func=_serve)

    r = sub.add_parser("results", help="win ratios, CI, significance, agreement, position bias (Markdown + JSON)")
    r.add_argument("study", help="study folder")
    r.add_argument("--oracle", help="another judge's results JSON (e.g. the oracle's) to show side by side")
    r.add_argument("--oracle-label", default="oracle", help="the judge column's label for --oracle rows")
    r.add_argument("--out", help="folder for results.md and results.json (default: the study folder)")
    r.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples for the 95%% CI")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    r.set_defaults(func=_results)

    k = sub.add_parser("links", help="print the annotator and admin links (optionally adding annotators)")
    k.add_argument("study", help="study folder")
    k.add_argument("--add", action="append", metavar="NAME", help="add an annotator (repeat)")
    k.add_argument("--base-url", default="http://127.0.0.1:8765", help="where the server is reached")
    k.add_argument("--json", action="store_true", help="print JSON")
    k.set_defaults(func=_links)

    d = sub.add_parser("demo", help="write a small synthetic pairs file to try the app on")
    d.add_argument("--out", required=True, help="folder for pairs.jsonl and its images")
    d.add_argument("--cases", type=int, default=12, help="test cases (each against two opponents)")
    d.add_argument("--images", choices=("world", "shapes"), default="world", help="world renders or plain shapes")
    d.add_argument("--seed", type=int, default=0, help="seed of the images")
    d.set_defaults(func=_demo)

    p.set_defaults(func=lambda _args: p.print_help() or 2)
