"""The annotation web app (Flask): personal annotator links, one blind pair per page, an admin progress page.

URLs (``TOKEN`` is an annotator's secret, ``POS`` a 1-based position in *their* randomised order)::

    GET  /a/TOKEN/               resume: redirect to the first unanswered pair (or the done page)
    GET  /a/TOKEN/POS            the pair: instruction, prompt, image A (left) and B (right), the current answer
    POST /a/TOKEN/POS            choice=A|B|tie → committed, then 303 to the next unanswered pair
    GET  /a/TOKEN/POS/A.png      the left image (B.png the right one)
    GET  /a/TOKEN/done           all answered; links back to every pair
    GET  /admin/ADMIN_TOKEN      progress per annotator (and /admin/ADMIN_TOKEN/progress.json)

Nothing an annotator's browser receives or sends names a system or an image's source file: pairs are addressed by
position, images by side. Unknown tokens and positions (any size: past the study's length is a 404, never an
overflow) are a plain 404. Text is escaped by Jinja's autoescaping and a strict Content-Security-Policy forbids inline
scripts, so a prompt containing HTML stays text.

Limits: a request body over :data:`MAX_BODY` bytes is refused (413) before it is read; a connection that sends
nothing for :data:`READ_TIMEOUT` seconds (a body shorter than its Content-Length) is closed; no log line holds a
token (paths are logged as ``/a/<token>/…``); links on the admin page are built from ``public_url`` (default: the
bound address), never from the request's Host header.
"""

from __future__ import annotations

import hmac
import logging
import re
import sqlite3
from pathlib import Path

from flask import Flask, abort, g, jsonify, redirect, render_template, request, send_file, url_for

from seer.annotate import study as st

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the personal token is in the URL
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


MAX_BODY = 16 * 1024  # a vote is ~10 bytes of form; nothing else is posted
READ_TIMEOUT = 5.0  # seconds a connection may stay silent mid-request (a vote arrives in milliseconds)
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8765"
_TOKEN_PATH = re.compile(r"(/a/|/admin/)[^/\s?\"]+")


def redact(text: str) -> str:
    """A log line with every annotator and admin token replaced: a log is read by more people than hold links."""
    return _TOKEN_PATH.sub(r"\1<token>", text)


class _RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        return True


_REDACT = _RedactTokens()


