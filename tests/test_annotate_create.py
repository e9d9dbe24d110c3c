"""`seer annotate create`: malformed pairs are rejected with the line and the reason; images are copied blind;
each annotator gets their own random, side-balanced order."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from seer.annotate import study as st
from seer.annotate.demo import write_demo_pairs
from seer.annotate.pairs import PAIR_FIELDS, load_pairs
from seer.cli import main
from seer.data import DataError


@pytest.fixture
def pairs_dir(tmp_path):
    path = write_demo_pairs(tmp_path / "pairs", n_cases=4)
    return path.parent


def _rewrite(pairs_dir, edit):
    """Apply edit(list of records) → list of lines (str or dict) to the demo pairs file; return its path."""
    path = pairs_dir / "pairs.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    lines = edit(records)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _set(i, **changes):
    def edit(records):
        records[i] = {**records[i], **changes}
        return records

    return edit


def _drop(i, field):
    def edit(records):
        del records[i][field]
        return records

    return edit


@pytest.mark.parametrize(
    ("edit", "line", "reason"),
    [
        (lambda r: [*r[:2], "{not json", *r[3:]], 3, "not valid JSON"),
        (lambda r: [*r[:1], "[1, 2]", *r[2:]], 2, "expected a JSON object"),
        (_drop(2, "opponent"), 3, "missing field 'opponent'"),
        (_set(1, seed=3), 2, r"unknown field\(s\) \['seed'\]"),
        (_set(0, category="vibes"), 1, "field 'category' is 'vibes'"),
        (_set(4, distribution="in"), 5, "field 'distribution' is 'in'"),
        (_set(3, prompt=""), 4, "field 'prompt' is empty"),
        (_set(3, instruction=7), 4, "field 'instruction' must be a string"),
        (_set(2, opponent="seer"), 3, "both 'seer'"),
        (_set(2, image_opponent="images/nope.png"), 3, "field 'image_opponent': image file .*nope.png not found"),
        (_set(5, image_opponent="images/test-0002-seer.png"), 6, "same file"),
        (lambda r: [*r, r[0]], 9, "duplicate pair .*first on line 1"),
        (_set(1, prompt="a dog"), 2, "field 'prompt' is 'a dog' but line 1 gives case 'test-0000'"),
    ],
)
def test_malformed_pairs_name_line_and_reason(pairs_dir, edit, line, reason):
    path = _rewrite(pairs_dir, edit)
    with pytest.raises(DataError, match=rf"pairs\.jsonl:{line}: .*{reason}"):
        load_pairs(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no pairs"):
        load_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="file not found"):
        load_pairs(tmp_path / "absent.jsonl")


def test_unreadable_image_rejected_at_create(pairs_dir, tmp_path):
    (pairs_dir / "images" / "test-0001-naive.png").write_text("this is not a PNG")
    with pytest.raises(DataError, match=r"pairs\.jsonl:3: field 'image_opponent': cannot read image"):
        st.create_study(pairs_dir / "pairs.jsonl", tmp_path / "study", ["a"])
    assert not (tmp_path / "study").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".study")]  # no half-made folder left


def test_cli_reports_errors_without_traceback(pairs_dir, tmp_path, capsys):
    _rewrite(pairs_dir, _set(6, image_system="images/gone.png"))
    code = main(["annotate", "create", "--pairs", str(pairs_dir / "pairs.jsonl"), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pairs.jsonl:7: field 'image_system'" in err and "gone.png not found" in err
    assert "Traceback" not in err


def test_create_refuses_existing_study(pairs_dir, tmp_path):
    out = st.create_study(pairs_dir / "pairs.jsonl", tmp_path / "study", ["a"])
    with pytest.raises(DataError, match="already exists"):
        st.create_study(pairs_dir / "pairs.jsonl", out, ["a"])
    (tmp_path / "empty").mkdir()
    st.create_study(pairs_dir / "pairs.jsonl", tmp_path / "empty", ["a"])  # an empty folder is fine
    with pytest.raises(DataError, match="repeat"):
        st.create_study(pairs_dir / "pairs.jsonl", tmp_path / "s2", ["a", "a"])


def test_images_copied_blind(tmp_path):
    from PIL import Image, PngImagePlugin

    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=2, system="zebrasys", opponents=("quokkabase",))
    # a generator may write its name into the PNG's metadata: it must not reach the study
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "zebrasys generator")
    src = tmp_path / "pairs" / "images" / "test-0000-zebrasys.png"
    Image.open(src).save(src, pnginfo=info)
    assert b"zebrasys" in src.read_bytes()
    out = st.create_study(pairs, tmp_path / "study", ["a"])
    stored = sorted((out / "images").iterdir())
    assert len(stored) == 4
    for f in stored:
        assert "zebrasys" not in f.name and "quokka" not in f.name and "test-" not in f.name
        assert b"zebrasys" not in f.read_bytes() and b"quokka" not in f.read_bytes()
    # pixels are unchanged
    import numpy as np

    conn = st.connect(out)
    rel = conn.execute("SELECT image_system FROM pairs WHERE case_id = 'test-0000'").fetchone()[0]
    conn.close()
    assert np.array_equal(np.asarray(Image.open(out / rel)), np.asarray(Image.open(src).convert("RGB")))


def test_assignments_random_per_annotator_balanced_and_seeded(tmp_path):
    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=12)  # 24 pairs
    names = [f"a{i}" for i in range(6)]
    out = st.create_study(pairs, tmp_path / "s1", names, seed=7)
    again = st.create_study(pairs, tmp_path / "s2", names, seed=7)
    other = st.create_study(pairs, tmp_path / "s3", names, seed=8)

    def assignments(study):
        conn = st.connect(study)
        rows = conn.execute("SELECT annotator_id, position, pair_id, system_left FROM assignments").fetchall()
        conn.close()
        by = {}
        for r in rows:
            by.setdefault(r[0], []).append((r[1], r[2], r[3]))
        return {k: sorted(v) for k, v in by.items()}

    a = assignments(out)
    assert a == assignments(again)  # same seed, same orders and sides
    assert a != assignments(other)
    orders = set()
    for rows in a.values():
        assert sorted(p for _, p, _ in rows) == list(range(1, 25))  # every pair exactly once
        assert [pos for pos, _, _ in rows] == list(range(1, 25))
        assert sum(left for _, _, left in rows) == 12  # the system is left in exactly half
        orders.add(tuple(p for _, p, _ in rows))
    assert len(orders) == 6  # each annotator has their own order
    # and, per pair, sides vary across annotators (not one fixed side per pair)
    per_pair = Counter()
    for rows in a.values():
        for _, p, left in rows:
            per_pair[p] += left
    assert any(0 < n < 6 for n in per_pair.values())


def test_study_db_is_wal_and_tokens_are_unguessable(pairs_dir, tmp_path):
    out = st.create_study(pairs_dir / "pairs.jsonl", tmp_path / "study", ["a", "b"])
    conn = st.connect(out)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tokens = [r["token"] for r in st.annotators(conn)]
    admin = st.meta(conn)["admin_token"]
    conn.close()
    assert len(set(tokens)) == 2 and all(len(t) >= 22 for t in tokens) and len(admin) >= 32
    assert set(PAIR_FIELDS) == {
        "case_id", "instruction", "prompt", "category", "distribution",
        "system", "opponent", "image_system", "image_opponent",
    }  # fmt: skip


def test_links_adds_an_annotator(pairs_dir, tmp_path, capsys):
    out = st.create_study(pairs_dir / "pairs.jsonl", tmp_path / "study", ["a"])
    assert main(["annotate", "links", str(out), "--add", "late", "--json", "--base-url", "http://h:1"]) == 0
    links = json.loads(capsys.readouterr().out)
    assert set(links["annotators"]) == {"a", "late"}
    assert links["annotators"]["late"].startswith("http://h:1/a/") and links["admin"].startswith("http://h:1/admin/")
    conn = st.connect(out)
    assert st.n_positions(conn, 2) == 8
    conn.close()
    with pytest.raises(DataError, match="already exists"):
        conn = st.connect(out)
        try:
            st.add_annotator(conn, "late")
        finally:
            conn.close()


def test_accepts_what_seer_eval_exports(tmp_path):
    """The pairs file written by `seer eval export-pairs` makes a study as it is."""
    import numpy as np

    from seer.data import CATEGORIES, Sample, save_image
    from seer.eval.win_ratio import System, SystemOutput, export_pairs

    samples = [
        Sample(id=f"t{i}", instruction="Make it icy.", prompt="a cat", category=CATEGORIES[i], split="test",
               distribution="ood" if i % 2 else "id")
        for i in range(3)
    ]  # fmt: skip
    systems = []
    for k, name in enumerate(("seer", "naive", "verbose_expander")):
        folder = tmp_path / "eval" / "systems" / name
        outputs = {}
        for s in samples:
            save_image(folder / "images" / f"{s.id}.png", np.full((8, 8, 3), 40 * k, dtype=np.uint8))
            outputs[s.id] = SystemOutput(s.id, "p", "p", "p", 0, f"images/{s.id}.png")
        systems.append(System(name, name, outputs, folder))
    path = export_pairs(tmp_path / "eval" / "pairs.jsonl", samples, systems[0], systems[1:])
    out = st.create_study(path, tmp_path / "study", ["a"])
    conn = st.connect(out)
    rows = conn.execute("SELECT system, opponent, distribution FROM pairs").fetchall()
    conn.close()
    assert len(rows) == 6 and {r[1] for r in rows} == {"naive", "verbose_expander"}
    assert {r[0] for r in rows} == {"seer"} and {r[2] for r in rows} == {"id", "ood"}


def test_demo_command_makes_a_valid_pairs_file(tmp_path, capsys):
    assert main(["annotate", "demo", "--out", str(tmp_path / "demo"), "--cases", "6"]) == 0
    pairs = [p for _, p in load_pairs(tmp_path / "demo" / "pairs.jsonl")]
    assert len(pairs) == 12
    first = pairs[0]
    assert first.instruction.startswith("Make it look carved") and first.prompt == "a cat"
    # world renders: the system's image differs from the opponent's only where the instruction asks
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(tmp_path / "demo" / first.image_system))
    b = np.asarray(Image.open(tmp_path / "demo" / first.image_opponent))
    assert a.shape == b.shape == (32, 32, 3) and (a != b).any()
    assert main(["annotate"]) == 2  # no action: help
