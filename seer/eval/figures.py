"""Figures for the report: training curves per stage (from each run's ``metrics.jsonl``) and image grids per
category (prompt, naive image, SEER's reprompt and image, an opponent's image). Matplotlib, Agg backend, PNG."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# which metrics go in which panel: a key belongs to the first panel whose words it contains
CURVE_PANELS = (
    ("accuracy", ("acc", "win_rate")),
    ("reward", ("reward",)),
    ("KL", ("kl",)),
    ("training health", ("zero_spread", "failure_rate", "truncation")),
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> list[dict]:
    """The numeric records of a ``metrics.jsonl`` (non-JSON or non-object lines are skipped: a run killed
    mid-write may leave a partial last line)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def curve_keys(records: Sequence[dict]) -> dict[str, list[str]]:
    """Panel title → the numeric metric keys that go in it."""
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.setdefault(k, None)
    out: dict[str, list[str]] = {title: [] for title, _ in CURVE_PANELS}
    for k in keys:
        low = k.lower()
        if "time" in low:
            continue
        panel = next((title for title, words in CURVE_PANELS if any(w in low for w in words)), None)
        if panel is not None:
            out[panel].append(k)
    return out


def plot_curves(metrics_path: str | Path, out_path: str | Path, title: str) -> Path | None:
    """One PNG with accuracy, reward, KL and health panels against the step; None if the file has no such metrics."""
    records = read_metrics(metrics_path)
    panels = {t: ks for t, ks in curve_keys(records).items() if ks}
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    xs_all = [r.get("step", i) for i, r in enumerate(records)]
    for ax, (panel, keys) in zip(axes[0], panels.items(), strict=True):
        for k in keys[:6]:  # a readable number of lines per panel
            pts = [(x, r[k]) for x, r in zip(xs_all, records, strict=True) if isinstance(r.get(k), (int, float))]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=k, linewidth=1.2)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


@dataclass(frozen=True)
class GridRow:
    """One case of an image grid."""

    category: str
    instruction: str
    prompt: str
    naive_image: np.ndarray
    seer_reprompt: str
    seer_image: np.ndarray
    opponent: str
    opponent_image: np.ndarray
    opponent_reprompt: str = ""


def image_grid(rows: Sequence[GridRow], out_path: str | Path, title: str = "") -> Path:
    """A PNG grid: one line per case with the instruction and prompt, the naive image, SEER's reprompt and image,
    and the opponent's image."""
    if not rows:
        raise ValueError("image_grid: no rows")
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.8 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1, 1, 1]})
    wrap = lambda s, w=28: "\n".join(textwrap.wrap(s, w))  # noqa: E731
    for ax_row, r in zip(axes, rows, strict=True):
        text_ax = ax_row[0]
        text_ax.axis("off")
        text_ax.text(0.0, 0.5, f"[{r.category}]\ninstruction: {wrap(r.instruction)}\nprompt: {wrap(r.prompt)}",
                     fontsize=8, va="center", ha="left", family="monospace", transform=text_ax.transAxes)
        for ax, img, caption in (
            (ax_row[1], r.naive_image, "naive a ⊕ p0"),
            (ax_row[2], r.seer_image, "SEER: " + r.seer_reprompt),
            (ax_row[3], r.opponent_image, f"{r.opponent}" + (f": {r.opponent_reprompt}" if r.opponent_reprompt
                                                               else "")),
        ):
            ax.imshow(np.asarray(img), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(wrap(caption[:160], 30), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
