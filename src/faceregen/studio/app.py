"""The studio's HTTP API and page, a Starlette app over one :class:`~.service.Studio`.

    GET  /                          the page (static/: index.html, its scripts and stylesheet)
    GET  /api/health                model name, image size, device, classes, limits
    GET  /api/gallery               the gallery faces (ids and their image and mask URLs)
    GET  /api/gallery/{id}/image.png, /api/gallery/{id}/mask.png (an index PNG)
    POST /api/regen                 multipart mask, ref, [ref_mask], [edit_from, parts],
                                    [region_ref_<i>, region_ref_<i>_regions,
                                    region_ref_<i>_mask] for i = 1..3 (a regional model) -> PNG
    POST /api/compare               the same fields -> colour mask | reference | face strip
    POST /api/mask                  multipart mask, [edit_from, parts] -> index PNG
    POST /api/parse                 multipart ref -> its predicted index PNG (face parser)

Every error is JSON, ``{"error": "..."}``, with a 4xx status for what the client can fix.
The model work runs in a worker thread (the event loop stays free to answer the health check)
under the studio's lock.
"""

from __future__ import annotations

import logging
import time
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faceregen.errors import FaceregenError
from faceregen.studio.gallery import encode_png
from faceregen.studio.service import (
    MAX_REGION_REFERENCES,
    RegionUpload,
    Studio,
    StudioError,
    Uploads,
)

log = logging.getLogger("faceregen.studio")

STATIC_FILES = {  # URL path -> (file in static/, media type); nothing else is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/indexpng.js": ("indexpng.js", "text/javascript; charset=utf-8"),
    "/mask.js": ("mask.js", "text/javascript; charset=utf-8"),
    "/studio.js": ("studio.js", "text/javascript; charset=utf-8"),
    "/studio.css": ("studio.css", "text/css; charset=utf-8"),
}
FILE_FIELDS = ("mask", "ref", "ref_mask", "edit_from")
MAX_FORM_PARTS = 16
NO_STORE = {"Cache-Control": "no-store"}


class UploadTooLarge(StudioError):
    def __init__(self, limit: int):
        super().__init__(f"upload: the request body is larger than the studio's limit of "
                         f"{limit} bytes", status=413)


class UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes``, declared or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await error_response("upload: malformed Content-Length", 400)(
                    scope, receive, send)
            if int(declared) > self.max_bytes:
                return await error_response(str(UploadTooLarge(self.max_bytes)), 413)(
                    scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def png_response(image, started: float | None = None) -> Response:
    """A PNG answer; ``started`` adds the server's time for the request, encoding included."""
    content = encode_png(image)
    headers = dict(NO_STORE)
    if started is not None:
        headers["X-Regen-Seconds"] = f"{time.perf_counter() - started:.4f}"
    return Response(content, media_type="image/png", headers=headers)


async def read_uploads(request: Request, required: tuple[str, ...]) -> Uploads:
    """The multipart fields of a request: files as bytes, ``parts`` as text."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise StudioError("send the fields as multipart/form-data (curl -F mask=@mask.png ...)")
    found: dict[str, bytes | str | None] = dict.fromkeys((*FILE_FIELDS, "parts"))
    regions = []
    async with request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS) as form:
        for name in FILE_FIELDS:
            found[name] = await read_file_field(form, name)
        found["parts"] = read_text_field(form, "parts", "mouth,u_lip,l_lip")
        for index in range(1, MAX_REGION_REFERENCES + 1):
            name = f"region_ref_{index}"
            photo = await read_file_field(form, name)
            names = read_text_field(form, f"{name}_regions", "hair or skin,nose")
            if photo is None and names is None:
                continue
            if photo is None or names is None:
                raise StudioError(f"{name}: send the photo ({name}) and the regions it gives "
                                  f"({name}_regions, e.g. hair) together")
            regions.append(RegionUpload(name, names, photo,
                                        await read_file_field(form, f"{name}_mask")))
    for name in required:
        if found[name] is None:
            raise StudioError(f"{name}: missing; upload it as a multipart file field")
    return Uploads(**found, region_refs=tuple(regions))


async def read_file_field(form, name: str) -> bytes | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, UploadFile):
        raise StudioError(f"{name}: expected a file upload (curl -F {name}=@file.png)")
    return await value.read()


def read_text_field(form, name: str, example: str) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise StudioError(f"{name}: expected text such as {example}, not a file")
    return value if value else None


def studio_of(request: Request) -> Studio:
    return request.app.state.studio


async def page(request: Request) -> Response:
    name, media_type = STATIC_FILES[request.url.path]
    return Response(request.app.state.static[name], media_type=media_type,
                    headers={"Cache-Control": "no-cache"})


async def health(request: Request) -> JSONResponse:
    return JSONResponse(studio_of(request).health(), headers=NO_STORE)


async def gallery(request: Request) -> JSONResponse:
    faces = studio_of(request).gallery
    return JSONResponse({
        "message": faces.message,
        "faces": [{"id": face.face_id, "split": face.split, "width": face.label.shape[1],
                   "height": face.label.shape[0],
                   "image": f"/api/gallery/{face.face_id}/image.png",
                   "mask": f"/api/gallery/{face.face_id}/mask.png"}
                  for face in faces.faces.values()]})


def gallery_face(request: Request):
    face_id = request.path_params["face_id"]  # the route's int convertor: digits only
    face = studio_of(request).gallery.faces.get(face_id)
    if face is None:
        raise StudioError(f"gallery face {face_id}: not in the gallery (GET /api/gallery "
                          "lists its ids)", status=404)
    return face


async def gallery_image(request: Request) -> Response:
    return Response(gallery_face(request).photo_png, media_type="image/png")


async def gallery_mask(request: Request) -> Response:
    return Response(gallery_face(request).label_png, media_type="image/png")


async def regen(request: Request) -> Response:
    started = time.perf_counter()
    uploads = await read_uploads(request, ("mask",))
    face, _, _ = await run_in_threadpool(studio_of(request).regenerate, uploads)
    return png_response(face, started)


async def compare(request: Request) -> Response:
    uploads = await read_uploads(request, ("mask",))
    return png_response(await run_in_threadpool(studio_of(request).compare, uploads))


async def mask(request: Request) -> Response:
    uploads = await read_uploads(request, ("mask",))
    label = await run_in_threadpool(studio_of(request).mask, uploads.mask, uploads.edit_from,
                                    uploads.parts)
    return png_response(label)


async def parse(request: Request) -> Response:
    uploads = await read_uploads(request, ("ref",))
    return png_response(await run_in_threadpool(studio_of(request).parse, uploads.ref))


async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
    return error_response(str(exc), exc.status)


async def user_error(request: Request, exc: FaceregenError) -> JSONResponse:
    return error_response(str(exc), 400)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(str(exc.detail), exc.status_code)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's doing: logged with its traceback; the server goes on."""
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(f"internal error ({type(exc).__name__}); see the server's log", 500)


def read_static() -> dict[str, bytes]:
    folder = resources.files("faceregen.studio") / "static"
    return {name: (folder / name).read_bytes() for name, _ in STATIC_FILES.values()}


def create_app(studio: Studio) -> Starlette:
    routes = [Route(path, page) for path in STATIC_FILES]
    routes += [
        Route("/api/health", health),
        Route("/api/gallery", gallery),
        Route("/api/gallery/{face_id:int}/image.png", gallery_image),
        Route("/api/gallery/{face_id:int}/mask.png", gallery_mask),
        Route("/api/regen", regen, methods=["POST"]),
        Route("/api/compare", compare, methods=["POST"]),
        Route("/api/mask", mask, methods=["POST"]),
        Route("/api/parse", parse, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(UploadLimit, max_bytes=studio.limits.max_upload_bytes)],
        exception_handlers={StudioError: studio_error, FaceregenError: user_error,
                            HTTPException: http_error, Exception: internal_error})
    app.state.studio = studio
    app.state.static = read_static()
    return app
