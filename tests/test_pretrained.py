"""The shared weight-file lookup: configured path, hub cache, download, error; never the network."""

from __future__ import annotations

import logging

import pytest
import torch

from faceregen import pretrained
from faceregen.errors import FaceregenError

FILE = "net-0123abcd.pth"
URL = f"https://example.invalid/{FILE}"


class CustomError(FaceregenError):
    pass


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache; any real download attempt fails the test."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


def lookup(path=None, **kwargs):
    return pretrained.find_weight_file(FILE, URL, path, "net.path", description="the net weights",
                                       **kwargs)


def failing_download(destination):
    raise ConnectionError("no network in tests\nsecond line of the traceback text")


def test_configured_path_then_hub_cache(hub, tmp_path, caplog):
    (hub / FILE).parent.mkdir(parents=True)
    (hub / FILE).write_bytes(b"cached")
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"mine")
    assert lookup(mine, download=failing_download) == mine
    assert lookup(None, download=failing_download) == hub / FILE
    with caplog.at_level(logging.WARNING, logger="faceregen.pretrained"):
        assert lookup(tmp_path / "typo.pth", download=failing_download) == hub / FILE
    assert "typo.pth" in caplog.text


def test_download_goes_to_the_hub_cache(hub):
    calls = []

    def fake_download(destination):
        calls.append(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(b"downloaded")

    assert lookup(download=fake_download) == hub / FILE
    assert calls == [hub / FILE]
    assert lookup(download=fake_download) == hub / FILE  # now cached: no second download
    assert len(calls) == 1


def test_default_download_checks_the_hash_in_the_name(hub, monkeypatch):
    seen = {}

    def fake_hub_download(url, dst, hash_prefix=None, progress=True):
        seen.update(url=url, dst=dst, hash_prefix=hash_prefix)
        with open(dst, "wb") as f:
            f.write(b"downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_hub_download)
    assert lookup() == hub / FILE
    assert seen == {"url": URL, "dst": str(hub / FILE), "hash_prefix": "0123abcd"}


def test_hash_prefix_of_published_names():
    assert pretrained.hash_prefix("vgg19-dcbb9e9d.pth") == "dcbb9e9d"
    assert pretrained.hash_prefix("pt_inception-2015-12-05-6726825d.pth") == "6726825d"
    assert pretrained.hash_prefix("weights.pth") is None


def test_missing_everywhere_says_what_where_and_how(hub, tmp_path):
    typo = tmp_path / "typo.pth"
    with pytest.raises(CustomError) as excinfo:
        lookup(typo, download=failing_download, error=CustomError, alternative="; or use X")
    message = str(excinfo.value)
    assert message.startswith(f"the net weights ({FILE}) not found: ")
    assert f"net.path={typo} (no such file)" in message
    assert f"{hub / FILE} (not in the torch hub cache)" in message
    assert f"the download from {URL} failed (no network in tests)" in message
    assert "second line" not in message
    assert message.endswith(f"Put {FILE} at {hub / FILE}, or pass net.path=/path/to/{FILE}"
                            "; or use X")


def test_downloads_off_never_downloads(hub):
    def must_not_download(destination):
        raise AssertionError("downloaded although downloads are off")

    with pytest.raises(FaceregenError, match="downloads are off"):
        lookup(allow_download=False, download=must_not_download)


def test_download_that_leaves_no_file(hub):
    with pytest.raises(FaceregenError, match="left no file"):
        lookup(download=lambda destination: None)
