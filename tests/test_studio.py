"""`faceregen studio`'s HTTP API with Starlette's test client: the same results as `regen`,
the gallery, limits, and bad uploads that never crash or wedge the server."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import httpx2
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from faceregen import regen
from faceregen.errors import FaceregenError
from faceregen.labels import LABEL_NAMES, PALETTE
from faceregen.studio.app import create_app
from faceregen.studio.cli import background_server, bind_socket, load_studio
from faceregen.studio.gallery import load_gallery
from faceregen.studio.service import Limits

SIZE = 32  # data.size of the tests' tiny config


def png(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def decode(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


@pytest.fixture(scope="module")
def style_ckpt(tmp_path_factory, tiny_cfg, tiny_checkpoint, synthetic_dataset):
    """The tiny style model, trained (randomly) on the synthetic set: that set is its gallery."""
    return tiny_checkpoint(tmp_path_factory.mktemp("studio") / "last.pt",
                           tiny_cfg(f"data.root={synthetic_dataset.root}"))


@pytest.fixture(scope="module")
def baseline_ckpt(tmp_path_factory, tiny_cfg, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("studio-base") / "last.pt",
                           tiny_cfg("model=pix2pixhd", "data.root=/nonexistent/prepared"))


@pytest.fixture(scope="module")
def studio(style_ckpt):
    return load_studio(style_ckpt, "cpu")


@pytest.fixture(scope="module")
def client(studio):
    with TestClient(create_app(studio), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def face(studio):
    """A gallery face: its label map, photo and, as another face, the next one's label map."""
    first, second = list(studio.gallery.faces.values())[:2]
    return {"label": first.label, "photo": first.photo, "other": second.label}


def post(client, path: str, **files) -> httpx2.Response:
    fields = {name: (f"{name}.png", value) for name, value in files.items()
              if isinstance(value, bytes)}
    data = {name: value for name, value in files.items() if isinstance(value, str)}
    return client.post(path, files=fields, data=data)


def regen_face(client, face, **extra) -> httpx2.Response:
    return post(client, "/api/regen", mask=png(face["label"]), ref=png(face["photo"]),
                ref_mask=png(face["label"]), **extra)


