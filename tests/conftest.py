"""Shared pytest fixtures."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A tiny synthetic raw set (12 faces, 64 px photos, 32 px masks) and its 32 px preparation.

    Returns a namespace with ``raw`` (CelebAMask-HQ layout), ``root`` (prepared dir), ``num``,
    ``photo_size`` and ``size``. Treat both folders as read-only; copy them to modify.
    """
    from faceregen.data.prepare import prepare
    from faceregen.data.synth import synthesize

    base = tmp_path_factory.mktemp("synthetic")
    num, photo_size, size = 12, 64, 32
    raw = synthesize(base / "raw", num=num, size=photo_size, seed=0, workers=1, progress=False)
    prepare(raw, base / "prepared", size=size, split="celeba", workers=1, progress=False)
    return SimpleNamespace(raw=raw, root=base / "prepared", num=num, photo_size=photo_size,
                           size=size)
