"""The FID Inception (layout, weight lookup, no download) and the trained evaluator networks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import load_script
from torchvision.models.inception import Inception3

from faceregen.errors import FaceregenError
from faceregen.evaluation import cli as evaluation_cli
from faceregen.evaluation import evaluators, inception
from faceregen.evaluation.train_evaluators import open_split, train_evaluator
from faceregen.labels import ATTRIBUTE_NAMES, NUM_CLASSES
from faceregen.models.networks import AttributeClassifier, UNetParser


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


# ----------------------------------------------------------------------------- evaluators


def test_parser_shapes_and_bottleneck_features():
    parser = UNetParser(channels=4, depth=3)
    logits, features = parser(torch.rand(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, NUM_CLASSES, 32, 32)
    assert features.shape == (2, parser.feature_dim) == (2, 32)


def test_attribute_classifier_shapes():
    classifier = AttributeClassifier(num_attributes=5, channels=4, depth=3)
    logits, segmentation = classifier(torch.rand(3, 3, 32, 32), return_segmentation=True)
    assert logits.shape == (3, 5) and segmentation.shape == (3, NUM_CLASSES, 32, 32)
    assert torch.equal(classifier.eval()(torch.ones(1, 3, 32, 32)),
                       classifier(torch.ones(1, 3, 32, 32), return_segmentation=True)[0])


def test_attribute_classifier_reads_a_part_where_the_trunk_puts_it(monkeypatch):
    """With the trunk's segmentation forced to 'mouth' on one square, the pooled colour of the
    mouth is that square's colour whatever the rest of the image holds."""
    classifier = AttributeClassifier(num_attributes=1, channels=4, depth=2).eval()
    mouth = 10
    channels = classifier.trunk.head.out_channels

    def decode(images):
        segmentation = torch.zeros(images.shape[0], channels, *images.shape[-2:])
        segmentation[:, 0] = 50.0  # background everywhere ...
        segmentation[:, 0, 8:16, 8:16] = 0.0
        segmentation[:, mouth, 8:16, 8:16] = 50.0  # ... but the square is mouth
        features = torch.zeros(images.shape[0], 4, *images.shape[-2:])
        return segmentation, features, torch.zeros(images.shape[0], 16, 4, 4)

    monkeypatch.setattr(classifier.trunk, "decode", decode)
    weights = torch.zeros_like(classifier.classifier.weight)
    width = 4 + 3  # pooled features and colours per part, then the 19 areas
    weights[0, mouth * width + 4] = 1.0  # the mouth's pooled red channel
    classifier.classifier.weight.data = weights
    classifier.classifier.bias.data.zero_()
    images = torch.rand(2, 3, 32, 32)
    images[0, 0, 8:16, 8:16], images[1, 0, 8:16, 8:16] = 0.5, -0.5
    logits = classifier(images)[:, 0]
    area = 64.0
    assert torch.allclose(logits, torch.tensor([0.5, -0.5]) * area / (area + 1), atol=1e-4)


def test_evaluator_checkpoint_round_trip_rebuilds_the_architecture(tmp_path):
    architecture = {"channels": 4, "depth": 2}
    parser = evaluators.build_evaluator("parser", architecture)
    path = tmp_path / "evaluators" / "parser.pt"
    evaluators.save_evaluator(path, "parser", parser, architecture, image_size=32,
                              data_root=tmp_path, steps=3, metrics={"val": {"x": 1.0}})
    assert isinstance(torch.load(path, weights_only=True), dict)
    loaded = evaluators.load_evaluator(path, "parser")
    assert loaded.image_size == 32 and loaded.steps == 3 and loaded.metrics["val"]["x"] == 1.0
    for key, value in parser.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)
    with pytest.raises(FaceregenError, match="not 'attributes'"):
        evaluators.load_evaluator(path, "attributes")
    with pytest.raises(FaceregenError, match="not found"):
        evaluators.load_evaluator(tmp_path / "missing.pt", "parser")
    old = torch.load(path, weights_only=True) | {"format": "faceregen-evaluator-v1"}
    torch.save(old, path)
    with pytest.raises(FaceregenError, match="older faceregen.*faceregen evaluators train"):
        evaluators.load_evaluator(path, "parser")


def test_default_evaluator_path_is_keyed_by_dataset(tmp_path):
    assert evaluators.default_evaluator_path(tmp_path, "parser") == (
        tmp_path / "evaluators" / "parser.pt")


@pytest.fixture
def writable_dataset(synthetic_dataset, tmp_path):
    """A copy of the shared tiny prepared set (evaluators are written under its root)."""
    root = tmp_path / "prepared"
    shutil.copytree(synthetic_dataset.root, root)
    return root


