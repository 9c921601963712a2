"""Data: synthetic CelebAMask-HQ-layout faces, `prepare`, `FaceDataset`, `ensure_dataset`.

The exports load lazily so that worker processes of `synth`/`prepare` start without torch.
"""

from __future__ import annotations

__all__ = ["FaceDataset", "ensure_dataset"]


def __getattr__(name: str):
    if name == "FaceDataset":
        from faceregen.data.dataset import FaceDataset

        return FaceDataset
    if name == "ensure_dataset":
        from faceregen.data.ensure import ensure_dataset

        return ensure_dataset
    raise AttributeError(f"module 'faceregen.data' has no attribute '{name}'")
