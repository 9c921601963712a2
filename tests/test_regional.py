"""The regional style model (model=style_regional): its networks, region pooling, fallback to
the global style, training augmentation and training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faceregen.errors import FaceregenError
from faceregen.models import build_networks, generate
from faceregen.models.networks.encoder import RegionalStyleEncoder, region_average
from faceregen.models.networks.generator import GlobalGenerator, RegionalGenerator
from faceregen.models.networks.normalization import SpatialAdaIN

LABELS = 19
OPTIONS = {"decoder_norm": "instance", "block_second_shift": True}


def label_maps(batch: int, size: int, seed: int = 0, block: int = 4) -> torch.Tensor:
    """One-hot label maps constant on block x block tiles, [B, 19, size, size]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, LABELS, (batch, size // block, size // block), generator=g)
    onehot = F.one_hot(coarse, LABELS).permute(0, 3, 1, 2).float()
    return F.interpolate(onehot, size=(size, size), mode="nearest")


def photos(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def networks(decoder_norm: str = "instance", seed: int = 0, **options):
    torch.manual_seed(seed)
    generator = RegionalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=2, use_style=True,
                                  upsample="resize", decoder_norm=decoder_norm,
                                  block_second_shift=True, **options)
    encoder = RegionalStyleEncoder(LABELS, 3, generator.num_style_params, "plus_one", True)
    # The offsets start near zero; make them matter so that the properties are not trivial.
    with torch.no_grad():
        encoder.region_head.weight.normal_(0, 0.5)
        encoder.region_bias.normal_(0, 0.5)
    return generator.eval(), encoder.eval()


def test_region_pooling_is_the_masked_mean_of_the_features_at_full_resolution():
    torch.manual_seed(0)
    label = label_maps(2, 32, seed=3, block=2)  # classes cut through the 4x4 feature pixels
    features = torch.randn(2, 5, 8, 8)
    means, present = region_average(features, label)
    full = features.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    for b in range(2):
        for k in range(LABELS):
            mask = label[b, k] > 0
            assert bool(present[b, k]) == bool(mask.any())
            if mask.any():
                expected = full[b][:, mask].mean(dim=1)
                torch.testing.assert_close(means[b, k], expected, rtol=1e-5, atol=1e-6)


def test_encoder_rows_global_then_one_per_class_and_absent_classes_fall_back():
    generator, encoder = networks()
    label = label_maps(2, 32)
    label[:, 13] = 0  # no hair anywhere: class 13 moves to background
    label[:, 0] = 1 - label[:, 1:].sum(1)
    with torch.no_grad():
        style = encoder(photos(2, 32), label)
    assert style.shape == (2, 1 + LABELS, generator.num_style_params)
    torch.testing.assert_close(style[:, 1 + 13], style[:, 0])  # absent: the global style
    present = [k for k in range(LABELS) if bool(label[0, k].any())]
    assert all(not torch.allclose(style[0, 1 + k], style[0, 0]) for k in present)
    # row 0 is exactly the global encoder's output (the parent's forward)
    with torch.no_grad():
        torch.testing.assert_close(style[:, 0], super(RegionalStyleEncoder, encoder).forward(
            photos(2, 32), label))


def test_a_region_row_reads_only_its_own_region_of_the_reference():
    """Changing the reference's photo far from its hair leaves the hair row as it was (the
    global style changes): a row carries its region's look and nothing else."""
    generator, encoder = networks()
    label = torch.zeros(1, LABELS, 64, 64)
    label[:, 0] = 1
    label[:, 0, :16, :16], label[:, 13, :16, :16] = 0, 1      # hair, top left
    label[:, 0, 48:, 48:], label[:, 18, 48:, 48:] = 0, 1      # cloth, bottom right
    photo = photos(1, 64)
    changed = photo.clone()
    changed[:, :, 48:, 48:] = -photo[:, :, 48:, 48:]
    with torch.no_grad():
        before, after = encoder(photo, label), encoder(changed, label)
    torch.testing.assert_close(after[:, 1 + 13], before[:, 1 + 13])
    assert not torch.allclose(after[:, 1 + 18], before[:, 1 + 18])
    assert not torch.allclose(after[:, 0], before[:, 0])


@pytest.mark.parametrize("decoder_norm, options", [
    ("instance", {}), ("adain", {}),
    ("adain", {"decoder_norm_layers": "all", "label_skips": True, "decoder_styles": "regional"})])
def test_rows_all_equal_to_the_global_style_give_the_global_generator(decoder_norm, options):
    regional, encoder = networks(decoder_norm, **options)
    options = {key: value for key, value in options.items() if key != "decoder_styles"}
    plain = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=2, use_style=True,
                            upsample="resize", decoder_norm=decoder_norm,
                            block_second_shift=True, **options).eval()
    plain.load_state_dict(regional.state_dict())
    label = label_maps(2, 32)
    with torch.no_grad():
        global_style = encoder(photos(2, 32), label)[:, 0]
        rows = global_style[:, None].expand(-1, 1 + LABELS, -1)
        torch.testing.assert_close(regional(label, rows), plain(label, global_style),
                                   rtol=1e-4, atol=1e-5)


