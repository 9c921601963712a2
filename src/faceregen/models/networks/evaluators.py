"""The evaluator networks: a UNet face parser and a part-pooling attribute classifier.

They are trained by `faceregen evaluators train` on a prepared dataset and score generated
faces in `faceregen eval`; the parser also predicts reference masks for `faceregen regen`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceregen.labels import ATTRIBUTE_NAMES, NUM_CLASSES


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetParser(nn.Module):
    """A light UNet: a full-resolution stem, ``depth`` stride-2 stages (channels doubling),
    and a decoder of nearest-neighbour upsampling, skip concatenation and one conv per level.

    One conv per decoder level keeps it cheap enough to train on a CPU. The bottleneck
    (deepest stage), globally average-pooled, is the feature vector of the parser feature
    distance.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, channels: int = 12, depth: int = 3,
                 in_channels: int = 3) -> None:
        super().__init__()
        widths = [channels * 2**level for level in range(depth + 1)]
        self.stem = conv_bn_relu(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn_relu(widths[i], widths[i + 1], stride=2),
                          conv_bn_relu(widths[i + 1], widths[i + 1]))
            for i in range(depth))
        self.up = nn.ModuleList(
            conv_bn_relu(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.feature_dim = widths[-1]

    def decode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B,19,H,W], full-resolution decoder features, bottleneck features)."""
        x = self.stem(images)
        skips = [x]
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        bottleneck = x
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], 1))
        return self.head(x), x, bottleneck

    def forward(self, images: torch.Tensor,
                return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [B,19,H,W] (H, W divisible by 2**depth); with pooled bottleneck features."""
        logits, _, bottleneck = self.decode(images)
        if return_features:
            return logits, bottleneck.mean(dim=(2, 3))
        return logits


class AttributeClassifier(nn.Module):
    """Multi-label classifier that looks at the face part by part.

    A UNet parser trunk segments the photo; each part's soft mask (softmax over the 19 classes)
    pools the full-resolution decoder features and the input colours over that part, and gives
    the part's area. One linear layer maps [pooled features and colours of every part, areas,
    pooled bottleneck] to one logit per attribute. It is trained with an auxiliary
    segmentation loss (``forward(..., return_segmentation=True)``), so the trunk learns where
    the lips, eyes and brows are, and the attributes decided by a few pixels of one part
    (Smiling, Mouth_Slightly_Open, Narrow_Eyes, Big_Lips) become a matter of reading that
    part, which a globally pooled CNN learns poorly (docs/evaluation.md).
    """

    AREA_SCALE = 10.0  # part areas are fractions of the image; this brings them near unit range

    def __init__(self, num_attributes: int = len(ATTRIBUTE_NAMES), channels: int = 12,
                 depth: int = 3, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.trunk = UNetParser(num_classes, channels, depth, in_channels)
        pooled = num_classes * (channels + in_channels + 1) + self.trunk.feature_dim
        self.classifier = nn.Linear(pooled, num_attributes)

    def forward(self, images: torch.Tensor, return_segmentation: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attribute logits [B, A]; with the trunk's segmentation logits for training."""
        segmentation, features, bottleneck = self.trunk.decode(images)
        parts = segmentation.softmax(dim=1)
        area = parts.sum(dim=(2, 3))
        pooled = torch.einsum("bkhw,bchw->bkc", parts, torch.cat([features, images], 1))
        pooled = pooled / (area[..., None] + 1)
        fraction = area / (images.shape[-2] * images.shape[-1])
        logits = self.classifier(torch.cat(
            [pooled.flatten(1), self.AREA_SCALE * fraction, bottleneck.mean(dim=(2, 3))], 1))
        if return_segmentation:
            return logits, segmentation
        return logits
