"""A study's results in the paper's layout (Tables 2–3): the win ratio of the system against each opponent, Total /
ID (Overall, Simple, Hard) / OOD (Overall, Simple, Hard), ties 0.5, with a 95% bootstrap CI and a sign test
(both over cases, via :mod:`seer.eval.stats`), Fleiss' kappa, the position-bias check and per-annotator figures.
Markdown for people, JSON for tools; an oracle (or any other judge's) results JSON can be put beside the humans'.

Win ratio. App. A.2 averages the score over annotators and cases. Here each case's votes are averaged first and the
win ratio is the mean over cases — the same number when every annotator answered every pair, and it does not
over-weight cases that happen to have more answers while a study is incomplete. The CI resamples cases; the sign
test counts a case as won when its mean score is above 0.5, lost below, and drops it at exactly 0.5.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from seer.annotate import study as st
from seer.annotate.stats import fleiss_kappa, position_bias
from seer.data import DataError
from seer.eval.stats import COLUMN_LABELS, COLUMNS, breakdown, case_scores, summarize_wins


def _cell(votes: list[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    per_case = case_scores((v["case_id"], v["score"]) for v in votes)
    cell = summarize_wins(list(per_case.values()), n_boot=n_boot, seed=seed).to_dict()
    cell["n_cases"] = cell.pop("n")
    cell["n_votes"] = len(votes)
    cell["vote_wins"] = sum(v["score"] == 1.0 for v in votes)
    cell["vote_ties"] = sum(v["score"] == 0.5 for v in votes)
    cell["vote_losses"] = sum(v["score"] == 0.0 for v in votes)
    return cell


def _kappa(votes: list[dict[str, Any]]) -> dict[str, Any]:
    by_pair: dict[int, list[float]] = defaultdict(list)
    for v in votes:
        by_pair[v["pair_id"]].append(v["score"])  # categories: system / tie / opponent preferred
    return fleiss_kappa(by_pair.values())


def compute_results(study_dir: str | Path, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    conn = st.connect(study_dir)
    try:
        conn.execute("BEGIN")  # one consistent snapshot while a server may still be writing
        votes = st.current_votes(conn)
        summary = st.study_summary(conn)
        pairs = st.pairs_table(conn)
        progress = st.admin_progress(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for v in votes:
        groups[(v["system"], v["opponent"])].append(v)
    pair_groups = list(dict.fromkeys((p.system, p.opponent) for p in pairs))  # in pairs-file order
    rows = []
    for system, opponent in pair_groups:
        group = groups.get((system, opponent), [])
        cols = breakdown(group, distribution=lambda v: v["distribution"], category=lambda v: v["category"])
        rows.append(
            {
                "system": system,
                "opponent": opponent,
                "source": "human",
                "n_pairs": sum(p.system == system and p.opponent == opponent for p in pairs),
                "cells": {c: (_cell(cols[c], n_boot, seed) if cols[c] else None) for c in COLUMNS},
                "agreement": _kappa(group),
            }
        )
    annotators = []
    for a in progress:
        mine = [v for v in votes if v["annotator"] == a["name"]]
        annotators.append(
            {
                "name": a["name"],
                "answered": a["answered"],
                "total": a["total"],
                "win_ratio": (sum(v["score"] for v in mine) / len(mine)) if mine else None,
                "position_bias": position_bias(v["choice"] for v in mine),
            }
        )
    expected = summary["pairs"] * summary["annotators"]
    return {
        "study": str(Path(study_dir)),
        "summary": {
            **summary,
            "expected_votes": expected,
            "coverage": summary["votes"] / expected if expected else None,
        },
        "columns": list(COLUMNS),
        "rows": rows,
        "agreement": _kappa(votes),
        "position_bias": {
            **position_bias(v["choice"] for v in votes),
            "system_shown_left_rate": (sum(v["system_left"] for v in votes) / len(votes)) if votes else None,
        },
        "annotators": annotators,
        "method": {
            "score": "1 = system's image chosen, 0.5 = tie, 0 = opponent's image chosen (paper App. A.2)",
            "win_ratio": "mean over cases of each case's mean vote",
            "ci": f"95% percentile bootstrap over cases, {n_boot} resamples, seed {seed}",
            "test": "two-sided exact sign test over cases (case mean > 0.5 win, < 0.5 loss, = 0.5 dropped)",
            "agreement": "Fleiss' kappa over categories system / tie / opponent preferred",
            "position_bias": "share of decided votes choosing the left image (A), exact binomial test vs 0.5",
        },
    }


def _win_ratio_of(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("win_ratio")
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def load_comparison(path: str | Path, source: str = "oracle") -> list[dict[str, Any]]:
    """Rows of another judge's results to show beside the humans'. Accepted shapes (column keys are
    ``seer.eval.stats.COLUMNS``; a cell is a number or an object with ``win_ratio``; a row names its opponent in
    ``opponent`` or, as ``seer eval`` writes it, ``key``):

    - ``{"rows": [{"opponent": ..., "cells": {column: cell}}]}`` — this module's ``results.json`` and the
      ``table.json`` of ``seer eval win-ratio``; a row may also hold its cells directly;
    - ``seer reproduce``'s ``report.json``: the rows of its ``table2`` and ``table3``;
    - a mapping ``{opponent: {column: cell}}``.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    tables = ("table3", "table2")
    if isinstance(obj, dict) and isinstance(obj.get("rows"), list):
        raw = [(f"rows[{i}]", r) for i, r in enumerate(obj["rows"])]
    elif isinstance(obj, dict) and any(isinstance(obj.get(t), dict) and "rows" in obj[t] for t in tables):
        raw = [
            (f"{t}.rows[{i}]", r)
            for t in tables
            if isinstance(obj.get(t), dict)
            for i, r in enumerate(obj[t].get("rows") or [])
        ]
    elif isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        raw = [(repr(k), {"opponent": k, "cells": v}) for k, v in obj.items()]
    else:
        raise DataError(
            f'{path}: expected {{"rows": [{{"opponent": ..., "cells": {{column: win ratio}}}}]}} '
            f"or {{opponent: {{column: win ratio}}}} with columns {', '.join(COLUMNS)}"
        )
    rows, seen = [], set()
    for where, r in raw:
        name = r.get("opponent", r.get("key")) if isinstance(r, dict) else None
        if not isinstance(name, str):
            raise DataError(f"{path}: {where}: expected an object naming its opponent in 'opponent' (or 'key')")
        cells = r.get("cells", r)
        if not isinstance(cells, dict) or not any(c in cells for c in COLUMNS):
            raise DataError(f"{path}: {where} (opponent {name!r}): no cells; expected keys among {', '.join(COLUMNS)}")
        if name in seen:  # report.json may list an opponent in both tables
            continue
        seen.add(name)
        wr = {c: _win_ratio_of(cells.get(c)) for c in COLUMNS}
        rows.append(
            {
                "system": r.get("system"),
                "opponent": name,
                "source": r.get("source") if r.get("source") not in (None, "human") else source,
                "cells": {c: ({"win_ratio": wr[c]} if wr[c] is not None else None) for c in COLUMNS},
            }
        )
    return rows


