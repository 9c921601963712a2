"""Small shared helpers: atomic file writes, safe tensor-file loading and device selection."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_MARK = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A crash or exception part-way leaves whatever was at ``path`` before untouched. The file
    gets the permissions any new file would (0666 less the umask), not the temporary file's
    0600, so that teammates can read a shared dataset or checkpoint. The temporary name holds
    the writer's pid, so that :func:`remove_stale_temporaries` can tell an abandoned one.
    """
    from faceregen.errors import FaceregenError

    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=TEMPORARY_MARK + path.suffix, dir=path.parent)
    except OSError as exc:
        raise FaceregenError(f"{path}: cannot write there ({exc.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            os.chmod(tmp_path, 0o666 & ~current_umask())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise FaceregenError(f"{path}: cannot write there ({exc.strerror})") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p``; a folder that cannot be made is a user error naming it."""
    from faceregen.errors import FaceregenError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceregenError(f"{path}: cannot create the folder ({exc.strerror})") from None
    return path


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` in ``folder`` whose writer is dead.

    A killed process leaves its temporary file behind; the next run in the same folder calls
    this. A temporary of a process that is still running is left alone. Returns what it removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(".*" + TEMPORARY_MARK + "*"):
        # .<name>.<pid>.<random>.tmp<suffix>
        parts = path.name[:path.name.rindex(TEMPORARY_MARK)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or _process_alive(int(parts[1])):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def output_folder(path: str | os.PathLike) -> Path:
    """A folder about to be written: made if missing (:func:`make_dirs`), with the temporaries
    a killed earlier run left in it removed (:func:`remove_stale_temporaries`)."""
    path = make_dirs(path)
    remove_stale_temporaries(path)
    return path


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def resolve_device(name: str = "auto"):
    """``auto`` picks CUDA when available, else CPU; anything else must be a device torch knows
    and this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    from faceregen.errors import FaceregenError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise FaceregenError(f"device '{name}' is not a device name; use auto, cpu, cuda or "
                             "cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FaceregenError(f"device '{name}' was asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FaceregenError(f"device '{name}': this machine has "
                                 f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise FaceregenError(f"device '{name}' was asked for, but MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise FaceregenError(f"device '{name}': faceregen runs on cpu, cuda or mps")
    return device


def autocast_dtype(precision: str):
    """``trainer.precision`` -> the autocast dtype (None for full fp32)."""
    import torch

    from faceregen.errors import FaceregenError

    dtypes = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
    if str(precision) not in dtypes:
        raise FaceregenError(f"precision={precision}: choose 32, bf16 or 16")
    return dtypes[str(precision)]


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type's name: the part of a library's message that
    fits into our one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def torch_load(path: str | os.PathLike, what: str, error: type[Exception] | None = None):
    """``torch.load(weights_only=True)`` on the CPU; any failure is one user error naming the file.

    A file that holds pickled Python objects is refused by torch; its advice to load it with
    ``weights_only=False`` is never passed on, because files from strangers are data, not code.
    """
    import pickle

    import torch

    from faceregen.errors import FaceregenError

    error = error or FaceregenError
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on junk (struct.error, EOFError, ...)
        text = str(exc).strip()
        refused_pickle = (isinstance(exc, pickle.UnpicklingError) and "weights_only" in text
                          or text.startswith("Weights only load failed"))
        if refused_pickle:
            reason = "it holds Python objects besides tensors and plain containers; " \
                     "such files are never unpickled"
        else:
            reason = first_line(exc)
        raise error(f"{path}: not a loadable {what} ({reason})") from None


def ignore_interrupts() -> None:
    """Pool initializer: Ctrl-C goes to the whole process group, but only the parent should
    react (one message and a clean stop), not every worker with its own traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
