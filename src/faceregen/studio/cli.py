"""`faceregen studio`: load a checkpoint once and serve the studio on a local port."""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from faceregen.checkpoint import find_latest_checkpoint
from faceregen.errors import FaceregenError
from faceregen.studio.gallery import DEFAULT_GALLERY_SIZE, load_gallery
from faceregen.studio.service import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, Limits, Studio

DEFAULT_HOST = "127.0.0.1"  # this machine only: the studio has no accounts
DEFAULT_PORT = 7860


def build_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceregen studio",
        description="Paint a label map in the browser and watch the face follow: a local web "
                    "server over one checkpoint. See docs/studio.md.")
    parser.add_argument("--ckpt", type=Path,
                        help="checkpoint (.pt) or export (.safetensors); default: newest "
                             "last.pt under $FACEREGEN_RUNS (default checkpoints/)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--parser", type=Path,
                        help="face parser for predicting reference masks (default: "
                             "<data root>/evaluators/parser.pt of the checkpoint's config)")
    parser.add_argument("--exact", action="store_true",
                        help="compute pixel for pixel what `faceregen regen` computes; by default "
                             "the CPU runs the networks in channels_last, about a quarter faster, "
                             "which moves ~0.1%% of pixel values by one (float rounding)")
    parser.add_argument("--bf16", action="store_true",
                        help="run the networks in bfloat16 autocast: about twice as fast on CPUs "
                             "with bf16 instructions (and GPUs), with visible rounding")
    parser.add_argument("--gallery", type=int, default=DEFAULT_GALLERY_SIZE,
                        help=f"faces of the checkpoint's dataset to offer (default "
                             f"{DEFAULT_GALLERY_SIZE}; 0: none)")
    parser.add_argument("--max-upload-mb", type=float,
                        default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                        help="largest request body in MiB, all files together (default "
                             f"{DEFAULT_MAX_UPLOAD_BYTES / 2**20:g})")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest image in pixels (default {DEFAULT_MAX_PIXELS})")
    return parser


def load_studio(ckpt: Path | None, device: str = "cpu", parser_path: Path | None = None,
                gallery_size: int = DEFAULT_GALLERY_SIZE, limits: Limits | None = None,
                exact: bool = False, bf16: bool = False) -> Studio:
    """The model (loaded once), its gallery and limits: everything the app serves.

    On the CPU the networks run in channels_last unless ``exact`` (see `use_channels_last`).
    """
    from faceregen.regen.model import load_model, use_channels_last
    from faceregen.utils import resolve_device

    ckpt = ckpt or find_latest_checkpoint()
    regenerator = load_model(ckpt, resolve_device(device))
    if regenerator.device.type == "cpu" and not exact:
        use_channels_last(regenerator)
    gallery = load_gallery(regenerator.config.data.get("root"), gallery_size)
    return Studio(regenerator, ckpt, parser_path, limits, gallery, bf16)


def make_server(studio: Studio):
    """A uvicorn server for the app. One process: the model lives in it, loaded once."""
    import uvicorn

    from faceregen.studio.app import create_app

    return uvicorn.Server(uvicorn.Config(create_app(studio), log_level="warning",
                                         access_log=False))


def url_of(sock) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(studio: Studio, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve until Ctrl-C, printing the URL once the socket is bound."""
    sock = bind_socket(host, port)
    health = studio.health()
    print(f"faceregen studio: {health['model']} ({studio.checkpoint}, {health['size']} px, "
          f"{health['device']}); {studio.gallery.message}", flush=True)
    print(f"open {url_of(sock)}/  (Ctrl-C stops)", flush=True)
    make_server(studio).run(sockets=[sock])


@contextlib.contextmanager
def background_server(studio: Studio, host: str = DEFAULT_HOST, port: int = 0
                      ) -> Iterator[str]:
    """Serve in a thread and yield the base URL (tests, the benchmark); stop on exit."""
    sock = bind_socket(host, port)
    server = make_server(studio)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the studio server did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def bind_socket(host: str, port: int):
    """Bind and listen first: a busy port is a one-line user error, and the printed URL
    answers as soon as it is printed."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Answer at once on keep-alive connections (browsers keep them): Nagle would hold the
    # answer for the client's delayed ACK, 40 ms a request. Accepted sockets inherit this.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FaceregenError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another "
                             "--port or stop the program that uses it") from None
    sock.listen(128)  # connections wait in the backlog until the server accepts them
    return sock


def main(argv: list[str]) -> None:
    args = build_argparser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise FaceregenError(f"--port {args.port}: must be 0..65535")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise FaceregenError("--max-upload-mb and --max-pixels must be positive")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20),
                    max_pixels=args.max_pixels)
    if args.exact and args.bf16:
        raise FaceregenError("--exact and --bf16 contradict each other: choose one")
    studio = load_studio(args.ckpt, args.device, args.parser, args.gallery, limits, args.exact,
                         args.bf16)
    serve(studio, args.host, args.port)
