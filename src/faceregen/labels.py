"""CelebAMask-HQ's 19 label classes, their colours, flip pairs and the 40 CelebA attributes."""

from __future__ import annotations

import numpy as np

LABEL_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
    "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
NUM_CLASSES = len(LABEL_NAMES)

# Part files in merge order: later parts overwrite earlier ones. Index = position + 1.
PART_NAMES: tuple[str, ...] = LABEL_NAMES[1:]

PALETTE = np.array(
    [
        (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
        (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0),
        (255, 255, 0), (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0),
        (255, 153, 51), (0, 204, 0),
    ],
    dtype=np.uint8,
)

# Left/right classes that trade places under a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((4, 5), (6, 7), (8, 9))


def flip_permutation() -> np.ndarray:
    """Index map ``perm`` such that ``perm[label]`` is the label after a horizontal flip."""
    perm = np.arange(NUM_CLASSES)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)
