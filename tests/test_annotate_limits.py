"""Issue 25 items 9-14: the annotation server's limits and `seer annotate create`'s checks. Each test reproduces
the failing case the issue reports."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import pytest

from seer.annotate import study as st
from seer.annotate.app import MAX_BODY, create_app, make_server, redact
from seer.annotate.demo import write_demo_pairs
from seer.annotate.results import compute_results, to_markdown
from seer.cli import main
from seer.data import DataError


@pytest.fixture
def pairs(tmp_path):
    return write_demo_pairs(tmp_path / "pairs", n_cases=2, images="shapes")  # 4 pairs


@pytest.fixture
def study(pairs, tmp_path):
    return st.create_study(pairs, tmp_path / "study", ["ann-1"], seed=1)


def _tokens(study):
    conn = st.connect(study)
    try:
        return [r["token"] for r in st.annotators(conn)], st.meta(conn)["admin_token"]
    finally:
        conn.close()


def _client(study, **kw):
    app = create_app(study, **kw)
    app.testing = False  # errors go through the handlers and the logger, as in production
    return app, app.test_client()


# -- 9. positions past 2^63 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pos", [5, 2**31, 2**63 - 1, 2**63, 2**64 + 7, 10**40])
def test_any_position_past_the_study_is_a_404(study, caplog, pos):
    (tok,), _ = _tokens(study)
    _, c = _client(study)
    with caplog.at_level(logging.DEBUG):
        assert c.get(f"/a/{tok}/{pos}").status_code == 404
        assert c.get(f"/a/{tok}/{pos}/A.png").status_code == 404
        assert c.post(f"/a/{tok}/{pos}", data={"choice": "A"}).status_code == 404
    assert tok not in caplog.text


# -- 10. request size and slow bodies -----------------------------------------------------------------------------
def test_a_request_over_the_size_limit_is_refused(study):
    (tok,), _ = _tokens(study)
    _, c = _client(study)
    r = c.post(f"/a/{tok}/1", data={"choice": "A", "pad": "x" * (MAX_BODY + 1)})
    assert r.status_code == 413
    assert st.connect(study).execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0
    assert c.post(f"/a/{tok}/1", data={"choice": "A"}).status_code == 303


def _serve(study, **kw):
    server, url = make_server(study, "127.0.0.1", 0, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url


def test_a_body_shorter_than_its_content_length_is_dropped_after_the_read_timeout(study):
    (tok,), _ = _tokens(study)
    server, _ = _serve(study, read_timeout=1.0)
    try:
        s = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
        s.sendall(f"POST /a/{tok}/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  "Content-Length: 100\r\n\r\nchoice=A".encode())
        t0 = time.monotonic()
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        waited = time.monotonic() - t0
        s.close()
        assert waited < 5, waited  # the default was 15 s and more
        # werkzeug answers a body cut short by the timeout as a client error (400), our handler as 408
        assert reply == b"" or reply.split(b"\r\n")[0].split()[1] in (b"400", b"408")
        s = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
        s.sendall(f"POST /a/{tok}/1 HTTP/1.1\r\nHost: x\r\nContent-Length: {10**9}\r\n\r\n".encode())
        assert b" 413 " in s.recv(4096).split(b"\r\n")[0]  # refused from the header, before reading the body
        s.close()
    finally:
        server.shutdown()
    assert st.connect(study).execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0


# -- 11. create: surrogates, encodings, huge images ---------------------------------------------------------------
def _edit(pairs, line, **fields):
    lines = pairs.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[line - 1])
    rec.update(fields)
    lines[line - 1] = json.dumps(rec)  # ensure_ascii: a lone surrogate is written as \ud800, as an attacker would
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_lone_surrogate_is_a_clear_error(pairs, tmp_path, capsys):
    _edit(pairs, 2, prompt="\ud800 x")
    assert main(["annotate", "create", "--pairs", str(pairs), "--out", str(tmp_path / "s")]) == 2
    assert "pairs.jsonl:2: field 'prompt' holds a lone surrogate" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_pairs_file_that_is_not_utf8_names_file_and_line(pairs, tmp_path, capsys):
    raw = pairs.read_bytes().splitlines(keepends=True)
    raw[2] = raw[2].replace(b'"prompt": "', b'"prompt": "\xff', 1)
    pairs.write_bytes(b"".join(raw))
    assert main(["annotate", "create", "--pairs", str(pairs), "--out", str(tmp_path / "s")]) == 2
    assert "pairs.jsonl:3: byte 0xff" in capsys.readouterr().err


def test_a_huge_image_is_a_clear_error(pairs, tmp_path, capsys):
    from PIL import Image

    rec = json.loads(pairs.read_text().splitlines()[0])
    Image.new("1", (14000, 14000)).save(pairs.parent / rec["image_system"])  # ~100 KB file, 196 M pixels
    assert main(["annotate", "create", "--pairs", str(pairs), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "pairs.jsonl:1: field 'image_system'" in err and "is too large" in err and "the limit is" in err
    Image.new("1", (5000, 5000)).save(pairs.parent / rec["image_system"])  # under PIL's limit, over ours
    with pytest.raises(DataError, match="5000x5000 = 25,000,000 pixels; the limit is 16,777,216"):
        st.create_study(pairs, tmp_path / "s", ["a"])


# -- 12. results.md escapes what it quotes --------------------------------------------------------------------------
def test_results_markdown_escapes_names(tmp_path):
    pairs = write_demo_pairs(tmp_path / "p", n_cases=2, images="shapes")
    names = {}
    for i, line in enumerate(pairs.read_text().splitlines(), 1):  # names no file name could hold
        rec = json.loads(line)
        names.setdefault(rec["opponent"], "<script>alert(1)</script>" if not names else "b")
        _edit(pairs, i, system="sys|tem\n# x", opponent=names[rec["opponent"]])
    study = st.create_study(pairs, tmp_path / "s", ["eve | <b>"], seed=0)
    md = to_markdown(compute_results(study, n_boot=10))
    assert "<script>" not in md and "<b>" not in md and "\n# x" not in md
    assert "&lt;script&gt;" in md and "sys\\|tem # x" in md and "eve \\| &lt;b&gt;" in md
    for line in md.splitlines():  # every table row keeps its column count
        if line.startswith("| vs.") or line.startswith("| sys"):
            assert line.count(" | ") - line.count("\\|") >= 1


# -- 13. image paths stay inside the pairs file's folder ----------------------------------------------------------
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_image_paths_outside_the_folder_are_refused(pairs, tmp_path, how):
    outside = tmp_path / "outside"
    outside.mkdir()
    rec = json.loads(pairs.read_text().splitlines()[0])
    (outside / "x.png").write_bytes((pairs.parent / rec["image_system"]).read_bytes())
    if how == "dotdot":
        path = "../outside/x.png"
    elif how == "absolute":
        path = str(outside / "x.png")
    else:
        os.symlink(outside / "x.png", pairs.parent / "link.png")
        path = "link.png"
    _edit(pairs, 1, image_system=path)
    with pytest.raises(DataError, match=r"pairs.jsonl:1: field 'image_system': .* is outside the pairs file's folder"):
        st.create_study(pairs, tmp_path / "s", ["a"])
    assert st.create_study(pairs, tmp_path / "s", ["a"], allow_outside=True).is_dir()


def test_one_image_under_two_spellings_is_the_same_image(pairs, tmp_path):
    rec = json.loads(pairs.read_text().splitlines()[0])
    folder, name = rec["image_system"].rsplit("/", 1)
    _edit(pairs, 1, image_opponent=f"{folder}/./{name}")
    with pytest.raises(DataError, match="pairs.jsonl:1: 'image_system' .* are the same file"):
        st.create_study(pairs, tmp_path / "s", ["a"])


# -- 14. links from --public-url, no token in any log line ----------------------------------------------------------
def test_admin_links_ignore_the_host_header(study):
    (tok,), admin = _tokens(study)
    _, c = _client(study, public_url="https://votes.example.org/")
    page = c.get(f"/admin/{admin}", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert "evil.example" not in page
    assert f"https://votes.example.org/a/{tok}/" in page


def test_verbose_server_logs_no_token(study, caplog):
    import http.client

    (tok,), admin = _tokens(study)
    server, url = _serve(study)
    try:
        with caplog.at_level(logging.DEBUG, logger="werkzeug"):
            for path in (f"/admin/{admin}", f"/a/{tok}/1", f"/a/{tok}/{2**64}", f"/a/{tok}/1/A.png"):
                conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
                conn.request("GET", path)
                conn.getresponse().read()
                conn.close()
    finally:
        server.shutdown()
    assert url.startswith("http://127.0.0.1:")
    assert "/a/<token>/1" in caplog.text and "/admin/<token>" in caplog.text
    assert tok not in caplog.text and admin not in caplog.text
    assert redact(f"GET /a/{tok}/3/B.png and /admin/{admin}/progress.json") == (
        "GET /a/<token>/3/B.png and /admin/<token>/progress.json")


def test_an_unexpected_error_is_logged_without_the_token(study, caplog, monkeypatch):
    (tok,), _ = _tokens(study)
    app, c = _client(study)

    def broken(*a, **k):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(st, "item", broken)
    with caplog.at_level(logging.ERROR):
        assert c.get(f"/a/{tok}/1").status_code == 500
    assert "Exception on /a/<token>/1 [GET]" in caplog.text and tok not in caplog.text
