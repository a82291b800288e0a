"""The FastAPI app of `chattracker serve`: one HTML page and a small JSON API over ``SessionManager``.

Every refusal is a 4xx with ``{"error": "<one sentence>"}``, which the page shows as it is."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources
from typing import Any, AsyncIterator
from urllib.parse import unquote

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from chattracker.errors import ChatTrackerError
from chattracker.web.runner import Run
from chattracker.web.sessions import Limits, Refused, Session, SessionManager, encode_jpeg, upload_name

logger = logging.getLogger(__name__)

DEFAULT_TRACKER = "nanotrack_v2"
MAX_TRUTH_BYTES = 2 * 2**20
MAX_TEXT = 300
DRAIN_BYTES = 64 * 2**20  # an oversized upload is read this far past the limit so the browser sees the 413


def usable_trackers() -> list[str]:
    """Registered trackers that build without parameters (the generic pytracking adapter needs code)."""
    from chattracker_trackers.base import available_trackers, build_tracker

    names = []
    for name in available_trackers():
        try:
            build_tracker(name)
        except Exception:  # missing weights or required parameters: not offered on the page
            continue
        names.append(name)
    return names


def create_app(limits: Limits | None = None) -> FastAPI:
    manager = SessionManager(limits)
    trackers = usable_trackers()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def sweep() -> None:
            while True:
                await asyncio.sleep(60)
                await run_in_threadpool(manager.sweep)

        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()
            await run_in_threadpool(manager.close)

    app = FastAPI(title="ChatTracker", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.manager = manager

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("request %s failed", request.url.path)
        return JSONResponse({"error": f"the server failed: {type(error).__name__}: {error}"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("chattracker.web").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {"trackers": trackers, "default_tracker": DEFAULT_TRACKER if DEFAULT_TRACKER in trackers else trackers[0],
                "max_upload_bytes": manager.limits.max_upload_bytes, "max_seconds": manager.limits.max_seconds}

    @app.post("/api/sessions/upload")
    async def upload(request: Request) -> dict[str, Any]:
        limit = manager.limits.max_upload_bytes
        name, suffix = upload_name(unquote(request.headers.get("x-filename", "video")))
        too_big = Refused(413, f"{name!r} is larger than the upload limit of {limit / 2**20:.4g} MB (--max-upload-mb)")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            await drain(request)
            raise too_big
        session = manager.create()
        try:
            path, size = session.folder / f"upload{suffix}", 0
            with path.open("wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        break
                    out.write(chunk)
            if size > limit:
                await drain(request)
                raise too_big
            if size == 0:
                raise Refused(400, "the upload is empty: choose a video file")
            await run_in_threadpool(manager.open_upload, session, path, name)
        except BaseException:
            manager.remove(session.id)
            raise
        return session.describe()

    async def drain(request: Request) -> None:
        read = 0
        with contextlib.suppress(Exception):
            async for chunk in request.stream():
                read += len(chunk)
                if read > DRAIN_BYTES:
                    break

    @app.post("/api/sessions/stream")
    async def stream(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise Refused(400, "give a stream URL (http://, https:// or rtsp://)")
        from chattracker.web.sessions import check_stream_url

        check_stream_url(url.strip())  # before a session folder exists
        session = manager.create()
        try:
            await run_in_threadpool(manager.open_stream, session, url)
        except BaseException:
            manager.remove(session.id)
            raise
        return session.describe()

    @app.get("/api/sessions/{session_id}/first.jpg")
    def first_frame(session_id: str) -> Response:
        session = manager.get(session_id)
        if session.first_frame is None:
            raise Refused(409, "this session has no video yet")
        import cv2

        data = encode_jpeg(cv2.cvtColor(session.first_frame, cv2.COLOR_RGB2BGR), quality=92)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/sessions/{session_id}/truth")
    async def truth(session_id: str, file: UploadFile = File(...)) -> dict[str, Any]:
        session = manager.get(session_id)
        data = await file.read(MAX_TRUTH_BYTES + 1)
        if len(data) > MAX_TRUTH_BYTES:
            raise Refused(413, f"the ground-truth file is larger than {MAX_TRUTH_BYTES // 2**20} MB")
        rows = await run_in_threadpool(manager.set_truth, session, data)
        if session.num_frames is not None and not session.is_stream and rows < session.num_frames:
            session.truth = None
            raise Refused(400, f"the ground-truth file has {rows} rows but the video has {session.num_frames} frames")
        return {"rows": rows}

    @app.post("/api/sessions/{session_id}/find")
    async def find(session_id: str, request: Request) -> dict[str, Any]:
        session = manager.get(session_id)
        text = sentence(await json_body(request), required=True)
        if session.first_frame is None:
            raise Refused(409, "this session has no video yet")
        return await run_in_threadpool(language_start, session, text)

    @app.post("/api/sessions/{session_id}/run", status_code=202)
    async def run(session_id: str, request: Request) -> dict[str, Any]:
        session = manager.get(session_id)
        body = await json_body(request)
        if session.first_frame is None:
            raise Refused(409, "this session has no video yet")
        box = session.check_box(body.get("box"))
        name = body.get("tracker") or DEFAULT_TRACKER
        if name not in trackers:
            raise Refused(400, f"unknown tracker {name!r}; choose one of {', '.join(trackers)}")
        text = sentence(body, required=False)
        started = await run_in_threadpool(start_run, session, name, bool(body.get("wrap", True)), box, text)
        return {"state": started.state}

    def start_run(session: Session, name: str, wrap: bool, box: Any, text: str | None) -> Run:
        with manager.starting:
            if session.run is not None and session.run.running:  # type: ignore[attr-defined]
                raise Refused(409, "this session is running already; stop it first")
            if manager.running() >= manager.limits.max_running:
                raise Refused(429, f"the server is busy: {manager.limits.max_running} run(s) going on at once is its "
                                   "limit (--max-running); try again when one ends")
            run = Run(session, manager.limits, name, wrap, box, text)
            session.run = run
            run.start()
            return run

    @app.post("/api/sessions/{session_id}/stop")
    def stop(session_id: str) -> dict[str, Any]:
        run = current_run(manager.get(session_id))
        run.stop()
        return {"state": run.state}

    @app.get("/api/sessions/{session_id}/status")
    def status(session_id: str) -> dict[str, Any]:
        return current_run(manager.get(session_id)).status()

    @app.get("/api/sessions/{session_id}/events")
    async def events(session_id: str, request: Request) -> StreamingResponse:
        run = current_run(manager.get(session_id))

        async def messages() -> AsyncIterator[str]:
            seen = None
            while not manager.closing:
                running, latest = run.running, run.latest
                if latest is not None and latest is not seen:
                    seen = latest
                    yield f"event: frame\ndata: {json.dumps(latest)}\n\n"
                if not running:
                    yield f"event: end\ndata: {json.dumps(run.status())}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.03)

        return StreamingResponse(messages(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/sessions/{session_id}/files/{name}")
    def download(session_id: str, name: str) -> FileResponse:
        path = current_run(manager.get(session_id)).file(name)
        return FileResponse(path, filename=name)

    @app.post("/api/sessions/{session_id}/close")
    def close(session_id: str) -> dict[str, Any]:
        manager.remove(session_id)
        return {"closed": True}

    return app


def current_run(session: Session) -> Run:
    if session.run is None:
        raise Refused(409, "nothing has run in this session yet")
    return session.run  # type: ignore[return-value]


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


def sentence(body: dict[str, Any], required: bool) -> str | None:
    text = body.get("text")
    if text is None or (isinstance(text, str) and not text.strip()):
        if required:
            raise Refused(400, "type a sentence that says which object to track")
        return None
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise Refused(400, f"the sentence must be text of at most {MAX_TEXT} characters")
    return text.strip()


def language_start(session: Session, text: str) -> dict[str, Any]:
    """The target of ``text`` on the first frame (``language_start.find_target``), as the page's box."""
    from chattracker.language_start import build_language_start, find_target

    try:
        config, grounder, describer = build_language_start()
        start = find_target(session.first_frame, text, grounder, config, describer)
    except ChatTrackerError as error:  # the CLI's advice, in the page's words
        raise Refused(422, str(error).replace("give --box", "draw the box")) from None
    return {"box": [round(v, 1) for v in start.target.box.to_list()], "lines": start.lines()}