def assert_error(response: httpx2.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    return message


def test_health_names_the_model_size_device_and_classes(client):
    health = client.get("/api/health").json()
    assert health["model"] == "style_pix2pixhd" and health["size"] == SIZE
    assert health["device"] == "cpu" and health["needs_reference"] is True
    assert [c["name"] for c in health["classes"]] == list(LABEL_NAMES)
    assert [c["color"] for c in health["classes"]] == ["#" + bytes(c).hex() for c in PALETTE]
    assert health["gallery"]["count"] == 12


def test_page_and_its_files_are_served_and_nothing_else(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("/indexpng.js", "/mask.js", "/studio.js", "/studio.css"):
        assert name in page.text and client.get(name).status_code == 200
    assert "index PNG" in client.get("/indexpng.js").text
    for path in ("/index.html", "/static/studio.js", "/../pyproject.toml",
                 "/api/gallery/x/mask.png"):
        assert_error(client.get(path), 404)


def test_gallery_serves_the_checkpoints_dataset_faces(client, synthetic_dataset):
    listing = client.get("/api/gallery").json()
    assert len(listing["faces"]) == 12
    entry = listing["faces"][0]
    mask = decode(client.get(entry["mask"]).content)
    on_disk = regen.read_label_map(synthetic_dataset.root / "labels" / f"{entry['id']}.png")
    np.testing.assert_array_equal(mask, on_disk)
    assert decode(client.get(entry["image"]).content).shape == (SIZE, SIZE, 3)
    assert_error(client.get("/api/gallery/999999/image.png"), 404, "999999", "not in the gallery")


def test_gallery_without_the_dataset_is_empty_with_a_message(tmp_path):
    gallery = load_gallery(tmp_path / "missing")
    assert gallery.faces == {} and "not on this machine" in gallery.message


def test_regen_answers_what_regen_computes(client, studio, face):
    response = regen_face(client, face)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    expected = regen.regenerate_arrays(studio.regenerator, face["label"], face["photo"],
                                       face["label"])
    np.testing.assert_array_equal(decode(response.content), expected)
    np.testing.assert_array_equal(studio.last_mask, face["label"])


def test_exact_is_regen_pixel_for_pixel_and_the_cpu_layout_within_rounding(style_ckpt, face):
    """`--exact` computes what `faceregen regen` does; the default channels_last layout on the
    CPU computes the same function, so values move by at most one, and rarely."""
    plain = regen.regenerate_arrays(regen.load_model(style_ckpt, "cpu"), face["label"],
                                    face["photo"], face["label"])
    answers = {}
    for exact in (True, False):
        studio = load_studio(style_ckpt, "cpu", gallery_size=0, exact=exact)
        with TestClient(create_app(studio)) as client:
            answers[exact] = decode(regen_face(client, face).content).astype(int)
    np.testing.assert_array_equal(answers[True], plain)
    difference = np.abs(answers[False] - plain)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_bf16_is_a_faster_approximation(style_ckpt, face, capsys):
    from faceregen.cli import main as cli_main

    exact = load_studio(style_ckpt, "cpu", gallery_size=0, exact=True)
    studio = load_studio(style_ckpt, "cpu", gallery_size=0, bf16=True)
    with TestClient(create_app(studio)) as client:
        assert client.get("/api/health").json()["precision"] == "bf16"
        answer = decode(regen_face(client, face).content).astype(int)
    with TestClient(create_app(exact)) as client:
        assert client.get("/api/health").json()["precision"] == "fp32"
        plain = decode(regen_face(client, face).content).astype(int)
    assert answer.shape == plain.shape and np.abs(answer - plain).mean() < 8
    with pytest.raises(SystemExit):
        cli_main(["studio", "--ckpt", str(style_ckpt), "--exact", "--bf16"])
    assert "contradict" in capsys.readouterr().err


def test_a_reference_is_encoded_once_while_the_mask_changes(style_ckpt, face):
    studio = load_studio(style_ckpt, "cpu", gallery_size=0)
    calls = []
    studio.regenerator.style_encoder.register_forward_hook(lambda *args: calls.append(1))
    with TestClient(create_app(studio)) as client:
        faces = [post(client, "/api/regen", mask=png(label), ref=png(face["photo"]),
                      ref_mask=png(face["label"])).content
                 for label in (face["label"], face["other"], face["label"])]
        assert len(calls) == 1 and faces[0] == faces[2] and faces[0] != faces[1]
        post(client, "/api/regen", mask=png(face["label"]), ref=png(face["photo"][::-1].copy()),
             ref_mask=png(face["label"][::-1].copy()))
        assert len(calls) == 2


def test_regen_answers_at_the_masks_size_and_reads_colour_masks(client, face):
    wide = np.asarray(Image.fromarray(face["label"]).resize((48, 24), Image.Resampling.NEAREST))
    by_index = post(client, "/api/regen", mask=png(wide), ref=png(face["photo"]),
                    ref_mask=png(face["label"]))
    by_colour = post(client, "/api/regen", mask=png(PALETTE[wide]), ref=png(face["photo"]),
                     ref_mask=png(PALETTE[face["label"]]))
    assert decode(by_index.content).shape == (24, 48, 3)
    assert by_index.content == by_colour.content


def test_edit_from_and_parts_take_parts_of_another_face(client, studio, face):
    parts = "mouth,u_lip,l_lip"
    edited = regen.edit_label(face["label"], face["other"], regen.parse_parts(parts))
    mask = post(client, "/api/mask", mask=png(face["label"]), edit_from=png(face["other"]),
                parts=parts)
    np.testing.assert_array_equal(decode(mask.content), edited)
    response = regen_face(client, face, edit_from=png(face["other"]), parts=parts)
    expected = regen.regenerate_arrays(studio.regenerator, edited, face["photo"], face["label"])
    np.testing.assert_array_equal(decode(response.content), expected)


def test_compare_is_mask_reference_and_face(client, face):
    strip = decode(post(client, "/api/compare", mask=png(face["label"]), ref=png(face["photo"]),
                        ref_mask=png(face["label"])).content)
    face_png = decode(regen_face(client, face).content)
    assert strip.shape == (SIZE, 3 * SIZE, 3)
    np.testing.assert_array_equal(strip[:, :SIZE], PALETTE[face["label"]])
    np.testing.assert_array_equal(strip[:, 2 * SIZE:], face_png)


def test_mask_endpoint_returns_an_index_png(client, face):
    answer = decode(post(client, "/api/mask", mask=png(PALETTE[face["label"]])).content)
    assert answer.dtype == np.uint8 and answer.ndim == 2
    np.testing.assert_array_equal(answer, face["label"])


def test_missing_parser_says_how_to_get_one(client, face):
    response = post(client, "/api/regen", mask=png(face["label"]), ref=png(face["photo"]))
    assert_error(response, 422, "ref_mask", "--parser", "faceregen evaluators train")
    assert_error(post(client, "/api/parse", ref=png(face["photo"])), 422, "ref_mask")


def test_reference_mask_predicted_by_the_parser(style_ckpt, face, tmp_path):
    from faceregen.evaluation.evaluators import save_evaluator
    from faceregen.models.networks import UNetParser

    architecture = {"channels": 4, "depth": 2}
    parser_path = tmp_path / "parser.pt"
    save_evaluator(parser_path, "parser", UNetParser(**architecture), architecture,
                   image_size=SIZE, data_root=tmp_path, steps=0, metrics={})
    studio = load_studio(style_ckpt, "cpu", parser_path, gallery_size=0)
    with TestClient(create_app(studio)) as client:
        assert client.get("/api/health").json()["parser"] is True
        tall = np.asarray(Image.fromarray(face["photo"]).resize((24, 40)))
        predicted = decode(post(client, "/api/parse", ref=png(tall)).content)
        assert predicted.shape == (40, 24) and predicted.max() < len(LABEL_NAMES)
        parsed = post(client, "/api/regen", mask=png(face["label"]), ref=png(tall))
        given = post(client, "/api/regen", mask=png(face["label"]), ref=png(tall),
                     ref_mask=png(predicted))
        assert parsed.status_code == 200 and parsed.content == given.content


def test_baseline_needs_no_reference_and_has_an_empty_gallery(baseline_ckpt, face):
    studio = load_studio(baseline_ckpt, "cpu")
    with TestClient(create_app(studio)) as client:
        health = client.get("/api/health").json()
        assert health["model"] == "pix2pixhd" and health["needs_reference"] is False
        listing = client.get("/api/gallery").json()
        assert listing["faces"] == [] and "not on this machine" in listing["message"]
        response = post(client, "/api/regen", mask=png(face["label"]))
        assert response.status_code == 200
        expected = regen.regenerate_arrays(studio.regenerator, face["label"])
        np.testing.assert_array_equal(decode(response.content), expected)


def bad_requests(face):
    """(what, request kwargs, status, words of the error) for uploads the server must refuse."""
    good = {"ref": png(face["photo"]), "ref_mask": png(face["label"])}
    off_palette = np.full((SIZE, SIZE, 3), (123, 45, 67), np.uint8)
    truncated = png(face["label"])[:40]
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n"
    return [
        ("random bytes", {"mask": b"\x00garbage" * 50, **good}, 400, ["mask", "not an image"]),
        ("truncated png", {"mask": truncated, **good}, 400, ["mask"]),
        ("postscript", {"mask": eps, **good}, 400, ["mask", "not an image"]),
        ("empty file", {"mask": b"", **good}, 400, ["mask", "empty"]),
        ("off-palette colours", {"mask": png(off_palette), **good}, 400, ["mask", "palette"]),
        ("index out of range", {"mask": png(np.full((8, 8), 40, np.uint8)), **good}, 400,
         ["mask", "0..18"]),
        ("bad reference", {"mask": png(face["label"]), "ref": b"nope", "ref_mask": good[
            "ref_mask"]}, 400, ["ref"]),
        ("no mask", {**good}, 400, ["mask", "missing"]),
        ("no reference", {"mask": png(face["label"])}, 400, ["ref", "reference photo"]),
        ("parts alone", {"mask": png(face["label"]), "parts": "mouth", **good}, 400,
         ["edit_from and parts"]),
        ("unknown part", {"mask": png(face["label"]), "edit_from": png(face["other"]),
                          "parts": "moustache", **good}, 400, ["moustache", "valid names"]),
        ("aspect mismatch", {"mask": png(face["label"]), "ref": good["ref"],
                             "ref_mask": png(np.zeros((SIZE, 2 * SIZE), np.uint8))}, 400,
         ["aspect ratio"]),
    ]


def test_bad_uploads_are_4xx_json_and_the_next_good_request_works(client, face):
    expected = regen_face(client, face).content
    for what, files, status, words in bad_requests(face):
        assert_error(post(client, "/api/regen", **files), status, *words), what
        after = regen_face(client, face)
        assert after.status_code == 200 and after.content == expected, what


def test_malformed_requests(client, face):
    assert_error(client.post("/api/regen", json={"mask": "x"}), 400, "multipart/form-data")
    assert_error(client.post("/api/regen", data={"mask": "text"}, files={"x": ("x", b"1")}),
                 400, "mask", "file upload")
    assert_error(client.post("/api/regen", content=b"--x\r\nbroken",
                             headers={"content-type": "multipart/form-data; boundary=x"}), 400)
    assert_error(client.get("/api/regen"), 405)
    assert regen_face(client, face).status_code == 200


def test_limits_on_pixels_and_bytes(style_ckpt, face):
    studio = load_studio(style_ckpt, "cpu", gallery_size=0,
                         limits=Limits(max_upload_bytes=20_000, max_pixels=40 * 40))
    with TestClient(create_app(studio)) as client:
        big = np.zeros((41, 40), np.uint8)
        assert_error(post(client, "/api/regen", mask=png(big), ref=png(face["photo"]),
                          ref_mask=png(face["label"])), 413, "mask", "1640 pixels", "1600")
        noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)
        huge = png(noise, compress_level=0) * 5
        assert_error(post(client, "/api/regen", mask=png(face["label"]), ref=huge,
                          ref_mask=png(face["label"])), 413, "20000 bytes")

        def chunks():  # no Content-Length: the limit counts the streamed body
            yield b"--b\r\nContent-Disposition: form-data; name=\"mask\"; filename=\"m\"\r\n\r\n"
            for _ in range(30):
                yield b"\0" * 1000

        streamed = client.post("/api/regen", content=chunks(),
                               headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(streamed, 413, "20000 bytes")
        assert regen_face(client, face).status_code == 200


def test_a_decompression_bomb_is_refused_from_its_header(client, face):
    """A PNG that claims 60000x60000 pixels in a few bytes is never decoded."""
    import struct
    import zlib

    data = bytearray(png(np.zeros((1, 1), np.uint8)))
    data[16:24] = struct.pack(">II", 60000, 60000)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    for field in ("mask", "ref"):
        files = {"mask": png(face["label"]), "ref": png(face["photo"]),
                 "ref_mask": png(face["label"]), field: bytes(data)}
        assert_error(post(client, "/api/regen", **files), 413, field, "3600000000 pixels")
    assert regen_face(client, face).status_code == 200


def test_an_internal_error_is_json_500_and_the_server_goes_on(client, face, monkeypatch):
    import faceregen.studio.service as service

    expected = regen_face(client, face).content

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(service, "generate_prepared", broken)
    assert_error(regen_face(client, face), 500, "internal error", "RuntimeError")
    monkeypatch.undo()
    assert regen_face(client, face).content == expected


def test_concurrent_requests_are_served_one_at_a_time_with_correct_answers(studio, face):
    """Several clients at once on a real server: every answer is its own mask's face."""
    masks = [face["label"], face["other"], np.roll(face["label"], 3, axis=1),
             np.zeros_like(face["label"])]
    expected = [regen.regenerate_arrays(studio.regenerator, m, face["photo"], face["label"])
                for m in masks]
    results, errors = {}, []

    def worker(index: int, base: str) -> None:
        try:
            with httpx2.Client(base_url=base, timeout=60) as http:
                for _ in range(3):
                    response = http.post("/api/regen", files={
                        "mask": ("m.png", png(masks[index])), "ref": ("r.png", png(face["photo"])),
                        "ref_mask": ("rm.png", png(face["label"]))})
                    results.setdefault(index, []).append(decode(response.content))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    with background_server(studio) as base:
        threads = [threading.Thread(target=worker, args=(i, base)) for i in range(len(masks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    for index, answers in results.items():
        assert len(answers) == 3
        for answer in answers:
            np.testing.assert_array_equal(answer, expected[index])


def test_a_busy_port_is_a_user_error_and_answers_are_not_held_back():
    import socket

    with bind_socket("127.0.0.1", 0) as busy:
        # Accepted connections inherit TCP_NODELAY: no 40 ms Nagle wait on keep-alive.
        assert busy.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with pytest.raises(FaceregenError, match="cannot listen on 127.0.0.1"):
            bind_socket("127.0.0.1", busy.getsockname()[1])


def test_the_command_prints_the_url_and_serves(style_ckpt):
    """`faceregen studio` end to end: the URL line, then the page and the health check."""
    process = subprocess.Popen(
        [sys.executable, "-m", "faceregen", "studio", "--ckpt", str(style_ckpt), "--port", "0",
         "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines[0].startswith("faceregen studio: style_pix2pixhd"), lines
        assert lines[1].startswith("open http://127.0.0.1:"), lines
        url = lines[1].split()[1]
        with httpx2.Client(base_url=url, timeout=30) as http:
            assert http.get("/api/health").json()["size"] == SIZE
            assert "faceregen studio" in http.get("/").text
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_bench_times_the_http_round_trip(capsys):
    """scripts/bench.py --task studio on the tiny networks: a real server, N requests."""
    import json

    from conftest import load_script
    from hydra.core.global_hydra import GlobalHydra

    bench = load_script("bench")
    GlobalHydra.instance().clear()
    bench.main(["--task", "studio", "--size", "32", "--steps", "3", "--warmup", "1",
                "model/size=tiny"])
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "studio" and report["requests"] == 3
    assert 0 < report["min_s"] <= report["median_s"] <= report["p90_s"] <= report["max_s"]
    assert report["answer_shape"] == [32, 32, 3] and report["upload_bytes"] > 0


# --- per-region references (a regional model) ---------------------------------------------------

@pytest.fixture(scope="module")
def regional_studio(tmp_path_factory, tiny_cfg, tiny_checkpoint, synthetic_dataset):
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("studio-regional") / "last.pt",
                           tiny_cfg("model=style_regional", f"data.root={synthetic_dataset.root}"))
    return load_studio(ckpt, "cpu", exact=True)


def test_health_says_whether_the_model_takes_region_references(client, regional_studio):
    assert client.get("/api/health").json()["supports_regions"] is False
    with TestClient(create_app(regional_studio)) as regional_client:
        health = regional_client.get("/api/health").json()
    assert health["supports_regions"] is True and health["max_region_references"] == 3
    assert health["model"] == "style_regional"


def test_region_references_answer_what_regen_computes(regional_studio):
    from faceregen.regen.generate import fit_region_reference, generate_prepared, prepare_pair

    faces = list(regional_studio.gallery.faces.values())[:3]
    main, hair_face, skin_face = ({"label": f.label, "photo": f.photo} for f in faces)
    hair, skin = LABEL_NAMES.index("hair"), LABEL_NAMES.index("skin")
    with TestClient(create_app(regional_studio)) as regional_client:
        plain = regen_face(regional_client, main)
        response = regen_face(regional_client, main,
                              region_ref_1=png(hair_face["photo"]), region_ref_1_regions="hair",
                              region_ref_1_mask=png(hair_face["label"]),
                              region_ref_2=png(skin_face["photo"]),
                              region_ref_2_regions="skin,nose",
                              region_ref_2_mask=png(skin_face["label"]))
    assert response.status_code == 200, response.text
    regenerator = regional_studio.regenerator
    pair = prepare_pair(main["label"], main["photo"], main["label"], regenerator.size)
    pair.region_references = [
        fit_region_reference((hair,), hair_face["photo"], hair_face["label"], regenerator.size,
                             "hair", "hair mask"),
        fit_region_reference((skin, LABEL_NAMES.index("nose")), skin_face["photo"],
                             skin_face["label"], regenerator.size, "skin", "skin mask")]
    expected = generate_prepared(regenerator, [pair])[0]
    np.testing.assert_array_equal(decode(response.content), expected)
    assert not np.array_equal(decode(response.content), decode(plain.content))


def test_region_reference_mistakes_are_4xx(client, face, regional_studio):
    assert_error(regen_face(client, face, region_ref_1=png(face["photo"]),
                            region_ref_1_regions="hair"),
                 400, "region_ref_1", "model=style_regional")
    with TestClient(create_app(regional_studio)) as regional_client:
        assert_error(regen_face(regional_client, face, region_ref_1=png(face["photo"]),
                                region_ref_1_regions="hiar", region_ref_1_mask=png(face["label"])),
                     400, "hiar", "unknown region")
        assert_error(regen_face(regional_client, face, region_ref_1=png(face["photo"])),
                     400, "region_ref_1_regions")
        assert_error(regen_face(regional_client, face, region_ref_1=png(face["photo"]),
                                region_ref_1_regions="hair", region_ref_1_mask=png(face["label"]),
                                region_ref_2=png(face["photo"]), region_ref_2_regions="hair",
                                region_ref_2_mask=png(face["label"])),
                     400, "hair", "already")
        assert regen_face(regional_client, face).status_code == 200