def create_app(study_dir: str | Path, public_url: str | None = None) -> Flask:
    study_dir = Path(study_dir).resolve()
    st.connect(study_dir).close()  # fail now, with a clear message, if this is not a study
    app = Flask(__name__)
    app.config["STUDY_DIR"] = study_dir
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY
    app.config["PUBLIC_URL"] = (public_url or DEFAULT_PUBLIC_URL).rstrip("/")
    for logger in (app.logger, logging.getLogger("werkzeug")):
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = st.connect(study_dir)
        return g.db

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    @app.after_request
    def _headers(resp):
        for k, v in _SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    def annotator(token: str) -> sqlite3.Row:
        row = st.annotator_by_token(db(), token)
        if row is None:
            abort(404)
        return row

    @app.get("/")
    def index():
        return render_template("message.html", title="Image comparison", message="Open your personal link to start.")

    @app.get("/favicon.ico")
    def favicon():
        return "", 204

    @app.get("/a/<token>/")
    def resume(token: str):
        who = annotator(token)
        nxt = st.progress(db(), who["id"])["next"]
        if nxt is None:
            return redirect(url_for("done", token=token), code=303)
        return redirect(url_for("show", token=token, pos=nxt), code=303)

    @app.get("/a/<token>/<int:pos>")
    def show(token: str, pos: int):
        who = annotator(token)
        it = st.item(db(), who["id"], pos)
        if it is None:
            abort(404)
        prog = st.progress(db(), who["id"])
        return render_template("item.html", token=token, item=it, progress=prog)

    @app.post("/a/<token>/<int:pos>")
    def vote(token: str, pos: int):
        who = annotator(token)
        choice = request.form.get("choice", "")
        if choice not in st.CHOICES:
            abort(400, description=f"choice must be one of {', '.join(st.CHOICES)}")
        try:
            revision = st.record_vote(db(), who["id"], pos, choice)
        except KeyError:
            abort(404)
        nxt = st.next_unanswered(db(), who["id"], pos)
        target = url_for("done", token=token) if nxt is None else url_for("show", token=token, pos=nxt)
        if request.accept_mimetypes.best == "application/json":
            prog = st.progress(db(), who["id"])
            return jsonify(
                ok=True,
                position=pos,
                choice=choice,
                revision=revision,
                next=target,
                answered=prog["answered"],
                total=prog["total"],
            )
        return redirect(target, code=303)

    @app.get("/a/<token>/<int:pos>/<side>.png")
    def image(token: str, pos: int, side: str):
        who = annotator(token)
        it = st.item(db(), who["id"], pos)
        if it is None or side not in ("A", "B"):
            abort(404)
        return send_file(
            study_dir / it["images"][side],
            mimetype="image/png",
            etag=False,
            last_modified=None,
            download_name=f"{side}.png",
        )

    @app.get("/a/<token>/done")
    def done(token: str):
        who = annotator(token)
        rows = (
            db()
            .execute(
                "SELECT a.position, v.choice FROM assignments a LEFT JOIN votes v "
                "ON v.annotator_id = a.annotator_id AND v.position = a.position WHERE a.annotator_id = ? "
                "ORDER BY a.position",
                (who["id"],),
            )
            .fetchall()
        )
        return render_template("done.html", token=token, rows=rows, progress=st.progress(db(), who["id"]))

    def admin_check(token: str) -> None:
        expected = st.meta(db())["admin_token"]
        if not hmac.compare_digest(token.encode(), expected.encode()):
            abort(404)

    @app.get("/admin/<token>")
    def admin(token: str):
        admin_check(token)
        rows = st.admin_progress(db())
        summary = st.study_summary(db())
        # never request.host_url: a forged Host header would put the annotators' links on another site
        return render_template("admin.html", rows=rows, summary=summary, base=app.config["PUBLIC_URL"])

    @app.get("/admin/<token>/progress.json")
    def admin_json(token: str):
        admin_check(token)
        rows = [{k: r[k] for k in ("name", "answered", "total", "last")} for r in st.admin_progress(db())]
        return jsonify(annotators=rows, summary=st.study_summary(db()))

    @app.errorhandler(404)
    def _not_found(_e):
        return render_template("message.html", title="Not found", message="Nothing here."), 404

    @app.errorhandler(400)
    def _bad_request(e):
        return render_template("message.html", title="Bad request", message=e.description), 400

    @app.errorhandler(413)
    def _too_large(_e):
        return render_template("message.html", title="Request too large",
                               message=f"A request may carry at most {MAX_BODY} bytes."), 413

    @app.errorhandler(TimeoutError)
    def _timeout(_e):  # the body stopped arriving (READ_TIMEOUT)
        return render_template("message.html", title="Request timeout", message="The request was too slow."), 408

    return app


def annotator_links(study_dir: str | Path, base_url: str) -> tuple[list[tuple[str, str]], str]:
    """([(annotator name, personal link), ...], admin link) for a server at ``base_url``."""
    base_url = base_url.rstrip("/")
    conn = st.connect(study_dir)
    try:
        links = [(r["name"], f"{base_url}/a/{r['token']}/") for r in st.annotators(conn)]
        admin = f"{base_url}/admin/{st.meta(conn)['admin_token']}"
    finally:
        conn.close()
    return links, admin


def make_server(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8765, public_url: str | None = None,
                read_timeout: float = READ_TIMEOUT) -> tuple[object, str]:
    """The threaded WSGI server of the app, and the public URL its links use."""
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server as werkzeug_server

    class Handler(WSGIRequestHandler):
        timeout = read_timeout  # socketserver sets it on the connection: a silent client is dropped

        def log(self, type: str, message: str, *args: object) -> None:
            super().log(type, "%s", redact(message % args if args else message))

    app = create_app(study_dir, public_url="http://placeholder")
    server = werkzeug_server(host, port, app, threaded=True, request_handler=Handler)
    if public_url is None:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
        public_url = f"http://{shown_host}:{server.server_port}"
    app.config["PUBLIC_URL"] = public_url.rstrip("/")
    return server, app.config["PUBLIC_URL"]


def serve(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8765, quiet: bool = True,
          public_url: str | None = None) -> None:
    """Run the app on a threaded WSGI server until interrupted. Every acknowledged vote is already committed, so
    stopping (or killing) the server at any moment loses none."""
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server, public_url = make_server(study_dir, host, port, public_url)
    links, admin = annotator_links(study_dir, public_url)
    print(f"serving study {Path(study_dir)} on http://{host}:{server.server_port} (Ctrl-C to stop)")
    print("annotator links (send each person only their own):")
    for name, link in links:
        print(f"  {name}: {link}")
    print(f"admin (progress): {admin}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
