"""Every training setting, defined once (TrainConfig), in a module without torch, so the command
line can show the defaults as its options without loading the training stack."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, List, Optional

from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig
from screening.properties import METAL_GAP_EV

if TYPE_CHECKING:
    from screening.model import ModelConfig

SCHEDULES = ("cosine", "step", "none")  # the learning-rate schedules after warm-up (screening/train.py lr_factor)


@dataclass
class TrainConfig:
    """Every training setting, defined once; `screen train` options mirror these defaults.

    The defaults are the recipe of the shipped model (screening/models/README.md
    gives the validation run behind each choice); `TrainConfig.paper()` is the
    paper's recipe, which the experiments of workflows/paper.yaml use.
    """
    tasks: List[str]
    task_weights: Optional[List[float]] = None  # w_p of Eq. 6; default all 1
    weighting: str = "fixed"  # fixed (Eq. 6) | uncertainty (learned, see screening/weighting.py)
    loss: str = "l1"  # per-task loss: mse (paper) | l1 | huber; the metric is MAE
    metal_head: bool = True  # P(metal) head trained by cross-entropy (needs band_gap)
    epochs: int = 150
    batch_size: int = 128  # crystals per step
    lr: float = 0.005
    optimizer: str = "adamw"  # adam (paper) | adamw (decoupled weight decay)
    weight_decay: float = 0.01
    schedule: str = "cosine"  # one of SCHEDULES
    warmup_epochs: float = 2.0  # linear warm-up from lr/100 before the schedule
    ema_decay: float = 0.999  # exponential moving average of the weights; 0 = off
    bn_recompute: int = 4096  # training crystals whose pass re-estimates batch-norm statistics before validation; 0 = off
    patience: int = 1000  # epochs without a better validation score before stopping
    seed: int = 0  # initialization and shuffling: ensemble members differ only here
    split: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train/val/test
    split_seed: int = 0  # the split's own seed, so members of an ensemble share one split
    atom_fea_len: int = 64
    n_conv: int = 3
    h_fea_len: int = 128
    n_h: int = 1
    device: str = "cpu"

    @classmethod
    def paper(cls, **settings) -> "TrainConfig":
        """The MT-CGCNN paper's recipe (MSE, Adam, no EMA, no metal head, 60/20/20), then `settings`."""
        base = dict(loss="mse", optimizer="adam", weight_decay=0.0, warmup_epochs=0.0, ema_decay=0.0,
                    bn_recompute=0, metal_head=False, split=[0.6, 0.2, 0.2])
        return cls(**{**base, **settings})

    def model_config(self, featurizer: FeaturizerConfig) -> "ModelConfig":
        from screening.model import ModelConfig

        return ModelConfig(list(self.tasks), self.atom_fea_len, self.n_conv, self.h_fea_len, self.n_h,
                           featurizer.cutoff, featurizer.gaussian_step, metal_head=self.metal_head)

    def check(self) -> None:
        """One-line errors for settings that cannot work, before any data is read."""
        from screening.model import GAP_TASK, LOSSES

        if self.loss not in LOSSES:
            raise ScreenError(f"`loss` {self.loss}: choose {', '.join(LOSSES)}")
        if self.optimizer not in ("adam", "adamw"):
            raise ScreenError(f"`optimizer` {self.optimizer}: choose adam or adamw")
        if self.schedule not in SCHEDULES:
            raise ScreenError(f"`schedule` {self.schedule}: choose {', '.join(SCHEDULES)}")
        if self.metal_head and GAP_TASK not in self.tasks:
            raise ScreenError(f"the metal head needs the {GAP_TASK} task (its label is Eg < {METAL_GAP_EV} eV); "
                              f"add it to `tasks` or pass `metal_head=False`")
        if not 0 <= self.ema_decay < 1:
            raise ScreenError(f"`ema_decay` {self.ema_decay}: need 0 <= decay < 1 (0 turns it off)")
        if self.epochs < 1 or self.batch_size < 2:
            raise ScreenError("`epochs` must be >= 1 and `batch_size` >= 2")

    def to_dict(self):
        return asdict(self)