@pytest.mark.parametrize("kind", ["parser", "attributes"])
def test_train_evaluator_saves_checkpoint_and_scores(kind, writable_dataset):
    report = train_evaluator(kind, writable_dataset, steps=3, batch_size=4,
                             architecture={"channels": 4, "depth": 2},
                             attribute_names=["Bangs", "Smiling"], device="cpu",
                             progress=False)
    path = writable_dataset / "evaluators" / f"{kind}.pt"
    assert report["path"] == str(path) and path.is_file()
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["steps"] == 3 and "test" in saved["metrics"]
    test_scores = saved["metrics"]["test"]
    if kind == "parser":
        assert 0 <= test_scores["pixel_accuracy"] <= 1 and "mean_iou" in test_scores
    else:
        assert set(test_scores["per_attribute_accuracy"]) == {"Bangs", "Smiling"}
    loaded = evaluators.load_evaluator(path, kind)
    assert loaded.image_size == 32
    if kind == "attributes":
        assert loaded.attribute_names == ["Bangs", "Smiling"]


def test_evaluators_cli_trains_into_out_dir(writable_dataset, tmp_path, capsys):
    out = tmp_path / "nets"
    evaluation_cli.main(["train", "--kind", "parser", "--data", str(writable_dataset),
                         "--steps", "2", "--batch-size", "4", "--channels", "4", "--depth", "2",
                         "--out", str(out), "--device", "cpu", "--no-progress"])
    assert (out / "parser.pt").is_file() and (out / "parser.json").is_file()
    assert "pixel accuracy" in capsys.readouterr().out
    report = json.loads((out / "parser.json").read_text())
    assert report["steps"] == 2
    assert report["architecture"] == {"channels": 4, "depth": 2}
    evaluation_cli.main(["train", "--kind", "attributes", "--data", str(writable_dataset),
                         "--steps", "1", "--batch-size", "4", "--channels", "4", "--depth", "2",
                         "--attributes", "Bangs, Smiling", "--out", str(out), "--device", "cpu",
                         "--no-progress"])
    loaded = evaluators.load_evaluator(out / "attributes.pt", "attributes")
    assert loaded.attribute_names == ["Bangs", "Smiling"]


def test_evaluators_cli_rejects_unprepared_folder(tmp_path):
    with pytest.raises(FaceregenError, match="faceregen data prepare"):
        evaluation_cli.main(["train", "--data", str(tmp_path)])


def test_train_evaluator_weights_follow_cpu_threads_not_the_callers(writable_dataset, tmp_path):
    """The thread count changes the weights (the order of the gradient sums); the pinned count
    makes them the same whatever the caller's, and the caller's count is restored."""
    def weights(caller_threads: int, pinned: int, name: str) -> dict:
        torch.set_num_threads(caller_threads)
        path = tmp_path / name / "parser.pt"
        train_evaluator("parser", writable_dataset, out_path=path, steps=4, batch_size=8,
                        architecture={"channels": 8, "depth": 2}, device="cpu",
                        cpu_threads=pinned, validation_splits=(), progress=False)
        assert torch.get_num_threads() == caller_threads
        return torch.load(path, weights_only=True)["state_dict"]

    previous = torch.get_num_threads()
    try:
        one_caller, three_callers = weights(1, 2, "a"), weights(3, 2, "b")
        one_thread = weights(2, 1, "c")
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(one_caller[k], three_callers[k]) for k in one_caller)
    assert not all(torch.equal(one_caller[k], one_thread[k]) for k in one_caller)


def test_train_evaluator_refuses_zero_cpu_threads(writable_dataset):
    with pytest.raises(FaceregenError, match="cpu_threads=0"):
        train_evaluator("parser", writable_dataset, steps=1, batch_size=4, device="cpu",
                        architecture={"channels": 4, "depth": 2}, cpu_threads=0,
                        validation_splits=(), progress=False)


def test_label_map_ceiling_script_reads_attributes_from_label_maps(writable_dataset, tmp_path,
                                                                   capsys):
    module = load_script("label_map_ceiling")
    with pytest.raises(FaceregenError, match="attributes"):  # no photo classifier yet
        module.main([str(writable_dataset), "--steps", "1"])
    train_evaluator("attributes", writable_dataset, steps=1, batch_size=4, device="cpu",
                    architecture={"channels": 4, "depth": 2}, validation_splits=(),
                    progress=False)
    module.main([str(writable_dataset), "--steps", "2", "--split", "train",  # 12 faces in all
                 "--out", str(tmp_path / "rows.json")])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows and set(rows) <= set(evaluation_cli.evaluator_defaults().geometry_attributes)
    assert all(0 <= row["label_map"] <= 1 and 0 <= row["photo"] <= 1 for row in rows.values())
    assert f"| {next(iter(rows))} |" in capsys.readouterr().out


