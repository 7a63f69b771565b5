"""Training data: the i-CLEVR folder reader, a data set rendered on the fly and a toy generator."""

from __future__ import annotations

from .dataset import ClevrDataset, DatasetError
from .rendered import RenderedClevrDataset
from .toy import make_toy_dataset

__all__ = ["ClevrDataset", "DatasetError", "RenderedClevrDataset", "make_toy_dataset"]
