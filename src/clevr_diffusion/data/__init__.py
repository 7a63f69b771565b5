"""Training data: the i-CLEVR folder reader, a data set rendered on the fly, a toy generator, and
scene files rendered into PNG folders."""

from __future__ import annotations

from .dataset import ClevrDataset, DatasetError
from .rendered import RenderedClevrDataset
from .scene_files import render_scene_file
from .toy import make_toy_dataset

__all__ = ["ClevrDataset", "DatasetError", "RenderedClevrDataset", "make_toy_dataset", "render_scene_file"]
