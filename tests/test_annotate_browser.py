"""End to end in headless Chromium (Debian's, driven by Playwright): open a personal link, answer with clicks and
keys, reload, go back and change, resume, and check the stored results match the clicks.

Chromium comes from ``scripts/install_browser.sh`` (run by ``make install-dev``). Without it this test fails in CI
(``CI`` set) and is skipped locally. ``SEER_ANNOTATE_SCREENSHOT=docs/img/annotate.png`` also saves the screenshot
the docs show.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from seer.annotate import study as st
from seer.annotate.app import create_app
from seer.annotate.demo import write_demo_pairs
from seer.annotate.results import compute_results

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _need_browser():
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright for Python is not installed (pip install -e '.[dev]')"
    if problem is None and not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        problem = f"Chromium not found at {CHROMIUM}; install it with `sudo bash scripts/install_browser.sh`"
    if problem:
        if in_ci:
            pytest.fail(f"browser test cannot run in CI: {problem}")
        pytest.skip(problem)


@pytest.fixture
def served_study(tmp_path):
    images = "world" if os.environ.get("SEER_ANNOTATE_SCREENSHOT") else "shapes"  # the docs show world renders
    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=2, opponents=("naive", "base_cot"), images=images)
    study = st.create_study(pairs, tmp_path / "study", ["ann-1"], seed=2)
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(study), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = st.connect(study)
    token = st.annotators(conn)[0]["token"]
    conn.close()
    try:
        yield study, f"http://127.0.0.1:{server.server_port}/a/{token}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.browser
def test_annotate_in_headless_chromium(served_study):
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    study, link = served_study
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 860})
            page.set_default_timeout(20_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(link)
            expect(page).to_have_url(link + "1")
            expect(page.locator("#answered")).to_have_text("0 of 4 answered")
            expect(page.locator("#instruction")).not_to_be_empty()
            for side in ("A", "B"):  # both images really load
                page.wait_for_function(f"document.querySelector('img[alt=\"Image {side}\"]').naturalWidth > 0")
            if os.environ.get("SEER_ANNOTATE_SCREENSHOT"):
                page.screenshot(path=os.environ["SEER_ANNOTATE_SCREENSHOT"], full_page=True)

            page.click("#choose-A")  # pair 1: A by click
            expect(page).to_have_url(link + "2")
            page.wait_for_load_state("load")  # a key pressed before the page's script runs is lost
            page.keyboard.press("b")  # pair 2: B by key
            expect(page).to_have_url(link + "3")
            expect(page.locator("#answered")).to_have_text("2 of 4 answered")

            page.reload()  # nothing is lost on reload
            expect(page).to_have_url(link + "3")
            expect(page.locator("#answered")).to_have_text("2 of 4 answered")
            page.goto(link)  # the personal link resumes at the first open pair
            expect(page).to_have_url(link + "3")
            page.wait_for_load_state("load")

            page.keyboard.press("p")  # back to pair 2, which shows its answer
            expect(page).to_have_url(link + "2")
            expect(page.locator("#current-answer")).to_contain_text("Your answer: B")
            expect(page.locator("#choose-B")).to_have_class("current")
            page.wait_for_load_state("load")
            page.keyboard.press("t")  # change it to a tie → on to the next open pair
            expect(page).to_have_url(link + "3")
            page.wait_for_load_state("load")

            page.keyboard.press("ArrowRight")  # pair 3: B by arrow key
            expect(page).to_have_url(link + "4")
            page.click("#choose-tie")  # pair 4: tie by click
            expect(page).to_have_url(link + "done")
            expect(page.locator("h1")).to_have_text("All 4 pairs answered — thank you")

            page.goto(link + "4")  # change the last one by key after finishing
            page.keyboard.press("a")
            expect(page).to_have_url(link + "done")
        finally:
            browser.close()
    assert not problems, problems  # no script errors, no CSP violations

    clicks = {1: "A", 2: "tie", 3: "B", 4: "A"}
    conn = st.connect(study)
    stored = {r["position"]: r["choice"] for r in conn.execute("SELECT position, choice FROM votes")}
    sides = {
        r["position"]: (bool(r["system_left"]), r["opponent"])
        for r in conn.execute(
            "SELECT a.position, a.system_left, p.opponent FROM assignments a JOIN pairs p ON p.id = a.pair_id"
        )
    }
    revisions = {r[0]: r[1] for r in conn.execute("SELECT position, revision FROM votes")}
    conn.close()
    assert stored == clicks
    assert revisions == {1: 1, 2: 2, 3: 1, 4: 2}
    res = compute_results(study, n_boot=200)
    for row in res["rows"]:
        scores = [st.vote_score(clicks[pos], left) for pos, (left, opp) in sides.items() if opp == row["opponent"]]
        assert row["cells"]["total"]["win_ratio"] == pytest.approx(sum(scores) / len(scores))
        assert row["cells"]["total"]["n_votes"] == 2


def test_missing_chromium_fails_in_ci_and_skips_locally(monkeypatch):
    monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI: Chromium not found"):
        _need_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        _need_browser()
