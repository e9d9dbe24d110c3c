"""The annotation app through Flask's test client: resume, change an answer, one current answer per annotator and
pair, blinding of every response and request, personal links, the admin token, escaping."""

from __future__ import annotations

import json
import re
import threading

import pytest

from seer.annotate import study as st
from seer.annotate.app import create_app
from seer.annotate.demo import write_demo_pairs

SYSTEM, OPPONENTS = "zebrasys", ("quokkabase", "narwhalnet")


@pytest.fixture
def study(tmp_path):
    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=3, system=SYSTEM, opponents=OPPONENTS)  # 6 pairs
    return st.create_study(pairs, tmp_path / "study", ["ann-1", "ann-2"], seed=1)


@pytest.fixture
def app(study):
    app = create_app(study)
    app.testing = True
    return app


def _tokens(study):
    conn = st.connect(study)
    try:
        return [r["token"] for r in st.annotators(conn)], st.meta(conn)["admin_token"]
    finally:
        conn.close()


def _current(study, annotator_id=None):
    conn = st.connect(study)
    try:
        q = "SELECT annotator_id, position, choice, revision FROM votes"
        rows = conn.execute(q + (" WHERE annotator_id = ?" if annotator_id else ""),
                            (annotator_id,) if annotator_id else ()).fetchall()  # fmt: skip
        return [tuple(r) for r in rows]
    finally:
        conn.close()


def test_resume_answer_and_done(app, study):
    (tok, _), _ = _tokens(study)
    c = app.test_client()
    r = c.get(f"/a/{tok}/")
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/a/{tok}/1")
    page = c.get(f"/a/{tok}/1").get_data(as_text=True)
    assert 'Pair <strong id="position">1</strong> of 6' in page and "0 of 6 answered" in page
    r = c.post(f"/a/{tok}/1", data={"choice": "A"})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/a/{tok}/2")
    c.post(f"/a/{tok}/2", data={"choice": "tie"})
    # a new session (another browser, a reload days later) resumes at the first unanswered pair
    r = app.test_client().get(f"/a/{tok}/")
    assert r.headers["Location"].endswith(f"/a/{tok}/3")
    page = c.get(f"/a/{tok}/1").get_data(as_text=True)
    assert "Your answer: <strong>A</strong>" in page and "2 of 6 answered" in page
    # skipping ahead then answering wraps round to the earliest still-open pair
    r = c.post(f"/a/{tok}/6", data={"choice": "B"})
    assert r.headers["Location"].endswith(f"/a/{tok}/3")
    for pos in (3, 4):
        c.post(f"/a/{tok}/{pos}", data={"choice": "B"})
    r = c.post(f"/a/{tok}/5", data={"choice": "A"})
    assert r.headers["Location"].endswith(f"/a/{tok}/done")
    assert c.get(f"/a/{tok}/").headers["Location"].endswith(f"/a/{tok}/done")
    done = c.get(f"/a/{tok}/done").get_data(as_text=True)
    assert "All 6 pairs answered" in done
    assert sorted((p, ch) for _, p, ch, _ in _current(study, 1)) == [
        (1, "A"), (2, "tie"), (3, "B"), (4, "B"), (5, "A"), (6, "B")
    ]  # fmt: skip


def test_change_answer_keeps_one_current_answer(app, study):
    (tok, _), _ = _tokens(study)
    c = app.test_client()
    for choice in ("A", "B", "tie", "B"):
        assert c.post(f"/a/{tok}/2", data={"choice": choice}).status_code == 303
    assert _current(study) == [(1, 2, "B", 4)]
    conn = st.connect(study)
    events = [r[0] for r in conn.execute("SELECT choice FROM vote_events ORDER BY id")]
    conn.close()
    assert events == ["A", "B", "tie", "B"]
    page = c.get(f"/a/{tok}/2").get_data(as_text=True)
    assert 'value="B" id="choose-B"\n          class="current"' in page


