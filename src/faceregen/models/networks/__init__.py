"""Generator, style encoder and discriminator (one module each, as in NVlabs/SPADE)."""

from faceregen.models.networks.discriminator import MultiScaleDiscriminator, NLayerDiscriminator
from faceregen.models.networks.encoder import StyleEncoder
from faceregen.models.networks.generator import GlobalGenerator, ResnetBlock
from faceregen.models.networks.init import init_weights
from faceregen.models.networks.normalization import AdaIN, SFTLayer

__all__ = ["AdaIN", "GlobalGenerator", "MultiScaleDiscriminator", "NLayerDiscriminator",
           "ResnetBlock", "SFTLayer", "StyleEncoder", "init_weights"]
