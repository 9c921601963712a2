"""pix2pixHD weight initialisation, applied by every network at the end of its constructor."""

from __future__ import annotations

from torch import nn

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
               nn.ConvTranspose3d, nn.Linear)
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Convolutions (transposed ones included) N(0, std); affine norm scales N(1, std).

    pix2pixHD's ``weights_init`` matched class names containing "Conv", which covers
    ConvTranspose2d; the report's code skipped the transposed convolutions. Biases start at zero
    (as in SPADE) so that no layer starts with an arbitrary offset.
    """
    for m in module.modules():
        if isinstance(m, _CONV_TYPES):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORM_TYPES) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return module
