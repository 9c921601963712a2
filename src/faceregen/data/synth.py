"""Synthetic faces written in CelebAMask-HQ's raw layout.

Each face is drawn once as a label canvas at a supersampled resolution, back to front in a
natural depth order (hair behind the head, shoulders, neck, ears, face, features, front hair,
hat). The photo is rendered from that canvas (shaded, textured regions plus photo-only details
such as irises and teeth), box-downsampled for antialiased edges and saved as JPEG. Each part
mask is the part's drawn shape where no part that comes earlier in the merge order (PART_NAMES)
was painted on top, so merging the part masks in that order gives back exactly the drawn
canvas, while the masks still overlap the way the real annotations do (the skin mask runs under
the eyes).

A face depends only on (seed, k): the set is the same for any number of workers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from faceregen.data import celebamask as layout
from faceregen.errors import FaceregenError
from faceregen.labels import ATTRIBUTE_NAMES, LABEL_NAMES, PART_NAMES
from faceregen.utils import atomic_path, ignore_interrupts, output_folder

L = {name: index for index, name in enumerate(LABEL_NAMES)}
JPEG_QUALITY = 92

# Photo-only details: drawn on a second canvas, applied only inside the region they belong to.
IRIS, PUPIL, GLINT, LENS, NOSTRIL, TEETH, LASH = range(1, 8)
DETAIL_REGIONS = {
    IRIS: (L["l_eye"], L["r_eye"]),
    PUPIL: (L["l_eye"], L["r_eye"]),
    GLINT: (L["l_eye"], L["r_eye"]),
    LENS: (L["eye_g"],),
    NOSTRIL: (L["nose"],),
    TEETH: (L["mouth"],),
    LASH: (L["l_eye"], L["r_eye"]),
}

SKIN_TONES = np.array([  # pale first: Pale_Skin means tone 0
    (0.97, 0.86, 0.80), (0.93, 0.76, 0.64), (0.85, 0.65, 0.50), (0.74, 0.53, 0.38),
    (0.58, 0.39, 0.26), (0.40, 0.26, 0.17),
])
HAIR_COLORS = {
    "Black_Hair": (0.07, 0.06, 0.06), "Brown_Hair": (0.36, 0.22, 0.12),
    "Blond_Hair": (0.86, 0.70, 0.42), "Gray_Hair": (0.66, 0.65, 0.64),
    "auburn": (0.55, 0.22, 0.10),
}
IRIS_COLORS = np.array([
    (0.35, 0.20, 0.10), (0.20, 0.35, 0.65), (0.25, 0.45, 0.25), (0.45, 0.35, 0.18),
    (0.45, 0.50, 0.55),
])
LIPSTICKS = np.array([
    (0.75, 0.05, 0.12), (0.85, 0.30, 0.45), (0.45, 0.08, 0.25), (0.60, 0.10, 0.08),
])
METALS = np.array([(0.88, 0.72, 0.32), (0.82, 0.82, 0.86), (0.95, 0.93, 0.88)])
FRAMES = np.array([
    (0.05, 0.05, 0.05), (0.35, 0.20, 0.10), (0.75, 0.62, 0.30), (0.55, 0.05, 0.08),
])


@dataclass(frozen=True)
class ShapeAttribute:
    """An attribute that the synthetic set decides by a threshold on a continuous shape value.

    A face first draws whether it has the attribute (probability ``share``), then the value
    from that class's range. The ranges leave a gap around ``threshold`` wide enough to see at
    64 px (about half a pixel or more at the face's edges): a value drawn uniformly across the
    threshold makes faces just either side of it look the same, so no classifier, and no
    person, could tell the attribute from the photo, and the attribute file would promise what
    the drawing does not show.
    """

    share: float
    without: tuple[float, float]
    with_: tuple[float, float]

    @property
    def threshold(self) -> float:
        return (self.without[1] + self.with_[0]) / 2

    def draw(self, rng: np.random.Generator) -> float:
        low, high = self.with_ if rng.random() < self.share else self.without
        return float(rng.uniform(low, high))


# Face units (half the face width = 1; about 13 px at 64 px). Big_Lips is decided by the lip
# scale, which multiplies both lip thicknesses.
SHAPE_ATTRIBUTES = {
    "Smiling": ShapeAttribute(0.5, without=(-0.3, 0.05), with_=(0.65, 1.0)),
    "Narrow_Eyes": ShapeAttribute(0.2, without=(0.08, 0.12), with_=(0.035, 0.055)),
    "Bushy_Eyebrows": ShapeAttribute(0.35, without=(0.05, 0.075), with_=(0.115, 0.145)),
    "Arched_Eyebrows": ShapeAttribute(0.35, without=(0.0, 0.03), with_=(0.08, 0.12)),
    "Big_Lips": ShapeAttribute(0.3, without=(0.75, 0.95), with_=(1.3, 1.55)),
    "Big_Nose": ShapeAttribute(0.25, without=(0.15, 0.21), with_=(0.26, 0.3)),
}


@dataclass
class Face:
    """Everything sampled for one face: geometry in face units (half face width = 1)."""

    center: tuple[float, float]
    half_width: float  # pixels on the supersampled canvas
    roll: float  # radians
    yaw: float  # -1..1, shifts features sideways by depth
    length: float
    jaw: float  # exponent of the lower outline: < 1 square, > 1 pointed
    male: bool
    hair_style: str  # bald, short, medium, long
    hair_color: str
    wavy: bool
    bangs: bool
    hairline: float
    side_locks: bool
    hat: bool
    glasses: bool
    earrings: bool
    necklace: bool
    eye_v: float
    eye_u: float
    eye_half_width: float
    eye_open: float
    brow_gap: float
    brow_arch: float
    brow_thickness: float
    nose_tip: float
    nose_width: float
    mouth_v: float
    mouth_half_width: float
    smile: float
    mouth_open: float
    lip_scale: float
    lip_upper: float
    lip_lower: float
    neck_half_width: float
    shoulder_v: float
    neckline: str
    lipstick: bool
    stubble: bool


def sample_face(rng: np.random.Generator, canvas: int) -> Face:
    """Draw the geometry and the discrete choices; colours are drawn later, independently."""
    male = rng.random() < 0.42
    if male:
        hair_style = rng.choice(["bald", "short", "medium"], p=[0.1, 0.72, 0.18])
    else:
        hair_style = rng.choice(["short", "medium", "long"], p=[0.06, 0.4, 0.54])
    smile = SHAPE_ATTRIBUTES["Smiling"].draw(rng)
    lip_scale = SHAPE_ATTRIBUTES["Big_Lips"].draw(rng)
    return Face(
        center=(canvas * (0.5 + rng.normal(0, 0.02)), canvas * (0.46 + rng.normal(0, 0.02))),
        half_width=canvas * rng.uniform(0.18, 0.235),
        roll=math.radians(float(np.clip(rng.normal(0, 7), -18, 18))),
        yaw=float(rng.uniform(-1, 1)),
        length=float(rng.uniform(0.92, 1.12)),
        jaw=float(rng.uniform(0.6, 1.35)),
        male=bool(male),
        hair_style=str(hair_style),
        hair_color=str(rng.choice(list(HAIR_COLORS), p=[0.3, 0.3, 0.18, 0.1, 0.12])),
        wavy=bool(rng.random() < 0.4),
        bangs=bool(hair_style != "bald" and rng.random() < (0.15 if male else 0.4)),
        hairline=float(rng.uniform(-0.85, -0.65) if not male or rng.random() < 0.75
                       else rng.uniform(-1.05, -0.92)),
        side_locks=bool(hair_style in ("medium", "long") and rng.random() < 0.6),
        hat=bool(rng.random() < 0.1),
        glasses=bool(rng.random() < 0.15),
        earrings=bool(rng.random() < (0.05 if male else 0.45)),
        necklace=bool(rng.random() < (0.04 if male else 0.25)),
        eye_v=float(rng.uniform(-0.12, 0.0)),
        eye_u=float(rng.uniform(0.38, 0.46)),
        eye_half_width=float(rng.uniform(0.17, 0.22)),
        eye_open=SHAPE_ATTRIBUTES["Narrow_Eyes"].draw(rng),
        brow_gap=float(rng.uniform(0.18, 0.3)),
        brow_arch=SHAPE_ATTRIBUTES["Arched_Eyebrows"].draw(rng),
        brow_thickness=SHAPE_ATTRIBUTES["Bushy_Eyebrows"].draw(rng),
        nose_tip=float(rng.uniform(0.36, 0.46)),
        nose_width=SHAPE_ATTRIBUTES["Big_Nose"].draw(rng),
        mouth_v=float(rng.uniform(0.74, 0.84)),
        mouth_half_width=float(rng.uniform(0.3, 0.4) + 0.05 * max(smile, 0)),
        smile=smile,
        mouth_open=float(rng.uniform(0.06, 0.15) if rng.random() < 0.45 else 0.0),
        lip_scale=lip_scale,
        lip_upper=float(rng.uniform(0.06, 0.068)) * lip_scale,
        lip_lower=float(rng.uniform(0.076, 0.086)) * lip_scale,
        neck_half_width=float(rng.uniform(0.48, 0.62)),
        shoulder_v=float(rng.uniform(1.95, 2.3)),
        neckline=str(rng.choice(["round", "v", "high"], p=[0.45, 0.35, 0.2])),
        lipstick=bool(rng.random() < (0.04 if male else 0.5)),
        stubble=bool(male and rng.random() < 0.5),
    )


class Scene:
    """Label canvas, per-part drawn shapes and photo details, with a face-to-pixel transform."""

    def __init__(self, face: Face, size: int):
        self.face = face
        self.size = size
        self.label = Image.new("L", (size, size), 0)
        self.detail = Image.new("L", (size, size), 0)
        self.shapes: dict[int, Image.Image] = {}
        self._cos, self._sin = math.cos(face.roll), math.sin(face.roll)

    def to_pixels(self, u, v) -> list[tuple[float, float]]:
        u = np.asarray(u, dtype=np.float64) * self.face.half_width
        v = np.asarray(v, dtype=np.float64) * self.face.half_width
        x = self.face.center[0] + self._cos * u - self._sin * v
        y = self.face.center[1] + self._sin * u + self._cos * v
        return list(zip(x.tolist(), y.tolist()))

    def _shape(self, part: int) -> Image.Image:
        if part not in self.shapes:
            self.shapes[part] = Image.new("L", (self.size, self.size), 0)
        return self.shapes[part]

    def polygon(self, part: int, u, v) -> None:
        points = self.to_pixels(u, v)
        ImageDraw.Draw(self.label).polygon(points, fill=part)
        ImageDraw.Draw(self._shape(part)).polygon(points, fill=255)

    def line(self, part: int, u, v, width: float) -> None:
        points = self.to_pixels(u, v)
        pixels = max(1, round(width * self.face.half_width))
        ImageDraw.Draw(self.label).line(points, fill=part, width=pixels, joint="curve")
        ImageDraw.Draw(self._shape(part)).line(points, fill=255, width=pixels, joint="curve")

    def detail_polygon(self, code: int, u, v) -> None:
        ImageDraw.Draw(self.detail).polygon(self.to_pixels(u, v), fill=code)

    def detail_line(self, code: int, u, v, width: float) -> None:
        pixels = max(1, round(width * self.face.half_width))
        ImageDraw.Draw(self.detail).line(self.to_pixels(u, v), fill=code, width=pixels,
                                         joint="curve")


def ellipse(cu, cv, ru, rv, n=48, start=0.0, stop=2 * math.pi):
    t = np.linspace(start, stop, n, endpoint=stop - start < 2 * math.pi - 1e-9)
    return cu + ru * np.cos(t), cv + rv * np.sin(t)


def superellipse(cu, cv, ru, rv, power, n=48):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return (cu + ru * np.sign(c) * np.abs(c) ** (2 / power),
            cv + rv * np.sign(s) * np.abs(s) ** (2 / power))


def head_outline(face: Face, scale: float = 1.0, n: int = 72):
    """Skull-and-jaw outline: round forehead, lower half squarer or pointier by ``jaw``."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    u = np.where(lower, np.sign(c) * np.abs(c) ** face.jaw, c) * scale
    v = np.where(lower, s * 1.32 * face.length, s * 1.42 * face.length) * scale
    return u + 0.05 * face.yaw, v


def wave(u, v, amplitude, periods, phase):
    """Push an outline outwards and inwards along its length (wavy hair)."""
    t = np.linspace(0, 1, len(u))
    r = 1 + amplitude * np.sin(2 * math.pi * periods * t + phase)
    return u * r, v * r


def draw_hair_back(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    """Hair behind the head: a cap for short hair, a curtain down to the jaw or shoulders."""
    if face.hair_style == "bald":
        return
    if face.hair_style == "short":
        u, v = ellipse(0.04 * face.yaw, -0.3, 1.14, 1.36 * face.length, n=60)
    else:
        bottom = 1.3 if face.hair_style == "medium" else rng.uniform(2.4, 3.2)
        width = rng.uniform(1.18, 1.32) if face.hair_style == "medium" else rng.uniform(1.3, 1.5)
        top_u, top_v = ellipse(0, -0.3, 1.16, 1.38 * face.length, n=40, start=math.pi,
                               stop=2 * math.pi)
        u = np.concatenate([top_u, [width, width * 0.92, -width * 0.92, -width]])
        v = np.concatenate([top_v, [0.2, bottom, bottom, 0.2]])
        u = u + 0.04 * face.yaw
    if face.wavy:
        u, v = wave(u, v + 0.3, 0.07, 9, rng.uniform(0, 6))
        v = v - 0.3
    scene.polygon(L["hair"], u, v)


def draw_cloth_and_neck(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    """Neck column, shoulders, then the neckline cut out of the cloth (drawn as neck)."""
    w, sv = face.neck_half_width, face.shoulder_v
    scene.polygon(L["neck"], [-w, w, w * 1.05, -w * 1.05], [0.4, 0.4, sv + 0.5, sv + 0.5])
    spread = rng.uniform(2.6, 3.4)
    u = [-w - 0.1, -1.6, -spread, -spread - 0.6, spread + 0.6, spread, 1.6, w + 0.1]
    v = [sv - 0.15, sv + 0.15, sv + 0.7, 8.0, 8.0, sv + 0.7, sv + 0.15, sv - 0.15]
    scene.polygon(L["cloth"], u, v)
    depth = rng.uniform(0.25, 0.7)
    if face.neckline == "v":
        scene.polygon(L["neck"], [-w - 0.05, w + 0.05, 0], [sv - 0.2, sv - 0.2, sv + depth])
    elif face.neckline == "round":
        u, v = ellipse(0, sv - 0.2, w + 0.15, depth, n=32, start=0, stop=math.pi)
        scene.polygon(L["neck"], u, v)


def draw_necklace(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    if not face.necklace:
        return
    drop = rng.uniform(0.3, 0.6)
    t = np.linspace(-1, 1, 25)
    u = t * (face.neck_half_width + 0.02)
    v = face.shoulder_v - 0.55 + drop * (1 - t**2)
    scene.line(L["neck_l"], u, v, width=rng.uniform(0.035, 0.07))
    if rng.random() < 0.5:
        pu, pv = ellipse(0, v[12] + 0.06, 0.05, 0.07, n=16)
        scene.polygon(L["neck_l"], pu, pv)


def ear_visibility(face: Face, side: int) -> float:
    """1 facing the camera; the ear on the side the face turns towards goes behind the head."""
    return 1.0 - 0.9 * side * face.yaw


def draw_ears_and_earrings(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    earring_kind = int(rng.integers(3))  # stud, hoop or drop; the same on both ears
    for side, name in ((-1, "l_ear"), (1, "r_ear")):
        visibility = ear_visibility(face, side)
        if visibility < 0.3:
            continue
        ru = 0.17 * float(np.clip(visibility, 0.5, 1.3))
        cu = side * (0.98 + 0.04 * (visibility - 1)) + 0.05 * face.yaw
        u, v = ellipse(cu, 0.1, ru, 0.3, n=32)
        scene.polygon(L[name], u, v)
        if face.earrings:
            lobe_u, lobe_v = cu + side * 0.02, 0.44
            if earring_kind == 0:
                u, v = ellipse(lobe_u, lobe_v, 0.045, 0.045, n=16)
                scene.polygon(L["ear_r"], u, v)
            elif earring_kind == 1:
                u, v = ellipse(lobe_u, lobe_v + 0.1, 0.09, 0.1, n=24)
                scene.line(L["ear_r"], np.append(u, u[0]), np.append(v, v[0]), width=0.03)
            else:
                scene.line(L["ear_r"], [lobe_u, lobe_u], [lobe_v, lobe_v + 0.12], width=0.025)
                u, v = ellipse(lobe_u, lobe_v + 0.17, 0.04, 0.06, n=16)
                scene.polygon(L["ear_r"], u, v)


def draw_skin(scene: Scene, face: Face) -> None:
    u, v = head_outline(face)
    scene.polygon(L["skin"], u, v)


def draw_nose(scene: Scene, face: Face) -> None:
    shift = 0.22 * face.yaw
    top, tip, w = face.eye_v + 0.06, face.nose_tip, face.nose_width
    bridge = 0.07
    u = [-bridge, bridge, bridge + 0.02, w, w * 0.8, 0, -w * 0.8, -w, -bridge - 0.02]
    v = [top, top, tip - 0.14, tip - 0.01, tip + 0.06, tip + 0.08, tip + 0.06, tip - 0.01,
         tip - 0.14]
    scene.polygon(L["nose"], np.array(u) + shift, v)
    for side in (-1, 1):
        nu, nv = ellipse(shift + side * w * 0.45, tip + 0.035, w * 0.22, 0.025, n=16)
        scene.detail_polygon(NOSTRIL, nu, nv)


def eye_center(face: Face, side: int) -> tuple[float, float]:
    return side * face.eye_u + 0.15 * face.yaw, face.eye_v


def draw_glasses(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    """Lenses, frame, bridge and arms are all eye_g; the lens interior is a photo detail."""
    if not face.glasses:
        return
    half_w, half_h = rng.uniform(0.2, 0.26), rng.uniform(0.12, 0.18)
    power = rng.choice([2.0, 3.0, 5.0])
    frame = rng.uniform(0.02, 0.05)
    for side in (-1, 1):
        cu, cv = eye_center(face, side)
        cv += 0.01
        u, v = superellipse(cu, cv, half_w + frame, half_h + frame, power)
        scene.polygon(L["eye_g"], u, v)
        u, v = superellipse(cu, cv, half_w, half_h, power)
        scene.detail_polygon(LENS, u, v)
        arm_end = side * (1.02 + 0.05 * face.yaw * side)
        scene.line(L["eye_g"], [cu + side * (half_w + frame * 0.5), arm_end], [cv - 0.04, cv],
                   width=frame * 1.2)
    left, right = eye_center(face, -1)[0], eye_center(face, 1)[0]
    scene.line(L["eye_g"], [left + half_w, right - half_w], [face.eye_v - 0.02] * 2,
               width=frame * 1.2)


def draw_eyes(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    gaze = rng.uniform(-0.4, 0.4) + 0.3 * face.yaw
    for side, name in ((-1, "l_eye"), (1, "r_eye")):
        cu, cv = eye_center(face, side)
        x = np.linspace(-1, 1, 25)
        outward = side * 0.25
        upper = -face.eye_open * (1 - x**2) ** 0.8 * (1 + outward * x)
        lower = 0.6 * face.eye_open * (1 - x**2) ** 0.9
        tilt = -0.02 * side * x
        u = np.concatenate([x, x[::-1]]) * face.eye_half_width + cu
        v = np.concatenate([upper + tilt, (lower + tilt)[::-1]]) + cv
        scene.polygon(L[name], u, v)
        scene.detail_line(LASH, x * face.eye_half_width + cu, upper + tilt + cv, width=0.025)
        iris_u = cu + gaze * face.eye_half_width * 0.4
        radius = min(0.075, face.eye_open * 1.1)
        scene.detail_polygon(IRIS, *ellipse(iris_u, cv, radius, radius, n=20))
        scene.detail_polygon(PUPIL, *ellipse(iris_u, cv, radius * 0.42, radius * 0.42, n=12))
        scene.detail_polygon(GLINT, *ellipse(iris_u + 0.02, cv - 0.02, 0.014, 0.014, n=8))


def draw_brows(scene: Scene, face: Face) -> None:
    for side, name in ((-1, "l_brow"), (1, "r_brow")):
        cu, cv = eye_center(face, side)
        x = np.linspace(-1, 1, 20)
        span_u = cu + side * (0.03 + 0.22 * x)  # inner end (x=-1) towards the nose
        arch = face.brow_arch * (1 - ((x - 0.2) / 1.2) ** 2)
        base = cv - face.eye_open - face.brow_gap - arch
        thickness = face.brow_thickness * (1.1 - 0.45 * (x + 1) / 2)
        u = np.concatenate([span_u, span_u[::-1]])
        v = np.concatenate([base - thickness / 2, (base + thickness / 2)[::-1]])
        scene.polygon(L[name], u, v)


def draw_mouth(scene: Scene, face: Face) -> None:
    """Upper lip, lower lip and, if open, the inner mouth between them (teeth as a detail)."""
    x = np.linspace(-1, 1, 31)
    cu = 0.15 * face.yaw
    u = cu + x * face.mouth_half_width
    line = face.mouth_v - 0.12 * face.smile * x**2
    gap = face.mouth_open * (1 - x**2) ** 0.7
    bow = 0.3 * face.lip_upper * np.exp(-((x / 0.12) ** 2))
    upper_top = line - gap / 2 - face.lip_upper * (1 - x**2) ** 0.6 + bow
    upper_bottom = line - gap / 2
    lower_top = line + gap / 2
    lower_bottom = line + gap / 2 + face.lip_lower * (1 - x**2) ** 0.6
    scene.polygon(L["u_lip"], np.concatenate([u, u[::-1]]),
                  np.concatenate([upper_top, upper_bottom[::-1]]))
    scene.polygon(L["l_lip"], np.concatenate([u, u[::-1]]),
                  np.concatenate([lower_top, lower_bottom[::-1]]))
    if face.mouth_open > 0:
        inner = slice(2, -2)
        scene.polygon(L["mouth"], np.concatenate([u[inner], u[inner][::-1]]),
                      np.concatenate([upper_bottom[inner], lower_top[inner][::-1]]))
        if face.smile > 0.2:
            teeth = upper_bottom + 0.45 * gap
            scene.detail_polygon(TEETH, np.concatenate([u[inner], u[inner][::-1]]),
                                 np.concatenate([upper_bottom[inner] - 0.01,
                                                 teeth[inner][::-1]]))


def draw_hair_front(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    """Hair over the forehead (hairline or bangs) and locks down the sides of the face."""
    if face.hair_style == "bald":
        return
    top_u, top_v = head_outline(face, scale=1.1, n=96)
    upper = top_v < 0
    order = np.argsort(np.arctan2(top_v[upper], top_u[upper]))
    arc_u, arc_v = top_u[upper][order], top_v[upper][order]  # from left temple over the top
    x = np.linspace(1.06, -1.06, 41)  # right to left, closing the polygon
    if face.bangs:
        fringe = -rng.uniform(0.38, 0.55) + 0.045 * np.abs(np.sin(x * rng.uniform(9, 15)))
        edge = np.where(np.abs(x) < 0.9, fringe, -0.2)
    else:
        parting = rng.uniform(-0.4, 0.4)
        edge = face.hairline + (np.abs(x - parting * 0.3) / 1.06) ** 2.2 * (
            -0.25 - face.hairline)
    u = np.concatenate([arc_u, x])
    v = np.concatenate([arc_v, edge])
    if face.wavy:
        u, v = wave(u, v, 0.03, 12, rng.uniform(0, 6))
    scene.polygon(L["hair"], u, v)
    if face.side_locks:
        bottom = 1.2 if face.hair_style == "medium" else rng.uniform(2.3, 3.0)
        for side in (-1, 1):
            inner, outer = rng.uniform(0.8, 0.9), rng.uniform(1.15, 1.3)
            t = np.linspace(0, 1, 16)
            bulge = 0.08 * np.sin(math.pi * t)
            inner_u = side * (inner + 0.1 * t**2 - bulge)
            outer_u = side * (outer + 0.05 * t + bulge)
            lv = -0.4 + (bottom + 0.4) * t
            scene.polygon(L["hair"], np.concatenate([inner_u, outer_u[::-1]]) + 0.04 * face.yaw,
                          np.concatenate([lv, lv[::-1] - 0.05]))


def draw_hat(scene: Scene, face: Face, rng: np.random.Generator) -> None:
    if not face.hat:
        return
    brim = rng.uniform(-0.95, -0.7) * face.length
    height = rng.uniform(0.8, 1.1)
    u, v = ellipse(0.04 * face.yaw, brim, 1.18, height, n=40, start=math.pi, stop=2 * math.pi)
    scene.polygon(L["hat"], np.append(u, u[0]), np.append(v, v[0]))
    if rng.random() < 0.6:
        width = rng.uniform(1.25, 1.6)
        scene.polygon(L["hat"], [-width, width, width, -width],
                      [brim - 0.12, brim - 0.12, brim + 0.06, brim + 0.06])


def draw_face(face: Face, size: int, rng: np.random.Generator) -> Scene:
    """Paint every part back to front; returns the scene with label, shapes and details."""
    scene = Scene(face, size)
    draw_hair_back(scene, face, rng)
    draw_cloth_and_neck(scene, face, rng)
    draw_necklace(scene, face, rng)
    draw_ears_and_earrings(scene, face, rng)
    draw_skin(scene, face)
    draw_nose(scene, face)
    draw_glasses(scene, face, rng)
    draw_eyes(scene, face, rng)
    draw_brows(scene, face)
    draw_mouth(scene, face)
    draw_hair_front(scene, face, rng)
    draw_hat(scene, face, rng)
    return scene


@dataclass
class Look:
    """Appearance, drawn independently of the geometry."""

    colors: np.ndarray  # [19, 3] base colour per label
    details: dict[int, tuple[np.ndarray, float]]  # code -> (colour, opacity)
    light: tuple[float, float]
    pale: bool
    cloth_pattern: str
    stubble: np.ndarray
    blush: np.ndarray | None  # Rosy_Cheeks
    eye_shadow: np.ndarray | None  # with lipstick: Heavy_Makeup


def sample_look(face: Face, rng: np.random.Generator) -> Look:
    tone = int(rng.choice(len(SKIN_TONES), p=[0.12, 0.3, 0.22, 0.16, 0.12, 0.08]))
    skin = np.clip(SKIN_TONES[tone] * rng.uniform(0.95, 1.05, 3), 0, 1)
    hair = np.clip(np.array(HAIR_COLORS[face.hair_color]) * rng.uniform(0.85, 1.15, 3), 0, 1)
    if face.lipstick:
        lips = LIPSTICKS[rng.integers(len(LIPSTICKS))] * rng.uniform(0.85, 1.1)
    else:
        lips = skin * np.array([0.86, 0.58, 0.58])
    background = hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.6), rng.uniform(0.25, 0.95))
    cloth = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.85), rng.uniform(0.1, 0.9))
    hat = hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.15, 0.85))
    metal = METALS[rng.integers(len(METALS))]
    colors = np.zeros((len(LABEL_NAMES), 3))
    colors[L["background"]] = background
    for name in ("skin", "l_ear", "r_ear", "neck"):
        colors[L[name]] = skin
    colors[L["nose"]] = skin * 0.97
    colors[L["neck"]] = skin * 0.88
    colors[L["eye_g"]] = FRAMES[rng.integers(len(FRAMES))]
    colors[[L["l_eye"], L["r_eye"]]] = (0.93, 0.91, 0.88)
    colors[[L["l_brow"], L["r_brow"]]] = np.minimum(hair, 0.45) * 0.7
    colors[L["mouth"]] = (0.32, 0.06, 0.08)
    colors[L["u_lip"]] = lips * 0.92
    colors[L["l_lip"]] = lips
    colors[L["hair"]] = hair
    colors[L["hat"]] = hat
    colors[[L["ear_r"], L["neck_l"]]] = metal
    colors[L["cloth"]] = cloth
    lens_tint = rng.uniform(0.08, 0.9) if rng.random() < 0.3 else rng.uniform(0.02, 0.12)
    details = {
        IRIS: (IRIS_COLORS[rng.integers(len(IRIS_COLORS))] * rng.uniform(0.8, 1.2), 1.0),
        PUPIL: (np.array([0.03, 0.03, 0.03]), 1.0),
        GLINT: (np.array([1.0, 1.0, 1.0]), 0.9),
        LENS: (skin * (1 - lens_tint) + np.array([0.05, 0.06, 0.08]) * lens_tint, 1.0),
        NOSTRIL: (skin * 0.35, 0.8),
        TEETH: (np.array([0.93, 0.91, 0.84]), 1.0),
        LASH: (np.array([0.08, 0.06, 0.05]), 0.9),
    }
    angle = rng.uniform(0, 2 * math.pi)
    return Look(colors=colors, details=details, light=(math.cos(angle), math.sin(angle)),
                pale=tone == 0, cloth_pattern=str(rng.choice(["plain", "stripes", "checks"],
                                                            p=[0.6, 0.25, 0.15])),
                stubble=(hair * 0.5 + skin * 0.3).astype(np.float32),
                blush=np.array([0.9, 0.35, 0.4]) if rng.random() < (
                    0.04 if face.male else 0.25) else None,
                eye_shadow=hsv_to_rgb(rng.random(), 0.5, 0.45) if rng.random() < (
                    0.02 if face.male else 0.3) else None)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Noise with ``cells`` (rows, cols) features across the image, zero-mean, unit-ish std."""
    coarse = rng.standard_normal(cells).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def region_table(names) -> np.ndarray:
    table = np.zeros(len(LABEL_NAMES), dtype=bool)
    table[[L[name] for name in names]] = True
    return table


FACIAL = region_table(["skin", "nose", "l_ear", "r_ear", "u_lip", "l_lip", "l_brow", "r_brow"])
METAL = region_table(["ear_r", "neck_l"])
LIPS = region_table(["u_lip", "l_lip"])


def flat_colors(look: Look) -> np.ndarray:
    """[detail code, label] -> uint8 RGB: a detail changes the colour only in its own regions."""
    table = np.repeat(look.colors[None], len(DETAIL_REGIONS) + 1, axis=0)
    for code, (rgb, alpha) in look.details.items():
        regions = list(DETAIL_REGIONS[code])
        table[code, regions] = (1 - alpha) * table[code, regions] + alpha * np.asarray(rgb)
    return (np.clip(table, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_photo(scene: Scene, look: Look, rng: np.random.Generator,
                 out_size: int) -> Image.Image:
    """Flat colours at canvas size, box-downsampled (antialiased), then shaded and textured.

    Shading and texture are smooth, so they are computed at the output size, where they cost a
    fraction of the canvas-size work; the region of each output pixel is its centre sample.
    """
    face = scene.face
    factor = scene.size // out_size
    label_full = np.asarray(scene.label)
    flat = Image.fromarray(flat_colors(look)[np.asarray(scene.detail), label_full])
    color = np.asarray(flat.reduce(factor), dtype=np.float32) / 255
    label = label_full[factor // 2::factor, factor // 2::factor]

    grid = (np.arange(out_size, dtype=np.float32) + 0.5) * factor
    dx = (grid[None, :] - face.center[0]) / face.half_width
    dy = (grid[:, None] - face.center[1]) / face.half_width
    cos, sin = math.cos(face.roll), math.sin(face.roll)
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    lx, ly = look.light
    directional = lx * u + ly * v

    shade = 1.0 + 0.05 * directional
    sphere = 1.0 - 0.22 * (u**2 + (v / 1.5) ** 2) + 0.12 * directional
    shade = np.where(FACIAL[label], sphere, shade)
    shade = np.where(label == L["neck"], shade * (0.8 + 0.2 * np.clip(v - 1.2, 0, 1)), shade)
    strands = smooth_noise(rng, out_size, (6, max(8, out_size // 3)))
    sheen = (1 + 0.25 * np.exp(-(((v + 1.0) / 0.25) ** 2)) + 0.2 * strands) * (
        0.9 + 0.1 * directional)
    shade = np.where(label == L["hair"], shade * sheen, shade)
    folds = 1 + 0.12 * smooth_noise(rng, out_size, (5, 5))
    cloth = folds * cloth_pattern(look.cloth_pattern, u, v)
    shade = np.where(label == L["cloth"], shade * cloth, shade)
    glitter = 0.8 + 0.5 * np.clip(smooth_noise(rng, out_size, (12, 12)), -0.6, 1)
    shade = np.where(METAL[label], glitter, shade)
    blobs = smooth_noise(rng, out_size, (3, 3))
    shade = np.where(label == L["background"], 1 + 0.05 * directional + 0.08 * blobs, shade)
    nose_side = np.clip(1 - 0.5 * (u - 0.22 * face.yaw) * lx, 0.8, 1.1)
    shade = np.where(label == L["nose"], shade * nose_side, shade)
    gloss = 1 + 0.12 * np.exp(-(((v - face.mouth_v - 0.04) / 0.05) ** 2))
    shade = np.where(LIPS[label], shade * gloss, shade)
    shade *= 1 + 0.015 * smooth_noise(rng, out_size, (out_size // 2, out_size // 2))

    color *= shade[..., None]
    skin = label == L["skin"]
    if look.blush is not None:
        spots = sum(soft_spot(u, v, side * 0.55 + 0.1 * face.yaw, 0.38, 0.22, 0.14)
                    for side in (-1, 1))
        color = blend(color, look.blush * shade[..., None], 0.35 * spots * skin)
    if look.eye_shadow is not None:
        spots = sum(soft_spot(u, v, eye_center(face, side)[0], face.eye_v - face.eye_open - 0.03,
                              face.eye_half_width * 1.1, 0.06) for side in (-1, 1))
        color = blend(color, look.eye_shadow * shade[..., None], 0.6 * spots * skin)
    if face.stubble:
        growth = 0.5 + 0.5 * np.tanh((v - face.nose_tip - 0.15) / 0.08)
        speckle = np.clip(0.6 + 0.5 * smooth_noise(rng, out_size, (out_size, out_size)), 0, 1)
        color = blend(color, look.stubble * shade[..., None], 0.3 * growth * speckle * skin)
    color += rng.normal(0, 0.008, color.shape).astype(np.float32)
    return Image.fromarray((np.clip(color, 0, 1) * 255 + 0.5).astype(np.uint8))


def soft_spot(u, v, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
    """A Gaussian bump in face coordinates, for makeup with no hard edge."""
    return np.exp(-(((u - cu) / ru) ** 2) - ((v - cv) / rv) ** 2)


def blend(color: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    weight = weight[..., None]
    return color * (1 - weight) + target * weight


def cloth_pattern(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if kind == "stripes":
        return 1 + 0.18 * np.tanh(3 * np.sin(v * 9))
    if kind == "checks":
        return 1 + 0.12 * np.tanh(3 * np.sin(u * 7)) * np.tanh(3 * np.sin(v * 7))
    return np.ones_like(u)


def part_masks(scene: Scene, mask_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label map and binary part masks at ``mask_size``, sampled from the same canvas.

    A part's mask is its drawn shape minus pixels that ended up under a part earlier in merge
    order, so merging the masks in the merge order reproduces the canvas exactly.
    """
    factor = scene.size // mask_size
    offset = factor // 2
    label = np.asarray(scene.label)[offset::factor, offset::factor]
    masks = {}
    for index, image in scene.shapes.items():
        shape = np.asarray(image)[offset::factor, offset::factor] > 0
        mask = shape & (label >= index)
        if mask.any():
            masks[LABEL_NAMES[index]] = mask
    return label, masks


def face_attributes(face: Face, look: Look, label: np.ndarray) -> list[int]:
    """The 40 attributes: those the drawing controls follow what is visible, the rest are -1."""
    present = set(np.unique(label).tolist())
    hair_visible = L["hair"] in present
    shape = SHAPE_ATTRIBUTES
    on = {
        "Bald": face.hair_style == "bald",
        "Bangs": face.bangs and hair_visible,
        "Eyeglasses": L["eye_g"] in present,
        "Wearing_Hat": L["hat"] in present,
        "Smiling": face.smile > shape["Smiling"].threshold,
        "Mouth_Slightly_Open": L["mouth"] in present,
        "Wearing_Earrings": L["ear_r"] in present,
        "Wearing_Necklace": L["neck_l"] in present,
        "Pale_Skin": look.pale,
        "Wearing_Lipstick": face.lipstick,
        "Rosy_Cheeks": look.blush is not None,
        "Heavy_Makeup": face.lipstick and look.eye_shadow is not None,
        "Narrow_Eyes": face.eye_open < shape["Narrow_Eyes"].threshold,
        "Bushy_Eyebrows": face.brow_thickness > shape["Bushy_Eyebrows"].threshold,
        "Arched_Eyebrows": face.brow_arch > shape["Arched_Eyebrows"].threshold,
        "Big_Lips": face.lip_scale > shape["Big_Lips"].threshold,
        "Big_Nose": face.nose_width > shape["Big_Nose"].threshold,
        "Male": face.male,
        "5_o_Clock_Shadow": face.stubble,
        "No_Beard": True,
        "Receding_Hairline": (face.hairline < -0.9 and not face.bangs and hair_visible
                              and face.hair_style != "bald"),
        "Wavy_Hair": face.wavy and hair_visible,
        "Straight_Hair": not face.wavy and hair_visible and face.hair_style != "short",
    }
    for name in ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair"):
        on[name] = face.hair_color == name and hair_visible
    return [1 if on.get(name, False) else -1 for name in ATTRIBUTE_NAMES]


def supersampling(size: int) -> int:
    """Canvas = size × this; finer for small photos, where edges matter most per pixel."""
    return 4 if size <= 128 else 2


def synthesize_face(k: int, seed: int, size: int):
    """One face: (photo PIL RGB, label map at size/2, part masks at size/2, attributes)."""
    canvas = size * supersampling(size)
    geometry_rng = np.random.default_rng([seed, k, 0])
    look_rng = np.random.default_rng([seed, k, 1])
    face = sample_face(geometry_rng, canvas)
    scene = draw_face(face, canvas, geometry_rng)
    look = sample_look(face, look_rng)
    photo = render_photo(scene, look, look_rng, size)
    label, masks = part_masks(scene, size // 2)
    return photo, label, masks, face_attributes(face, look, label)


def write_face(root: Path, k: int, seed: int, size: int) -> list[int]:
    """Write the photo (JPEG) and the binary part masks of face ``k``; return its attributes."""
    photo, _, masks, attributes = synthesize_face(k, seed, size)
    with atomic_path(layout.image_path(root, k)) as tmp:
        photo.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    for part in PART_NAMES:
        path = layout.part_mask_path(root, k, part)
        if part not in masks:
            path.unlink(missing_ok=True)  # a stale mask from an earlier run would be merged
            continue
        with atomic_path(path) as tmp:
            Image.fromarray(masks[part].astype(np.uint8) * 255).save(tmp, format="PNG")
    return attributes


def _write_face_job(job: tuple[str, int, int, int]) -> tuple[int, list[int]]:
    root, k, seed, size = job
    return k, write_face(Path(root), k, seed, size)


def split_orig_indices(num: int, seed: int) -> list[int]:
    """CelebA indices for the mapping file, chosen so the `celeba` rule splits ~80/10/10."""
    draw = np.random.default_rng([seed, 2**31 - 1]).random(num)
    starts = {"train": 0, "val": layout.CELEBA_TRAIN_END, "test": layout.CELEBA_VAL_END}
    counters = dict.fromkeys(starts, 0)
    orig = []
    for d in draw:
        split = "train" if d < 0.8 else "val" if d < 0.9 else "test"
        orig.append(starts[split] + counters[split])
        counters[split] += 1
    return orig


SYNTH_META = "synth.json"  # the settings of the set being written, first thing


def synth_state(root: Path, num: int, size: int, seed: int) -> str:
    """What ``root`` holds: ``empty``, ``resume`` (an unfinished synth of these settings),
    ``complete`` (a finished one) or ``other`` (anything else, which synth must not touch)."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return "empty"
    try:
        settings = json.loads((root / SYNTH_META).read_text())
    except (OSError, ValueError):
        return "other"
    if settings != {"num": num, "size": size, "seed": seed}:
        return "other"
    return "complete" if (root / layout.ATTRIBUTE_FILE).exists() else "resume"


def synthesize(out: str | os.PathLike, num: int, size: int, seed: int = 0,
               workers: int = 1, progress: bool = True, overwrite: bool = False) -> Path:
    """Write ``num`` synthetic faces at ``size``² in CelebAMask-HQ's raw layout under ``out``.

    ``out`` must be empty or hold an unfinished synth of the same settings (which is then
    finished), unless ``overwrite``: a slip of the folder name must not overwrite a real
    dataset. The attribute file is written last, so its presence marks a complete set.
    """
    if num < 1:
        raise FaceregenError(f"--num must be at least 1, got {num}")
    if size < 16 or size % 2:
        raise FaceregenError(f"--size must be an even number >= 16, got {size}")
    root = Path(out)
    state = synth_state(root, num, size, seed)
    if state in ("other", "complete") and not overwrite:
        holds = ("this synthetic set already" if state == "complete" else
                 "files that are not an unfinished synthetic set of these settings")
        raise FaceregenError(f"{root}: holds {holds}; synth writes only into an empty folder "
                             "(or finishes its own interrupted run): choose another --out, or "
                             "pass --overwrite to replace what is there")
    if not root.is_dir() and root.exists():
        raise FaceregenError(f"{root}: not a folder")
    output_folder(root)
    with atomic_path(root / SYNTH_META) as tmp:
        tmp.write_text(json.dumps({"num": num, "size": size, "seed": seed}) + "\n")
    for folder in [root / layout.IMAGE_DIR] + [
            root / layout.MASK_DIR / str(folder)
            for folder in range((num - 1) // layout.FACES_PER_MASK_FOLDER + 1)]:
        output_folder(folder)
    (root / layout.ATTRIBUTE_FILE).unlink(missing_ok=True)
    jobs = [(str(root), k, seed, size) for k in range(num)]
    attributes: dict[int, list[int]] = {}
    bar = tqdm(total=num, desc="synthesise", unit="face", disable=not progress)
    if workers <= 1:
        for job in jobs:
            k, values = _write_face_job(job)
            attributes[k] = values
            bar.update()
    else:
        with get_context().Pool(workers, initializer=ignore_interrupts) as pool:
            for k, values in pool.imap_unordered(_write_face_job, jobs, chunksize=8):
                attributes[k] = values
                bar.update()
    bar.close()
    orig = split_orig_indices(num, seed)
    with atomic_path(root / layout.MAPPING_FILE) as tmp:
        rows = [layout.MAPPING_HEADER] + [f"{k} {o} {o + 1:06d}.jpg" for k, o in enumerate(orig)]
        tmp.write_text("\n".join(rows) + "\n")
    with atomic_path(root / layout.ATTRIBUTE_FILE) as tmp:
        rows = [str(num), " ".join(ATTRIBUTE_NAMES)]
        rows += [f"{k}.jpg " + " ".join(f"{v:2d}" for v in attributes[k]) for k in range(num)]
        tmp.write_text("\n".join(rows) + "\n")
    return root
