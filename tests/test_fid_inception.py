"""Our FID Inception against pytorch-fid's own network and pipeline, with shared random weights.

pytorch-fid's ``InceptionV3`` always downloads its weights through ``load_state_dict_from_url``;
here that function hands it our random state dict instead, so both networks hold the same
weights and any difference in blocks, assembly, resizing, scaling or 8-bit rounding shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_fid.inception
import torch
from PIL import Image
from pytorch_fid.fid_score import get_activations

from faceregen.evaluation import inception


@pytest.fixture(scope="module")
def random_inception():
    return inception.load_fid_inception("random")


@pytest.fixture
def no_downloads(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("something tried to download")

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_features_match_pytorch_fid_on_png_files(random_inception, monkeypatch, tmp_path):
    state = random_inception.state_dict()
    requested = []

    def hand_over_state(url, *args, **kwargs):
        requested.append(url)
        return state

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", hand_over_state)
    reference = pytorch_fid.inception.InceptionV3([3])  # fid_inception_v3(): pytorch-fid's blocks
    assert requested == [inception.FID_WEIGHTS_URL]

    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0)) * 2 - 1
    files = []
    for i, image in enumerate(images):
        pixels = torch.round((image + 1) / 2 * 255).byte().permute(1, 2, 0).numpy()
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(pixels).save(files[-1])
    expected = get_activations(files, reference, batch_size=2, num_workers=0)

    ours = inception.inception_features(random_inception, images).numpy()
    assert ours.shape == expected.shape == (2, inception.FEATURE_DIM)
    assert ours.std() > 0.01
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_weights_load_offline_into_pytorch_fid_blocks(random_inception, no_downloads, tmp_path):
    file = tmp_path / "fid_weights.pth"
    torch.save(random_inception.state_dict(), file)
    model = inception.load_fid_inception("pytorch_fid", path=str(file), allow_download=False)
    assert isinstance(model.Mixed_5b, pytorch_fid.inception.FIDInceptionA)
    assert isinstance(model.Mixed_6e, pytorch_fid.inception.FIDInceptionC)
    assert isinstance(model.Mixed_7b, pytorch_fid.inception.FIDInceptionE_1)
    assert isinstance(model.Mixed_7c, pytorch_fid.inception.FIDInceptionE_2)
    assert torch.equal(model.Mixed_7c.branch_pool.conv.weight,
                       random_inception.Mixed_7c.branch_pool.conv.weight)


def test_unloadable_weight_file_is_unavailable_not_a_crash(no_downloads, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weight file")
    with pytest.raises(inception.InceptionWeightsUnavailable, match="not a loadable weight file"):
        inception.load_fid_inception("pytorch_fid", path=str(garbage))
    bare_tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(1), bare_tensor)
    with pytest.raises(inception.InceptionWeightsUnavailable, match="not pytorch-fid's"):
        inception.load_fid_inception("pytorch_fid", path=str(bare_tensor))