def test_each_bottleneck_pixel_is_modulated_with_the_style_of_its_class():
    generator, encoder = networks()
    label = torch.zeros(1, LABELS, 32, 32)
    label[:, 1, :, :16] = 1   # skin on the left half
    label[:, 13, :, 16:] = 1  # hair on the right half
    seen = {}
    generator.blocks[0].norm1.register_forward_hook(
        lambda module, inputs, output: seen.update(mean=inputs[1], std=inputs[2]))
    with torch.no_grad():
        style = encoder(photos(1, 32), label)
        generator(label, style)
    channels = generator.blocks[0].channels
    mean_rows, std_rows = style[0, :, :channels], 1 + style[0, :, channels:2 * channels]
    for column, k in ((0, 1), (3, 1), (4, 13), (7, 13)):  # the 8x8 bottleneck's columns
        torch.testing.assert_close(seen["mean"][0, :, 2, column], mean_rows[1 + k])
        torch.testing.assert_close(seen["std"][0, :, 2, column], std_rows[1 + k])


def test_regional_decoder_styles_modulate_each_decoder_pixel_with_its_class_row():
    """decoder_styles=regional: every decoder AdaIN's target statistics at a pixel are the
    decoder part of its class's row (here at 16x16 and 32x32); global takes row 0 everywhere."""
    generator, encoder = networks("adain", decoder_norm_layers="all", decoder_styles="regional")
    label = torch.zeros(1, LABELS, 32, 32)
    label[:, 1, :, :16] = 1   # skin on the left half
    label[:, 18, :, 16:] = 1  # cloth on the right half
    adains = [m for m in generator.decoder if isinstance(m, SpatialAdaIN)]
    assert len(adains) == len(generator.decoder_adain_sizes) == 2
    seen = []
    for adain in adains:
        adain.register_forward_hook(
            lambda module, inputs, output: seen.append((inputs[1], inputs[2])))
    with torch.no_grad():
        style = encoder(photos(1, 32), label)
        generator(label, style)
    offset = generator.num_style_params - generator.decoder_style_params
    for size, (mean, std) in zip(generator.decoder_adain_sizes, seen):
        channels = size // 2
        rows = style[0, :, offset:offset + size]
        width = mean.shape[-1]
        for column, k in ((0, 1), (width // 2 - 1, 1), (width // 2, 18), (width - 1, 18)):
            torch.testing.assert_close(mean[0, :, 3, column], rows[1 + k, :channels])
            torch.testing.assert_close(std[0, :, 3, column], 1 + rows[1 + k, channels:])
        offset += size
    # the cloth row's decoder part moves the image with regional decoder styles, and does
    # nothing with global ones (whose decoder reads row 0 only)
    changed = style.clone()
    changed[:, 1 + 18, generator.num_style_params - generator.decoder_style_params:] += 1.0
    global_decoder, _ = networks("adain", decoder_norm_layers="all", decoder_styles="global")
    global_decoder.load_state_dict(generator.state_dict())
    with torch.no_grad():
        assert not torch.allclose(generator(label, changed), generator(label, style))
        assert torch.equal(global_decoder(label, changed), global_decoder(label, style))


def test_decoder_styles_are_checked():
    with pytest.raises(FaceregenError, match="decoder_styles must be one of"):
        networks("adain", decoder_styles="local")
    with pytest.raises(FaceregenError, match="needs decoder_norm=adain"):
        networks("instance", decoder_styles="regional")
    with pytest.raises(FaceregenError, match="needs the regional generator"):
        GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=2, use_style=True,
                        upsample="resize", decoder_norm="adain", block_second_shift=True,
                        decoder_styles="regional")


def test_the_regional_generator_refuses_a_global_style_vector():
    generator, encoder = networks()
    with pytest.raises(FaceregenError, match="per-region styles"):
        generator(label_maps(1, 32), torch.zeros(1, generator.num_style_params))


def test_style_regional_config_builds_the_regional_pair_and_the_global_model_is_unchanged(
        tiny_cfg):
    nets = build_networks(tiny_cfg("model=style_regional").model)
    assert isinstance(nets.generator, RegionalGenerator)
    assert isinstance(nets.style_encoder, RegionalStyleEncoder)
    label = label_maps(2, 32)
    out = generate(nets.generator, nets.style_encoder, label, photos(2, 32), label)
    assert out.shape == (2, 3, 32, 32)
    glob = tiny_cfg().model
    assert glob.generator._target_.endswith(".GlobalGenerator")
    assert glob.style_encoder._target_.endswith(".StyleEncoder")
    assert tiny_cfg().data.region_recolor == 0
    assert tiny_cfg("model=style_regional").data.region_recolor == 0.5


def test_a_stored_regional_config_from_before_decoder_styles_builds_the_global_decoder(tiny_cfg):
    """Regional checkpoints written before the option were trained with the global decoder
    styles; style_regional's config today has the regional ones."""
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(tiny_cfg("model=style_regional").model)
    assert model["generator"]["decoder_styles"] == "regional"
    assert build_networks(OmegaConf.create(model)).generator.decoder_styles == "regional"
    del model["generator"]["decoder_styles"]
    assert build_networks(OmegaConf.create(model)).generator.decoder_styles == "global"


def test_a_regional_encoder_with_a_global_generator_is_refused(tiny_cfg):
    cfg = tiny_cfg("model.style_encoder._target_="
                   "faceregen.models.networks.encoder.RegionalStyleEncoder")
    with pytest.raises(FaceregenError, match="RegionalGenerator with RegionalStyleEncoder"):
        build_networks(cfg.model)


# --- training: the region recolouring augmentation and a few steps ------------------------------

@pytest.fixture(scope="module")
def train_data(tmp_path_factory, tiny_cfg):
    from faceregen.data import ensure_dataset

    data_dir = tmp_path_factory.mktemp("regional-train-data")
    ensure_dataset(tiny_cfg(data_dir=data_dir).data)
    return data_dir


def prepared_root(tiny_cfg, train_data):
    from faceregen.data import ensure_dataset

    return ensure_dataset(tiny_cfg(data_dir=train_data).data)


def test_recolouring_moves_the_region_to_the_donor_colour_and_keeps_the_rest(tiny_cfg,
                                                                              train_data):
    import numpy as np

    from faceregen.data import FaceDataset
    from faceregen.data.region_recolor import RegionRecolor
    from faceregen.labels import LABEL_NAMES

    faces = FaceDataset(prepared_root(tiny_cfg, train_data), "train", raw=True)
    hair = LABEL_NAMES.index("hair")
    recolored = RegionRecolor(faces, 1.0, ["hair"], seed=0)
    key = next((position, 123) for position in range(len(faces))
               if bool((faces[position]["label"] == hair).any()))
    plain, item = faces[key], recolored[key]
    mask = (item["label"] == hair).numpy()
    outside = ~mask
    assert torch.equal(item["image"][:, outside], plain["image"][:, outside])
    assert item["ref_image"] is item["image"]  # its own reference gets the same pixels
    # the donor is the face the same draw picks; its hair statistics are what the region has now
    rng = np.random.default_rng([0, 123])
    rng.random()
    donor = int(rng.integers(len(faces) - 1))
    donor += donor >= key[0]
    mean, std = recolored.donor_statistics(donor, hair)
    got = item["image"].numpy().astype(np.float64)[:, mask].T
    assert np.abs(got.mean(0) - mean).max() < 2.0
    assert not torch.equal(item["image"][:, mask], plain["image"][:, mask])
    assert torch.equal(recolored[key]["image"], item["image"])  # the key decides every draw


def test_a_few_steps_of_the_regional_model_train_and_resume_exactly(tiny_cfg, train_data,
                                                                     tmp_path):
    from faceregen.checkpoint import load_checkpoint
    from faceregen.regen import load_regenerator
    from faceregen.train.trainer import train

    overrides = ["model=style_regional", "data.region_recolor=1.0"]
    summary = train(tiny_cfg(*overrides, data_dir=train_data), tmp_path / "straight")
    assert summary["step"] == 4
    middle = tmp_path / "straight" / "checkpoints" / "step_000002.pt"
    resumed = train(tiny_cfg(*overrides, f"trainer.resume={middle}", data_dir=train_data),
                    tmp_path / "resumed")
    assert resumed["step"] == 4
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    again = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for network in ("generator", "style_encoder", "discriminator"):
        for key, value in straight[network].items():
            torch.testing.assert_close(again[network][key], value, rtol=0, atol=0)
    assert "region_bias" in straight["style_encoder"]
    regen = load_regenerator(tmp_path / "straight" / "checkpoints" / "last.pt")
    assert regen.style_encoder.regional
    label = torch.randint(0, 19, (2, 32, 32))
    assert regen(label, torch.rand(2, 3, 32, 32) * 2 - 1, label).shape == (2, 3, 32, 32)
