"""Generator, style encoder, discriminator and the evaluator networks (one module each)."""

from faceregen.models.networks.discriminator import MultiScaleDiscriminator, NLayerDiscriminator
from faceregen.models.networks.encoder import StyleEncoder
from faceregen.models.networks.evaluators import AttributeClassifier, UNetParser
from faceregen.models.networks.generator import GlobalGenerator, ResnetBlock
from faceregen.models.networks.init import init_weights
from faceregen.models.networks.normalization import AdaIN, SFTLayer

__all__ = ["AdaIN", "AttributeClassifier", "GlobalGenerator", "MultiScaleDiscriminator",
           "NLayerDiscriminator", "ResnetBlock", "SFTLayer", "StyleEncoder", "UNetParser",
           "init_weights"]
