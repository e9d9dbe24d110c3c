"""A study on disk: ``STUDY/study.sqlite`` (SQLite in WAL mode) and ``STUDY/images/`` (the pairs' images, re-encoded
as PNG without metadata and named by content hash, so neither a file name nor an embedded text chunk can reveal which
system made an image).

Blinding and randomisation (paper App. A.2). Every annotator sees every pair once; the order of the pairs and which
side the system's image is shown on are drawn per annotator from ``(study seed, annotator number)``. The side is
balanced within each annotator (half the pairs, rounded, put the system on the left) and shuffled, so a left-side
preference cannot masquerade as a system preference.

Durability and concurrency. One row per (annotator, position) in ``votes`` is the *current* answer (primary key, so
never two); a change rewrites it and bumps ``revision``. Every submission is also appended to ``vote_events``.
Each write is one ``BEGIN IMMEDIATE`` transaction with ``synchronous=FULL``, and the web app acknowledges a vote only
after its commit returns, so a killed server loses nothing it acknowledged.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seer.annotate.pairs import PAIR_FIELDS, Pair, load_pairs
from seer.data import DataError

DB_NAME = "study.sqlite"
IMAGES_DIR = "images"
CHOICES = ("A", "B", "tie")  # A = the left image, B = the right one
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    case_id TEXT NOT NULL, instruction TEXT NOT NULL, prompt TEXT NOT NULL,
    category TEXT NOT NULL, distribution TEXT NOT NULL,
    system TEXT NOT NULL, opponent TEXT NOT NULL,
    image_system TEXT NOT NULL, image_opponent TEXT NOT NULL,
    UNIQUE (case_id, system, opponent)
);
CREATE TABLE annotators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE assignments (
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    position INTEGER NOT NULL,
    pair_id INTEGER NOT NULL REFERENCES pairs(id),
    system_left INTEGER NOT NULL CHECK (system_left IN (0, 1)),
    PRIMARY KEY (annotator_id, position),
    UNIQUE (annotator_id, pair_id)
);
CREATE TABLE votes (
    annotator_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')),
    revision INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (annotator_id, position),
    FOREIGN KEY (annotator_id, position) REFERENCES assignments(annotator_id, position)
);
CREATE TABLE vote_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    choice TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(study: str | Path) -> sqlite3.Connection:
    """Open a study's database: autocommit mode (transactions are explicit), WAL, ``synchronous=FULL``."""
    db = Path(study) / DB_NAME
    if not db.is_file():
        raise DataError(f"{study}: not a study ({DB_NAME} not found); make one with `seer annotate create`")
    conn = sqlite3.connect(db, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so concurrent writers queue instead of
    failing halfway; any error rolls the whole transaction back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # images of a study are shown side by side in a browser; far above any UMM's output
MAX_POSITION = 2**63 - 1  # SQLite's INTEGER: a larger position in a URL would overflow, not just miss


def _clean_png(src: Path, where: str) -> bytes:
    """The image re-encoded as PNG with no metadata (text chunks, EXIF, ICC) — nothing but pixels reaches the page."""
    from PIL import Image

    try:
        with Image.open(src) as im:
            # checked before decoding: the header's size is known at open, a 14000x14000 PNG is 600 MB decoded
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(f"{where}: image {src} is {w}x{h} = {w * h:,} pixels; the limit is {MAX_PIXELS:,} "
                                f"(e.g. {MAX_SIDE}x{MAX_SIDE}); resize it")
            im.load()
            mode = im.mode if im.mode in ("RGB", "RGBA", "L") else "RGB"
            clean = Image.frombytes(mode, im.size, im.convert(mode).tobytes())
    except DataError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own limit, hit at open for a header past 2x its 89M warning
        raise DataError(f"{where}: image {src} is too large ({e}); the limit is {MAX_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for broken or non-image files
        raise DataError(f"{where}: cannot read image {src} ({e})") from e
    buf = io.BytesIO()
    clean.save(buf, format="PNG")
    return buf.getvalue()


def _assignment(n_pairs: int, seed: int, annotator_number: int) -> list[tuple[int, bool]]:
    """[(pair index, system shown left), ...] in this annotator's presentation order."""
    rng = np.random.default_rng([seed, annotator_number])
    order = rng.permutation(n_pairs)
    left = np.zeros(n_pairs, dtype=bool)
    left[: (n_pairs + 1) // 2] = True
    left = rng.permutation(left)
    return [(int(i), bool(s)) for i, s in zip(order, left, strict=True)]


def add_annotator(conn: sqlite3.Connection, name: str) -> str:
    """Register an annotator with their own random order and sides; returns their secret token."""
    name = name.strip()
    if not name:
        raise DataError("annotator name is empty")
    seed = int(meta(conn)["seed"])
    pair_ids = [r["id"] for r in conn.execute("SELECT id FROM pairs ORDER BY id")]
    token = secrets.token_urlsafe(16)  # 128 bits: guessing another annotator's link is hopeless
    with write_transaction(conn):
        if conn.execute("SELECT 1 FROM annotators WHERE name = ?", (name,)).fetchone():
            raise DataError(f"annotator {name!r} already exists")
        number = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM annotators").fetchone()[0]
        conn.execute(
            "INSERT INTO annotators (id, name, token, created_at) VALUES (?, ?, ?, ?)", (number, name, token, _now())
        )
        conn.executemany(
            "INSERT INTO assignments (annotator_id, position, pair_id, system_left) VALUES (?, ?, ?, ?)",
            [
                (number, pos, pair_ids[i], int(left))
                for pos, (i, left) in enumerate(_assignment(len(pair_ids), seed, number), 1)
            ],
        )
    return token


def create_study(pairs_path: str | Path, out: str | Path, annotators: list[str], seed: int = 0,
                 allow_outside: bool = False) -> Path:
    """Validate a pairs file, copy its images and write a new study folder ``out`` (which must not exist yet or be
    empty). The folder appears only when complete."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; a study is never overwritten (choose a new --out)")
    if not annotators:
        raise DataError("a study needs at least one annotator")
    if len(set(annotators)) != len(annotators):
        raise DataError(f"annotator names repeat: {annotators}")
    for name in annotators:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"annotator name {name!r} holds a lone surrogate, not text") from None
    pairs = load_pairs(pairs_path, allow_outside=allow_outside)
    pairs_path = Path(pairs_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.creating-"))
    try:
        (tmp / IMAGES_DIR).mkdir()
        rows = []
        for lineno, pair in tqdm(pairs, desc="copying images", unit="pair", leave=False):
            stored = {}
            for name in ("image_system", "image_opponent"):
                data = _clean_png(pairs_path.parent / getattr(pair, name), f"{pairs_path}:{lineno}: field {name!r}")
                fname = hashlib.sha256(data).hexdigest()[:24] + ".png"
                target = tmp / IMAGES_DIR / fname
                if not target.exists():
                    target.write_bytes(data)
                stored[name] = f"{IMAGES_DIR}/{fname}"
            rows.append(
                (lineno, *(getattr(pair, f) for f in PAIR_FIELDS[:7]), stored["image_system"], stored["image_opponent"])
            )
        shutil.copyfile(pairs_path, tmp / "pairs.source.jsonl")
        conn = sqlite3.connect(tmp / DB_NAME, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO pairs (line, case_id, instruction, prompt, category, distribution, system, opponent, "
                "image_system, image_opponent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            info = {
                "schema_version": SCHEMA_VERSION,
                "seed": str(seed),
                "admin_token": secrets.token_urlsafe(24),
                "created_at": _now(),
                "source": str(pairs_path.resolve()),
            }
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(info.items()))
            conn.execute("COMMIT")
        finally:
            conn.close()
        conn = connect(tmp)
        try:
            for name in annotators:
                add_annotator(conn, name)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}


def annotator_by_token(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
    if not token or len(token) > 64:
        return None
    return conn.execute("SELECT id, name FROM annotators WHERE token = ?", (token,)).fetchone()


def annotators(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT id, name, token FROM annotators ORDER BY id").fetchall()


def n_positions(conn: sqlite3.Connection, annotator_id: int) -> int:
    return conn.execute("SELECT COUNT(*) FROM assignments WHERE annotator_id = ?", (annotator_id,)).fetchone()[0]


def progress(conn: sqlite3.Connection, annotator_id: int) -> dict[str, Any]:
    """``{answered, total, next}`` — ``next`` is the first unanswered position (1-based), None when all are done."""
    total = n_positions(conn, annotator_id)
    answered = conn.execute("SELECT COUNT(*) FROM votes WHERE annotator_id = ?", (annotator_id,)).fetchone()[0]
    row = conn.execute(
        "SELECT MIN(a.position) FROM assignments a LEFT JOIN votes v "
        "ON v.annotator_id = a.annotator_id AND v.position = a.position "
        "WHERE a.annotator_id = ? AND v.choice IS NULL",
        (annotator_id,),
    ).fetchone()
    return {"answered": answered, "total": total, "next": row[0]}


def next_unanswered(conn: sqlite3.Connection, annotator_id: int, after: int) -> int | None:
    """The first unanswered position after ``after``, wrapping round to the start; None when all are answered."""
    rows = conn.execute(
        "SELECT a.position FROM assignments a LEFT JOIN votes v "
        "ON v.annotator_id = a.annotator_id AND v.position = a.position "
        "WHERE a.annotator_id = ? AND v.choice IS NULL ORDER BY a.position",
        (annotator_id,),
    ).fetchall()
    positions = [r[0] for r in rows]
    later = [p for p in positions if p > after]
    return (later or positions or [None])[0]


def item(conn: sqlite3.Connection, annotator_id: int, position: int) -> dict[str, Any] | None:
    """What an annotator sees at one position: the texts, the left/right image files and their current answer.
    Nothing here names a system."""
    if not 1 <= position <= MAX_POSITION:
        return None
    row = conn.execute(
        "SELECT a.system_left, p.instruction, p.prompt, p.image_system, p.image_opponent, v.choice "
        "FROM assignments a JOIN pairs p ON p.id = a.pair_id LEFT JOIN votes v "
        "ON v.annotator_id = a.annotator_id AND v.position = a.position "
        "WHERE a.annotator_id = ? AND a.position = ?",
        (annotator_id, position),
    ).fetchone()
    if row is None:
        return None
    left, right = row["image_system"], row["image_opponent"]
    if not row["system_left"]:
        left, right = right, left
    return {
        "position": position,
        "instruction": row["instruction"],
        "prompt": row["prompt"],
        "images": {"A": left, "B": right},
        "choice": row["choice"],
    }


def record_vote(conn: sqlite3.Connection, annotator_id: int, position: int, choice: str) -> int:
    """Make ``choice`` the annotator's one current answer at ``position`` (inserting or replacing it) and log the
    submission, in one committed transaction. Returns the answer's revision (1 for a first answer)."""
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    if not 1 <= position <= MAX_POSITION:
        raise KeyError(position)
    at = _now()
    with write_transaction(conn):
        if not conn.execute(
            "SELECT 1 FROM assignments WHERE annotator_id = ? AND position = ?", (annotator_id, position)
        ).fetchone():
            raise KeyError(position)
        conn.execute(
            "INSERT INTO votes (annotator_id, position, choice, revision, updated_at) VALUES (?, ?, ?, 1, ?) "
            "ON CONFLICT (annotator_id, position) DO UPDATE SET choice = excluded.choice, "
            "revision = votes.revision + 1, updated_at = excluded.updated_at",
            (annotator_id, position, choice, at),
        )
        conn.execute(
            "INSERT INTO vote_events (annotator_id, position, choice, at) VALUES (?, ?, ?, ?)",
            (annotator_id, position, choice, at),
        )
        revision = conn.execute(
            "SELECT revision FROM votes WHERE annotator_id = ? AND position = ?", (annotator_id, position)
        ).fetchone()[0]
    return revision


def admin_progress(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per annotator: name, token, answered, total, last answer time."""
    rows = conn.execute(
        "SELECT an.id, an.name, an.token, "
        "(SELECT COUNT(*) FROM assignments a WHERE a.annotator_id = an.id) AS total, "
        "(SELECT COUNT(*) FROM votes v WHERE v.annotator_id = an.id) AS answered, "
        "(SELECT MAX(updated_at) FROM votes v WHERE v.annotator_id = an.id) AS last "
        "FROM annotators an ORDER BY an.id"
    ).fetchall()
    return [dict(r) for r in rows]


def current_votes(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every current answer, unblinded for the results: annotator, the pair's fields, the side the system was on,
    the choice and the derived score (1 system preferred, 0.5 tie, 0 opponent preferred)."""
    rows = conn.execute(
        "SELECT an.name AS annotator, p.id AS pair_id, p.case_id, p.category, p.distribution, p.system, p.opponent, "
        "a.system_left, v.choice FROM votes v "
        "JOIN assignments a ON a.annotator_id = v.annotator_id AND a.position = v.position "
        "JOIN pairs p ON p.id = a.pair_id JOIN annotators an ON an.id = v.annotator_id "
        "ORDER BY p.id, an.id"
    ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["system_left"] = bool(d["system_left"])
        d["score"] = vote_score(d["choice"], d["system_left"])
        out.append(d)
    return out


def vote_score(choice: str, system_left: bool) -> float:
    """App. A.2's scoring from the system's side: 1 if its image was chosen, 0.5 for a tie, 0 otherwise."""
    if choice == "tie":
        return 0.5
    return 1.0 if (choice == "A") == system_left else 0.0


def pairs_table(conn: sqlite3.Connection) -> list[Pair]:
    return [
        Pair(**{f: r[f] for f in PAIR_FIELDS})
        for r in conn.execute(f"SELECT {', '.join(PAIR_FIELDS)} FROM pairs ORDER BY id")
    ]


def study_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    m = meta(conn)
    return {
        "pairs": conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0],
        "annotators": conn.execute("SELECT COUNT(*) FROM annotators").fetchone()[0],
        "votes": conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0],
        "submissions": conn.execute("SELECT COUNT(*) FROM vote_events").fetchone()[0],
        "seed": int(m["seed"]),
        "created_at": m["created_at"],
        "source": m["source"],
    }
