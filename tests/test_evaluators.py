"""The FID Inception (layout, weight lookup, no download) and the trained evaluator networks."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.inception import Inception3

from faceregen.evaluation import inception


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and a download that fails at once (never touch the network)."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def no_download(destination):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(inception, "download_weights", no_download)
    return hub


@pytest.fixture(scope="module")
def random_inception():
    return inception.load_fid_inception("random")


def test_fid_inception_state_dict_has_pytorch_fid_layout(random_inception):
    state = random_inception.state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Conv2d_1a_3x3.bn.running_var"].shape == (32,)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7_1.conv.weight"].shape == (192, 768, 1, 1)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    assert state["fc.bias"].shape == (1008,)
    assert not any(key.startswith("AuxLogits") for key in state)
    # pytorch-fid patches only forward passes of torchvision's Inception3(1008, no aux):
    torchvision_state = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    expected = {k: v.shape for k, v in torchvision_state.state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == expected


def test_fid_inception_features_are_pool3(random_inception):
    images = torch.rand(2, 3, 48, 48) * 2 - 1
    features = inception.inception_features(random_inception, images)
    assert features.shape == (2, inception.FEATURE_DIM)
    assert torch.isfinite(features).all() and features.std() > 0


def test_fid_weights_from_hub_cache_load_strict(offline_hub, random_inception):
    cached = offline_hub / "checkpoints" / inception.FID_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    torch.save(random_inception.state_dict(), cached)
    assert inception.find_weights(None) == cached
    model = inception.load_fid_inception("pytorch_fid")
    assert torch.equal(model.fc.weight, random_inception.fc.weight)


def test_fid_weights_configured_path_comes_first(offline_hub, tmp_path):
    with pytest.raises(inception.InceptionWeightsUnavailable, match="fid.path"):
        inception.find_weights(str(tmp_path / "missing.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(inception.InceptionWeightsUnavailable, match="not pytorch-fid"):
        inception.load_fid_inception("pytorch_fid", path=str(wrong))


def test_fid_weights_unavailable_says_where_it_looked(offline_hub):
    with pytest.raises(inception.InceptionWeightsUnavailable) as excinfo:
        inception.load_fid_inception("pytorch_fid")
    message = str(excinfo.value)
    assert str(offline_hub / "checkpoints") in message and "no network" in message
    with pytest.raises(inception.InceptionWeightsUnavailable, match="downloads are off"):
        inception.find_weights(None, allow_download=False)


def test_fid_weights_download_goes_to_the_hub_cache(offline_hub, monkeypatch):
    def fake_download(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(b"x")

    monkeypatch.setattr(inception, "download_weights", fake_download)
    assert inception.find_weights(None) == inception.hub_cache_path()
    assert inception.hub_cache_path().parent == offline_hub / "checkpoints"
