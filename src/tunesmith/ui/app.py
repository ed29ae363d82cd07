"""`tunesmith ui`: a web page over a folder of runs (FastAPI, like `serve`; a small bundled front end with
uPlot for the curves, nothing fetched from the internet).

Read-only unless `allow_train`; with an API key, every /api route wants it (Authorization: Bearer KEY, or the
cookie the page's sign-in sets). Requests naming another Host than the one served are refused, so a web page
elsewhere cannot reach the dashboard through DNS rebinding. Files are only ever read from run folders inside
RUNS_DIR (folders.run_path)."""

from __future__ import annotations

import asyncio
import hmac
import re
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import TunesmithError
from ..runs import rundir
from . import folders
from .jobs import Jobs
from .playground import Playground

COOKIE = "tunesmith_ui_key"
MAX_BODY = 1_000_000
PLOT = re.compile(r"^[A-Za-z0-9_.-]{1,120}\.png$")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LOCAL = ("127.0.0.1", "localhost", "::1", "[::1]")


def create_ui_app(
    runs_dir: str | Path,
    allow_train: bool = False,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    workdir: str | Path | None = None,
    collect: str | Path | None = None,
) -> FastAPI:
    """`collect`: the folder of a `tunesmith serve --collect`, shown on the Monitor page."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise TunesmithError(f"{root} is not a folder. Pass the folder that holds your run directories.")
    if api_key is not None and not api_key.strip():
        raise TunesmithError("The API key is empty (an unset variable?); give a real key or leave --api-key out.")
    index, playground = folders.Index(root), Playground()
    jobs = Jobs(root, Path(workdir or Path.cwd()))

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await asyncio.to_thread(jobs.close)  # runs started here stop with the dashboard (marked interrupted)

    app = FastAPI(title="tunesmith ui", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=str(resources.files("tunesmith.ui") / "static")), name="static")

    @app.exception_handler(TunesmithError)
    async def _refused(_request, exc: TunesmithError):
        return JSONResponse({"error": str(exc)}, status_code=404 if isinstance(exc, folders.NotFound) else 400)

    @app.get("/")
    async def page():
        return FileResponse(resources.files("tunesmith.ui") / "static" / "index.html", headers=HEADERS)

    @app.post("/api/login")
    async def login(request: Request):
        body = await _json(request)
        given = str(body.get("key", "")).encode()
        if api_key is None or not hmac.compare_digest(given, api_key.encode()):
            return JSONResponse({"error": "wrong key"}, status_code=401)
        reply = JSONResponse({"ok": True})
        reply.set_cookie(COOKIE, api_key, httponly=True, samesite="strict")
        return reply

    @app.get("/api/runs")
    async def runs():
        rows = await asyncio.to_thread(index.rows)
        return {
            "root": str(root),
            "allow_train": allow_train,
            "monitor": collect is not None,
            "runs": rows,
            "jobs": jobs.list(),
        }

    @app.get("/api/monitor")
    async def monitor():
        if collect is None:
            return {"collect": None, "models": []}
        from ..runs.collect import Store

        def read():
            store = Store(collect, readonly=True)
            try:
                return store.summary()
            finally:
                store.close()

        return {"collect": str(collect), "models": await asyncio.to_thread(read)}

    @app.get("/api/run")
    async def run(name: str):
        page = await asyncio.to_thread(folders.detail, root, name)
        return {**page, "allow_train": allow_train, "started_here": name in jobs.list()}

    @app.get("/api/log")
    async def live(name: str):
        """A running run's progress: its status, the curves so far, and (started here) its console."""
        path = folders.run_path(root, name)
        records = await asyncio.to_thread(folders.run_log, path)
        return {
            "status": rundir.read_status(path),
            "step": records[-1]["step"] if records else 0,
            "curves": folders.curves(records),
            "console": jobs.console(name),
        }

    @app.get("/api/console")
    async def console(name: str):
        """A run started here, before its folder exists (the child is still loading) or after it failed early."""
        return {"running": name in jobs.list(), "console": jobs.console(name), "folder": (root / name).is_dir()}

    @app.get("/api/plot")
    async def plot(name: str, file: str):
        folder = folders.run_path(root, name)
        path = folder / "plots" / file
        if not PLOT.match(file) or not path.is_file() or not path.resolve().is_relative_to(folder.resolve()):
            raise folders.NotFound(f"no plot {file!r} in {name}")
        return FileResponse(path, media_type="image/png")

    @app.get("/api/compare")
    async def compare(request: Request):
        names = request.query_params.getlist("name")
        if not 2 <= len(names) <= 8:
            raise TunesmithError("Compare 2 to 8 runs.")
        paths = [folders.run_path(root, n) for n in names]
        from ..runs.compare import compare as table

        result = await asyncio.to_thread(table, paths)
        curves = [folders.curves(await asyncio.to_thread(folders.run_log, p)) for p in paths]
        return {**result, "names": names, "curves": curves}

    @app.post("/api/playground")
    async def ask(request: Request):
        body = await _json(request)
        name = str(body.get("name", ""))
        path = folders.run_path(root, name)
        if rundir.read_status(path) != "finished":
            raise TunesmithError(f"{name} has not finished; the playground answers with finished runs.")
        return await playground.answer(name, path, body.get("text"), _int(body.get("max_tokens"), 128))

    @app.post("/api/train")
    async def train(request: Request):
        _writable(allow_train)
        body = await _json(request)
        return await asyncio.to_thread(jobs.start, str(body.get("name", "")), str(body.get("recipe", "")))

    @app.post("/api/stop")
    async def stop(request: Request):
        _writable(allow_train)
        body = await _json(request)
        return await asyncio.to_thread(jobs.stop, str(body.get("name", "")))

    app.add_middleware(Gate, api_key=api_key)
    hosts = ["*"] if host in ("0.0.0.0", "::") else sorted({host, *LOCAL})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    return app


