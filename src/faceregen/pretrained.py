"""Finding a published weight file (VGG19, the FID Inception) the same way for every network.

Order: the configured path, the torch hub cache, a download into the hub cache. When none gives
a file, one error names the file, every place it was looked for and how to put it in place.
The hub cache is where torchvision and pytorch-fid keep the same files, so one copy serves all.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from faceregen.errors import FaceregenError
from faceregen.utils import first_line

logger = logging.getLogger("faceregen.pretrained")


def hub_cache_file(file_name: str) -> Path:
    """Where torch.hub keeps ``file_name`` (and where a download puts it)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def hash_prefix(file_name: str) -> str | None:
    """The SHA-256 prefix that torch.hub file names carry: ``vgg19-dcbb9e9d.pth`` -> dcbb9e9d."""
    match = re.search(r"-([0-9a-f]+)\.", file_name)
    return match.group(1) if match else None


def download_file(url: str, destination: Path) -> None:
    """Fetch ``url`` to ``destination``, checked against the hash prefix in the file's name.

    torch.hub writes a temporary file and renames it, so a failed download leaves nothing behind.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(destination), hash_prefix=hash_prefix(destination.name))


def find_weight_file(file_name: str, url: str, configured_path: str | os.PathLike | None,
                     setting_name: str, *, description: str, allow_download: bool = True,
                     download: Callable[[Path], None] | None = None,
                     error: type[Exception] = FaceregenError, alternative: str = "") -> Path:
    """The weight file: ``configured_path``, else the hub cache, else a download into the cache.

    A configured path that does not exist is only a warning: the cache and the download hold the
    same published file. ``download(destination)`` replaces the plain download of ``url`` (tests
    pass one that fails or writes a file). ``alternative`` is appended to the error's advice,
    e.g. a setting that needs no file.
    """
    tried = []
    if configured_path is not None:
        configured = Path(configured_path).expanduser()
        if configured.is_file():
            return configured
        tried.append(f"{setting_name}={configured} (no such file)")
        logger.warning("%s=%s does not exist; looking for %s in the torch hub cache",
                       setting_name, configured, file_name)
    cached = hub_cache_file(file_name)
    if cached.is_file():
        return cached
    tried.append(f"{cached} (not in the torch hub cache)")
    if not allow_download:
        tried.append("downloads are off")
    else:
        try:
            if download is None:
                download_file(url, cached)
            else:
                download(cached)
        except Exception as exc:  # no network, proxy, disk full, hash mismatch: all the same here
            tried.append(f"the download from {url} failed ({first_line(exc)})")
        else:
            if cached.is_file():
                return cached
            tried.append(f"the download from {url} left no file at {cached}")
    raise error(f"{description} ({file_name}) not found: " + "; ".join(tried)
                + f". Put {file_name} at {cached}, or pass {setting_name}=/path/to/{file_name}"
                + alternative)
