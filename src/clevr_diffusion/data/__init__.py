"""Training data: the i-CLEVR folder reader and a toy look-alike generator."""

from __future__ import annotations

from .dataset import ClevrDataset, DatasetError
from .toy import make_toy_dataset

__all__ = ["ClevrDataset", "DatasetError", "make_toy_dataset"]
