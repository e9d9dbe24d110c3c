"""Time `seer reproduce` step by step and print JSON: wall time per step, the total, and the headline figures.

    python bench/bench_reproduce.py --quick                 # runs a quick reproduction into a temporary folder
    python bench/bench_reproduce.py --from runs/reproduce   # reads an existing run's report.json instead

Prefix with `nice -n 10` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def headline(report: dict) -> dict:
    """The figures the issue's targets are about, from a report.json."""
    out: dict = {}
    for r in (report.get("table1") or {}).get("rows", []):
        out[f"table1/{r['key']}/total"] = ((r.get("accuracy") or {}).get("total") or {}).get("accuracy")
    for t in ("table2", "table3"):
        for r in (report.get(t) or {}).get("rows", []):
            cell = (r.get("cells") or {}).get("total") or {}
            out[f"{t}/{r['key']}/win_ratio"] = cell.get("win_ratio")
            out[f"{t}/{r['key']}/p_value"] = cell.get("p_value")
    out["seer_avg_words"] = (report.get("table2") or {}).get("seer_avg_words")
    out["targets_met"] = sum(t["met"] is True for t in report.get("targets", []))
    out["targets_missed"] = sum(t["met"] is False for t in report.get("targets", []))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced protocol (default: full)")
    ap.add_argument("--out", default=None, help="run directory (default: a temporary folder)")
    ap.add_argument("--from", dest="from_dir", default=None, help="read this finished run instead of running one")
    args = ap.parse_args()
    if args.from_dir:
        out = Path(args.from_dir)
        wall = None
    else:
        from seer.eval.reproduce import reproduce

        out = Path(args.out or tempfile.mkdtemp(prefix="seer-bench-reproduce-"))
        t0 = time.perf_counter()
        reproduce(out, quick=args.quick, resume=(out / "steps").is_dir())
        wall = time.perf_counter() - t0
    report = json.loads((out / "report.json").read_text())
    meta = report["meta"]
    print(json.dumps({
        "out": str(out),
        "quick": meta.get("quick"),
        "cpu_count": meta.get("cpu_count"),
        "steps_s": {s["name"]: round(s["wall_time_s"], 1) for s in meta.get("steps", [])},
        "total_steps_s": round(meta.get("wall_time_s") or 0.0, 1),
        "process_wall_s": None if wall is None else round(wall, 1),
        "headline": headline(report),
    }, indent=2))


if __name__ == "__main__":
    main()
