"""Inference: regenerate faces from label maps and reference photos.

One home for everything `faceregen regen`, `export`, `eval` and the studio need after training:

- :mod:`~faceregen.regen.model`: a :class:`Regenerator` from a checkpoint or an export;
- :mod:`~faceregen.regen.inputs`: photos and masks as people have them, letterboxed;
- :mod:`~faceregen.regen.editing`: taking named parts from another label map;
- :mod:`~faceregen.regen.generate`: batched generation on in-memory arrays;
- :mod:`~faceregen.regen.references`: reference masks predicted by the face parser;
- :mod:`~faceregen.regen.regions`: per-region references of a regional model (--region-ref);
- :mod:`~faceregen.regen.jobs`: single, folder and pairs-file jobs, written atomically;
- :mod:`~faceregen.regen.cli`: the `faceregen regen` command line.

The studio (:mod:`faceregen.studio`) calls these same functions on uploads held in memory.
"""

from faceregen.regen.editing import edit_label, parse_parts
from faceregen.regen.generate import (
    PreparedPair,
    fit_reference,
    generate_prepared,
    prepare_pair,
    reference_style,
    regenerate_arrays,
)
from faceregen.regen.inputs import (
    Placement,
    decode_photo,
    fit_label,
    fit_photo,
    label_map_from_bytes,
    photo_from_bytes,
    photo_to_rgb,
    placement_for,
    read_label_map,
    read_photo,
    restore_photo,
)
from faceregen.regen.model import (
    Regenerator,
    load_exported_regenerator,
    load_model,
    load_regenerator,
)
from faceregen.regen.references import ReferenceMasks, parse_photo
from faceregen.regen.regions import (
    RegionReference,
    parse_region_reference,
    require_regional,
    supports_regions,
)

__all__ = [
    "Placement", "PreparedPair", "ReferenceMasks", "RegionReference", "Regenerator",
    "decode_photo", "edit_label",
    "fit_label", "fit_photo", "fit_reference", "generate_prepared", "label_map_from_bytes",
    "load_exported_regenerator", "load_model", "load_regenerator", "parse_parts", "parse_photo",
    "parse_region_reference", "require_regional", "supports_regions",
    "photo_from_bytes", "photo_to_rgb", "placement_for", "prepare_pair", "read_label_map",
    "read_photo", "reference_style", "regenerate_arrays", "restore_photo",
]