def side_by_side(results: dict[str, Any], other: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The human rows, each followed by the other judge's row for the same opponent (matched by opponent name, and
    by system when both give one); the other judge's unmatched rows come last."""
    used: set[int] = set()
    out = []
    for row in results["rows"]:
        out.append(row)
        for i, o in enumerate(other):
            if i in used or o["opponent"] != row["opponent"]:
                continue
            if o.get("system") and o["system"] != row["system"]:
                continue
            out.append(o)
            used.add(i)
    out.extend(o for i, o in enumerate(other) if i not in used)
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def md_text(value: Any) -> str:
    """A name from the study (system, opponent, annotator, judge) as inert Markdown table text: ``|`` and line breaks
    would break the table, and HTML (``<script>``) would reach whatever renders the file."""
    text = " ".join(str(value).split())  # every line break or tab → one space
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def to_markdown(results: dict[str, Any], comparison: list[dict[str, Any]] | None = None) -> str:
    s = results["summary"]
    systems = sorted({r["system"] for r in results["rows"]})
    one_system = len(systems) == 1

    def label(r: dict[str, Any]) -> str:
        opponent = md_text(r["opponent"])
        return f"vs. {opponent}" if one_system else f"{md_text(r['system'] or '?')} vs. {opponent}"

    rows = side_by_side(results, comparison) if comparison else results["rows"]
    lines = [
        f"# Human evaluation{': ' + md_text(systems[0]) if one_system else ''}",
        "",
        f"{s['pairs']} pairs × {s['annotators']} annotators: {s['votes']} of {s['expected_votes']} answers "
        f"({_fmt(100 * s['coverage'] if s['coverage'] is not None else None, 1)}%). Blind pairwise protocol of the "
        "paper's App. A.2: win 1, tie 0.5, loss 0, from the system's side.",
        "",
        "## Win ratio",
        "",
        "| Opponent | Judge | " + " | ".join(COLUMN_LABELS[c] for c in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        cells = [_fmt(_win_ratio_of(r["cells"].get(c))) for c in COLUMNS]
        lines.append(f"| {label(r)} | {md_text(r['source'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Significance (Total column)",
        "",
        "95% bootstrap CI over cases; two-sided exact sign test over cases against 0.5 (ties dropped).",
        "",
        "| Opponent | Win ratio | 95% CI | p | cases W / T / L | votes W / T / L | Fleiss' κ |",
        "|---|---:|---|---:|---|---|---:|",
    ]
    for r in results["rows"]:
        c = r["cells"]["total"]
        if c is None:
            lines.append(f"| {label(r)} | – | – | – | – | – | – |")
            continue
        lines.append(
            f"| {label(r)} | {_fmt(c['win_ratio'])} | [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] | "
            f"{_p(c['p_value'])} | {c['wins']} / {c['ties']} / {c['losses']} | "
            f"{c['vote_wins']} / {c['vote_ties']} / {c['vote_losses']} | {_fmt(r['agreement']['kappa'])} |"
        )
    a, pb = results["agreement"], results["position_bias"]
    lines += [
        "",
        "## Agreement and position bias",
        "",
        f"- Fleiss' κ over all pairs (system / tie / opponent): **{_fmt(a['kappa'])}** "
        f"(observed agreement {_fmt(a['observed_agreement'])}, chance {_fmt(a['chance_agreement'])}, "
        f"{a['n_items']} pairs with ≥ 2 answers).",
        f"- Left image (A) chosen in {_fmt(pb['left_rate'])} of decided votes ({pb['left']} left, {pb['right']} "
        f"right, {pb['ties']} ties; exact binomial p = {_p(pb['p_value'])}). The system's image was on the left in "
        f"{_fmt(pb['system_shown_left_rate'])} of answered pairs.",
        "",
        "## Annotators",
        "",
        "| Annotator | Answered | Win ratio | Left rate (decided) | Ties |",
        "|---|---|---:|---:|---:|",
    ]
    for an in results["annotators"]:
        b = an["position_bias"]
        lines.append(
            f"| {md_text(an['name'])} | {an['answered']} / {an['total']} | {_fmt(an['win_ratio'])} | "
            f"{_fmt(b['left_rate'])} | {b['ties']} |"
        )
    return "\n".join(lines) + "\n"
