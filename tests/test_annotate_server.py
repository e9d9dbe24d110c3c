"""`seer annotate serve` as a real process on loopback: a bounded load test (20 annotators answering the whole study
at once) and a kill test (SIGKILL mid-stream loses no acknowledged vote)."""

from __future__ import annotations

import http.client
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from seer.annotate import study as st
from seer.annotate.demo import write_demo_pairs

N_ANNOTATORS = 20
TIMEOUT = 120.0  # seconds: the whole load test must finish well inside this


class Server:
    """A `seer annotate serve STUDY --port 0` subprocess; ``port`` parsed from its first line."""

    def __init__(self, study: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seer.cli", "annotate", "serve", str(study), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True).start()
        deadline = time.monotonic() + 60
        self.port = None
        seen = []
        while self.port is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"server did not start in 60 s; output: {seen}") from None
            seen.append(line)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown handler runs
        self.proc.wait(timeout=30)


def _study(tmp_path, n_annotators, n_cases=6):
    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=n_cases)  # 2 opponents → 2 × n_cases pairs
    return st.create_study(pairs, tmp_path / "study", [f"ann-{i:02d}" for i in range(n_annotators)], seed=5)


def _tokens(study):
    conn = st.connect(study)
    try:
        return {r["name"]: (r["id"], r["token"]) for r in st.annotators(conn)}
    finally:
        conn.close()


def _db_votes(study):
    conn = st.connect(study)
    try:
        rows = conn.execute("SELECT annotator_id, position, choice, revision FROM votes").fetchall()
        events = conn.execute("SELECT COUNT(*) FROM vote_events").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}, events
    finally:
        conn.close()


@pytest.mark.slow
def test_load_20_annotators_at_once(tmp_path):
    study = _study(tmp_path, N_ANNOTATORS)
    tokens = _tokens(study)
    server = Server(study)
    expected: dict[tuple[int, int], tuple[str, int]] = {}  # (annotator id, position) → (final choice, submissions)
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(N_ANNOTATORS)
    posts = [0]

    def annotate(name: str) -> None:
        aid, tok = tokens[name]
        rng = random.Random(name)
        mine: dict[int, list[str]] = {}
        try:
            barrier.wait(timeout=60)
            status, headers, _ = server.request("GET", f"/a/{tok}/")
            while status == 303 and "/done" not in headers["Location"]:
                url = headers["Location"]
                pos = int(url.rsplit("/", 1)[1])
                status, _, page = server.request("GET", url)
                assert status == 200 and b"Pair" in page, (name, url, status)
                choice = rng.choice(st.CHOICES)
                status, headers, _ = server.request("POST", url, f"choice={choice}")
                assert status == 303, (name, url, status)
                mine.setdefault(pos, []).append(choice)
                if rng.random() < 0.25:  # go back and change the answer just given
                    again = rng.choice(st.CHOICES)
                    status2, _, _ = server.request("POST", url, f"choice={again}")
                    assert status2 == 303
                    mine[pos].append(again)
            with lock:
                for pos, chs in mine.items():
                    expected[(aid, pos)] = (chs[-1], len(chs))
                posts[0] += sum(len(c) for c in mine.values())
        except Exception as e:  # noqa: BLE001 - collected and reported below
            with lock:
                errors.append(f"{name}: {e!r}")

    t0 = time.monotonic()
    try:
        threads = [threading.Thread(target=annotate, args=(n,), daemon=True) for n in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.1, TIMEOUT - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        assert not any(t.is_alive() for t in threads), f"load test exceeded {TIMEOUT} s"
    finally:
        server.kill()
    assert not errors, errors
    n_pairs = 12
    assert len(expected) == N_ANNOTATORS * n_pairs
    votes, events = _db_votes(study)
    # exactly one current answer per annotator and pair, equal to the last one each annotator sent
    assert len(votes) == N_ANNOTATORS * n_pairs
    assert {k: v[0] for k, v in votes.items()} == {k: v[0] for k, v in expected.items()}
    assert {k: v[1] for k, v in votes.items()} == {k: v[1] for k, v in expected.items()}  # revisions
    assert events == posts[0]
    # and the results count each annotator's final answer once, changes included
    from seer.annotate.results import compute_results

    res = compute_results(study, n_boot=100)
    assert sum(r["cells"]["total"]["n_votes"] for r in res["rows"]) == N_ANNOTATORS * n_pairs
    assert sum(a["answered"] for a in res["annotators"]) == N_ANNOTATORS * n_pairs
    print(f"load: {N_ANNOTATORS} annotators × {n_pairs} pairs, {posts[0]} votes in {elapsed:.1f} s")


@pytest.mark.slow
def test_killed_server_loses_no_acknowledged_vote(tmp_path):
    study = _study(tmp_path, 4, n_cases=10)  # 4 annotators × 20 pairs
    tokens = _tokens(study)
    server = Server(study)
    acked: dict[tuple[int, int], str] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def annotate(name: str) -> None:
        aid, tok = tokens[name]
        rng = random.Random(name)
        for pos in range(1, 21):
            choice = rng.choice(st.CHOICES)
            try:
                status, _, _ = server.request("POST", f"/a/{tok}/{pos}", f"choice={choice}")
            except (OSError, http.client.HTTPException):
                return  # the server is gone; this vote was never acknowledged
            if status == 303:
                with lock:
                    acked[(aid, pos)] = choice
                    if len(acked) >= 30:
                        enough.set()

    threads = [threading.Thread(target=annotate, args=(n,), daemon=True) for n in tokens]
    for t in threads:
        t.start()
    try:
        assert enough.wait(timeout=60), "votes were not acknowledged in time"
    finally:
        server.kill()  # while the other threads are still sending
    for t in threads:
        t.join(timeout=60)
    with lock:
        acked_now = dict(acked)
    assert len(acked_now) >= 30
    votes, _ = _db_votes(study)
    for key, choice in acked_now.items():
        assert key in votes, f"acknowledged vote {key} lost"
        assert votes[key][0] == choice
    # and a restarted server resumes each annotator at their first open pair
    server = Server(study)
    try:
        for _name, (aid, tok) in tokens.items():
            answered = {pos for (a, pos) in votes if a == aid}
            first_open = min(set(range(1, 21)) - answered, default=None)
            status, headers, _ = server.request("GET", f"/a/{tok}/")
            assert status == 303
            want = "/done" if first_open is None else f"/{first_open}"
            assert headers["Location"].endswith(want)
    finally:
        server.kill()
