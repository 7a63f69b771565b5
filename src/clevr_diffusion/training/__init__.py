"""Training: the trainer, its config, EMA weights and checkpoints."""

from .config import TrainerConfig
from .ema import EMA
from .trainer import DDPMTrainer, DivergenceError, ResumeMismatchError, RunFolderError

__all__ = ["EMA", "DDPMTrainer", "DivergenceError", "ResumeMismatchError", "RunFolderError", "TrainerConfig"]