def test_json_acknowledgement(app, study):
    (tok, _), _ = _tokens(study)
    r = app.test_client().post(f"/a/{tok}/3", data={"choice": "tie"}, headers={"Accept": "application/json"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["ok"] and body["revision"] == 1 and body["answered"] == 1 and body["total"] == 6
    assert body["next"].endswith(f"/a/{tok}/4")  # the next open pair after this one


@pytest.mark.parametrize("choice", ["", "C", "a", "left", "system"])
def test_bad_choice_rejected(app, study, choice):
    (tok, _), _ = _tokens(study)
    r = app.test_client().post(f"/a/{tok}/1", data={"choice": choice})
    assert r.status_code == 400
    assert _current(study) == []


def test_personal_links_and_guessing(app, study):
    (tok1, tok2), admin = _tokens(study)
    c = app.test_client()
    c.post(f"/a/{tok1}/1", data={"choice": "A"})
    # the other annotator sees none of it
    assert c.get(f"/a/{tok2}/").headers["Location"].endswith(f"/a/{tok2}/1")
    assert "Not answered yet" in c.get(f"/a/{tok2}/1").get_data(as_text=True)
    for url in (
        "/a/1/", "/a/1/1", "/a/ann-1/1", f"/a/{tok1[:-1]}x/1", f"/a/{tok1}/0", f"/a/{tok1}/7", f"/a/{tok1}/1/C.png",
        f"/a/{tok1}/99/A.png", f"/a/{admin}/", "/admin/", "/admin/x", f"/admin/{tok1}", f"/admin/{admin[:-1]}",
        "/study.sqlite", "/images/", "/static/../study.sqlite",
    ):  # fmt: skip
        assert c.get(url).status_code == 404, url
    assert c.post(f"/a/{tok2[:-2]}zz/1", data={"choice": "A"}).status_code == 404
    assert c.post(f"/a/{tok1}/7", data={"choice": "A"}).status_code == 404
    assert _current(study) == [(1, 1, "A", 1)]


def test_admin_page_needs_token(app, study):
    (tok1, _), admin = _tokens(study)
    c = app.test_client()
    c.post(f"/a/{tok1}/1", data={"choice": "A"})
    page = c.get(f"/admin/{admin}").get_data(as_text=True)
    assert "ann-1" in page and "1 / 6" in page and "0 / 6" in page
    data = c.get(f"/admin/{admin}/progress.json").get_json()
    assert [(a["name"], a["answered"], a["total"]) for a in data["annotators"]] == [("ann-1", 1, 6), ("ann-2", 0, 6)]
    assert c.get("/admin/wrong/progress.json").status_code == 404


def _crawl(app, tok):
    """Every request an annotator's browser makes for a full pass (pages, images, static files, votes, done page),
    with the responses' bodies and headers."""
    c = app.test_client()
    seen = []  # (method, url, request body, response status, headers, body)

    def get(url):
        r = c.get(url)
        seen.append(("GET", url, b"", r.status_code, str(r.headers), r.data))
        return r

    r = get(f"/a/{tok}/")
    url = r.headers["Location"]
    while "/done" not in url:
        page = get(url).get_data(as_text=True)
        for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
            if ref.startswith("/"):
                get(ref)
        form = {"choice": "tie"}
        r = c.post(url, data=form)
        seen.append(("POST", url, json.dumps(form).encode(), r.status_code, str(r.headers), r.data))
        url = r.headers["Location"]
    get(url)
    return seen


def test_no_system_names_in_any_page_or_request(app, study):
    (tok, _), _ = _tokens(study)
    seen = _crawl(app, tok)
    assert sum(1 for s in seen if s[0] == "POST") == 6
    assert sum(1 for s in seen if s[1].endswith(".png")) == 12
    secret = [SYSTEM, *OPPONENTS, "test-0", "pairs.jsonl", "image_system", "image_opponent", "case_id"]
    for method, url, req, status, headers, body in seen:
        assert status in (200, 303), (method, url, status)
        blob = (url + headers).encode() + req + body
        for word in secret:
            assert word.encode() not in blob.lower(), (word, method, url)


def test_text_is_escaped(tmp_path):
    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=1, opponents=("x",))
    rec = json.loads(pairs.read_text())
    rec["instruction"] = 'Make it <b>bold</b> & "quoted" </dd><script>alert(1)</script>'
    rec["prompt"] = "<img src=x onerror=alert(2)>"
    pairs.write_text(json.dumps(rec) + "\n")
    study = st.create_study(pairs, tmp_path / "study", ["a"])
    (tok,), _ = _tokens(study)
    r = create_app(study).test_client().get(f"/a/{tok}/1")
    page = r.get_data(as_text=True)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&amp; &#34;quoted&#34;" in page
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["Referrer-Policy"] == "no-referrer"


def test_concurrent_votes_on_one_pair_leave_one_answer(app, study):
    (tok, _), _ = _tokens(study)
    choices = ["A", "B", "tie"] * 7  # 21 racing submissions
    barrier = threading.Barrier(len(choices))
    codes = []

    def post(choice):
        c = app.test_client()
        barrier.wait(timeout=30)
        codes.append(c.post(f"/a/{tok}/4", data={"choice": choice}).status_code)

    threads = [threading.Thread(target=post, args=(ch,)) for ch in choices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert codes == [303] * len(choices)
    rows = _current(study)
    assert len(rows) == 1 and rows[0][:2] == (1, 4) and rows[0][3] == len(choices)
    conn = st.connect(study)
    last = conn.execute("SELECT choice FROM vote_events ORDER BY id DESC LIMIT 1").fetchone()[0]
    n_events = conn.execute("SELECT COUNT(*) FROM vote_events").fetchone()[0]
    conn.close()
    assert n_events == len(choices) and rows[0][2] == last  # the current answer is the last one committed


def test_not_a_study(tmp_path):
    from seer.data import DataError

    with pytest.raises(DataError, match="not a study"):
        create_app(tmp_path)