def test_attribute_leak_script_splits_errors_by_the_reference(writable_dataset, tmp_path,
                                                              tiny_cfg, tiny_checkpoint, capsys):
    module = load_script("attribute_leak")
    train_evaluator("attributes", writable_dataset, steps=1, batch_size=4, device="cpu",
                    architecture={"channels": 4, "depth": 2}, validation_splits=(),
                    progress=False)
    checkpoint = tiny_checkpoint(tmp_path / "model.pt", tiny_cfg(data_dir=writable_dataset))
    with pytest.raises(FaceregenError, match="unknown attributes"):
        module.main([str(checkpoint), "--data", str(writable_dataset), "--attributes", "Wings"])
    module.main([str(checkpoint), "--data", str(writable_dataset), "--split", "train",
                 "--attributes", "Smiling", "Eyeglasses", "--batch-size", "5"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| {checkpoint} |")]
    assert [row[1] for row in rows] == ["Smiling", "Eyeglasses"]
    faces = open_split(writable_dataset, "train")
    for row in rows:  # without the attribute: the false alarms' cells; with it: the misses'
        column = ATTRIBUTE_NAMES.index(row[1])
        with_it = sum(int(faces[i]["attributes"][column] > 0.5) for i in range(len(faces)))
        counts = [tuple(map(int, cell.strip(" |").split("/"))) for cell in row[2:]]
        assert all(0 <= hits <= of for hits, of in counts)
        assert counts[0][1] + counts[1][1] == len(faces) - with_it
        assert counts[2][1] + counts[3][1] == with_it


def test_style_probe_scores_a_linear_target_and_runs_on_a_checkpoint(writable_dataset, tmp_path,
                                                                     tiny_cfg, tiny_checkpoint,
                                                                     capsys):
    module = load_script("style_probe")
    generator = torch.Generator().manual_seed(0)
    x, xt = (torch.randn(n, 5, generator=generator, dtype=torch.float64) for n in (200, 100))
    weights = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert module.probe_r2(x, x @ weights + 4, xt, xt @ weights + 4, ridge=1e-6) > 0.999
    noise = torch.randn(100, generator=generator, dtype=torch.float64)
    assert module.probe_r2(x, torch.randn(200, generator=generator, dtype=torch.float64), xt,
                           noise, ridge=1.0) < 0.1
    y = x @ weights
    y[:10] = float("nan")  # a region missing in some faces: left out, not a NaN score
    assert module.probe_r2(x, y, xt, xt @ weights, ridge=1e-6) > 0.999

    checkpoint = tiny_checkpoint(tmp_path / "model.pt", tiny_cfg(data_dir=writable_dataset))
    module.main([str(checkpoint), "--data", str(writable_dataset), "--train-faces", "8",
                 "--test-split", "train", "--batch-size", "5"])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| checkpoint |"))
    assert "| background a* |" in header and "| cloth b* |" in header
    row = next(line for line in out.splitlines() if line.startswith(f"| {checkpoint} |"))
    assert len(row.strip("|").split("|")) == 1 + 15

    baseline = tiny_checkpoint(tmp_path / "baseline.pt",
                               tiny_cfg("+experiment=synthetic_baseline",
                                        data_dir=writable_dataset))
    with pytest.raises(FaceregenError, match="no style to probe"):
        module.main([str(baseline), "--data", str(writable_dataset)])


def test_colour_floor_is_zero_without_blur_and_prints_every_region(writable_dataset, capsys,
                                                                   monkeypatch):
    module = load_script("colour_floor")
    flat = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(module.box3(flat), flat)
    torch.testing.assert_close(module.down_up(flat), flat)

    faces = open_split(writable_dataset, "train")
    monkeypatch.setattr(module, "BLURS", {"none": lambda image: image, "box": module.box3})
    floors = module.colour_floor(faces, batch_size=5)
    assert all(abs(value) < 1e-9 for value in floors["none"])
    assert any(value > 0.1 for value in floors["box"])
    monkeypatch.undo()
    module.main(["--data", str(writable_dataset), "--split", "train"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| blur | skin | hair | lips | background | cloth |"
    assert len(rows) == 1 + len(module.BLURS)