def _writable(allow_train: bool) -> None:
    if not allow_train:
        raise TunesmithError("This dashboard is read-only; start it with --allow-train to start and stop runs.")


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


async def _json(request: Request) -> dict:
    import json

    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):  # nested past the stack raises the latter
        raise TunesmithError("The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise TunesmithError("The request body must be a JSON object.")
    return body


class Gate:
    """The key on /api routes (header or cookie), the body limit, JSON-only writes, and the page's headers."""

    def __init__(self, app, api_key: str | None):
        self.app, self.key = app, api_key.encode() if api_key is not None else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        path = scope["path"]
        refusal = None
        if path.startswith("/api/") and path != "/api/login" and self.key is not None and not self._signed(headers):
            refusal = (401, "Sign in: this dashboard wants its API key.")
        elif scope["method"] == "POST" and not headers.get(b"content-type", b"").startswith(b"application/json"):
            refusal = (415, "Send JSON (Content-Type: application/json).")  # no cross-site form posts
        size = headers.get(b"content-length", b"0").decode("latin-1")
        if refusal is None and size.isdigit() and int(size) > MAX_BODY:
            refusal = (413, f"The request body is over {MAX_BODY} bytes.")
        if refusal:
            return await JSONResponse({"error": refusal[1]}, status_code=refusal[0], headers=HEADERS)(
                scope, receive, send
            )

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                ]
            await send(message)

        await self.app(scope, _limited(receive), with_headers)

    def _signed(self, headers: dict) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and hmac.compare_digest(value.strip().strip(b'"'), self.key):
                return True
        return False


def _limited(receive):
    """A body sent in chunks without a length is cut off at the limit (the route then sees bad JSON)."""
    total = 0

    async def wrapped():
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > MAX_BODY:
                return {"type": "http.disconnect"}
        return message

    return wrapped
