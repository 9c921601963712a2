"""What a model config read from a file may ask for: the project's own networks, nothing else.

Checkpoints and exports carry the config they were trained with, and the networks are rebuilt
from it with Hydra's ``instantiate``, which imports and calls whatever ``_target_`` names. A
file from a stranger must not choose what Python runs, so before anything is built its
``model`` section is checked against this allowlist: each network node names one of our
classes, its other keys are that class's constructor arguments with plain values, and no
other instantiation key (``_args_``, a nested ``_target_``, ...) or interpolation appears
anywhere in the file's config.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from faceregen.errors import FaceregenError

# node of the model config -> (the classes it may name, may it be a partial); the second class
# of the generator and the style encoder is the regional variant (model=style_regional)
NETWORK_CLASSES: dict[str, tuple[tuple[str, ...], bool]] = {
    "generator": (("faceregen.models.networks.generator.GlobalGenerator",
                   "faceregen.models.networks.generator.RegionalGenerator"), False),
    "style_encoder": (("faceregen.models.networks.encoder.StyleEncoder",
                       "faceregen.models.networks.encoder.RegionalStyleEncoder"), True),
    "discriminator": (("faceregen.models.networks.discriminator.MultiScaleDiscriminator",),
                      False),
}
# Nodes that may be null: the pix2pixHD baseline has no style encoder.
OPTIONAL_NODES = ("style_encoder",)
PLAIN = (bool, int, float, str, type(None))  # the values a file may hand a constructor


def _class_of(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _walk(value: Any, path: str):
    """Every (path, key, value) in a nested container of dicts and lists."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield path, key, item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def check_stored_config(config: Any, source: str) -> None:
    """Refuse a stored training config unless its model names only the project's networks.

    ``config`` is the plain container read from the file; ``source`` names the file in the
    error. Only the ``model`` section is ever instantiated; the rest is read as data, so it
    may hold ``_target_`` nodes (the optimiser's) but no interpolation.
    """
    if not isinstance(config, Mapping):
        raise FaceregenError(f"{source}: the stored config is not a mapping")
    for path, key, value in _walk(config, "config"):
        if not isinstance(key, str):
            raise FaceregenError(f"{source}: {path} has a non-string key {key!r}")
        if isinstance(value, str) and "${" in value:
            raise FaceregenError(f"{source}: {path}.{key} holds an interpolation ({value!r}); "
                                 "a stored config must be fully resolved")
    model = config.get("model")
    if not isinstance(model, Mapping):
        raise FaceregenError(f"{source}: the stored config has no model section")
    for node, item in model.items():
        where = f"model.{node}"
        if node in NETWORK_CLASSES:
            if item is None and node in OPTIONAL_NODES:
                continue
            _check_network_node(item, where, *NETWORK_CLASSES[node], source)
        elif not isinstance(item, PLAIN):
            raise FaceregenError(f"{source}: {where} must be a plain value, not {item!r}")
    missing = [node for node in NETWORK_CLASSES if node not in OPTIONAL_NODES and node not in model]
    if missing:
        raise FaceregenError(f"{source}: the stored model config lacks {', '.join(missing)}")


def _check_network_node(node: Any, where: str, allowed_classes: tuple[str, ...],
                        may_be_partial: bool, source: str) -> None:
    if not isinstance(node, Mapping):
        raise FaceregenError(f"{source}: {where} must be a network node, not {node!r}")
    target = node.get("_target_")
    if target not in allowed_classes:
        raise FaceregenError(f"{source}: {where}._target_ is {target!r}; a stored config may "
                             f"only name {' or '.join(allowed_classes)}")
    allowed = target
    partial = node.get("_partial_", False)
    if partial not in (False, may_be_partial):
        raise FaceregenError(f"{source}: {where}._partial_ must be {may_be_partial}")
    parameters = inspect.signature(_class_of(allowed)).parameters
    for key, value in node.items():
        if key in ("_target_", "_partial_"):
            continue
        if key.startswith("_"):  # _args_, _recursive_, _convert_, ...: Hydra's, not ours
            raise FaceregenError(f"{source}: {where}.{key} is not allowed in a stored config")
        if key not in parameters:
            raise FaceregenError(f"{source}: {where}.{key} is not an argument of "
                                 f"{allowed.rpartition('.')[2]}")
        if not isinstance(value, PLAIN):
            raise FaceregenError(f"{source}: {where}.{key} must be a plain value, not "
                                 f"{type(value).__name__}")
