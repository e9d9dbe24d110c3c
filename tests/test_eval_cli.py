"""`seer eval …` on tiny real checkpoints: Table 1 rows, refusal of mismatched checkpoints, report re-rendering."""

from __future__ import annotations

import json

import numpy as np

from seer.cli import main
from seer.data import Quadruplet, save_image, write_jsonl

# the paper-style pairs only: the shortcut-proof default is tested in test_eval_shortcut_proof
EVAL = ["eval", "evaluator", "--no-shortcut-pairs", "--max-new-tokens", "4", "--quadruplets"]
CATS = ("material_synthesis", "attribute_reasoning", "semantic_edit", "conceptual_reasoning")


def _quads(tmp_path, size=(16, 16)):
    rng = np.random.default_rng(0)
    quads = []
    for i in range(4):
        for side in ("a", "b"):
            save_image(tmp_path / f"images/{i}{side}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        quads.append(Quadruplet(f"q{i}", 2, "make it look cold", "a cat", CATS[i], f"images/{i}a.png",
                                f"images/{i}b.png", "test", ("id", "ood")[i // 2]))
    write_jsonl(tmp_path / "quads.jsonl", quads)
    return tmp_path / "quads.jsonl"


def test_eval_evaluator_rows_and_mismatched_vocabulary(tmp_path, capsys):
    from seer.backends.token_umm import tiny_random_backend

    tiny_random_backend(seed=0).save(tmp_path / "base")
    tiny_random_backend(seed=1).save(tmp_path / "other")
    quads = _quads(tmp_path)
    out = tmp_path / "t1.json"
    assert main([*EVAL, str(quads), "--model", f"zero={tmp_path / 'base'}",
                 "--model", f"other={tmp_path / 'other'}", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["key"] for r in rows] == ["zero", "other"]
    assert rows[0]["accuracy"]["total"]["n"] == 8  # 4 quadruplets x 2 orders
    assert "| zero |" in capsys.readouterr().out
    meta_file = tmp_path / "other" / "backend.json"
    meta = json.loads(meta_file.read_text())
    meta["vocab_size"] += 7
    meta_file.write_text(json.dumps(meta))
    assert main([*EVAL, str(quads), "--model", str(tmp_path / "base"),
                 "--model", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "other/backend.json: vocab_size" in err and "Traceback" not in err


def test_eval_evaluator_unknown_category_is_a_clear_error(tmp_path, capsys):
    from seer.backends.token_umm import tiny_random_backend

    tiny_random_backend(seed=0).save(tmp_path / "base")
    quads = _quads(tmp_path)
    lines = quads.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["category"] = "vibes"
    lines[1] = json.dumps(rec)
    quads.write_text("\n".join(lines) + "\n")
    assert main([*EVAL, str(quads), "--model", str(tmp_path / "base")]) == 2
    assert "quads.jsonl:2: field 'category' is 'vibes'" in capsys.readouterr().err


def test_eval_report_rerenders(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps({"meta": {"command": "seer reproduce"}}))
    assert main(["eval", "report", str(tmp_path / "report.json")]) == 0
    assert (tmp_path / "REPORT.md").read_text().startswith("# SEER reproduction report")
    (tmp_path / "bad.json").write_text("{}")
    assert main(["eval", "report", str(tmp_path / "bad.json")]) == 2
    assert "missing 'meta'" in capsys.readouterr().err
