"""Every training setting, defined once (TrainSettings), in a module without torch, so the command
line can show the defaults as its options without loading the training stack."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, List, Optional

from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings
from screening.properties import METAL_GAP_EV, TASKS
from screening.settings import setting

if TYPE_CHECKING:
    from screening.model import ModelSettings

SCHEDULES = ("cosine", "step", "none")  # the learning-rate schedules after warm-up (screening/train.py lr_factor)


@dataclass
class TrainSettings:
    """Every training setting, defined once: `screen train` builds its options from these fields
    (default and help text), and the Python API takes the same defaults.

    The defaults are the recipe of the shipped model (screening/models/README.md
    gives the validation run behind each choice); `TrainSettings.paper()` is the
    paper's recipe, which the experiments of workflows/train/paper.yaml use.
    """
    tasks: List[str] = setting(help="Comma-separated target columns.", factory=lambda: list(TASKS))
    task_weights: Optional[List[float]] = setting(None, "Per-task loss weights w_p (Eq. 6), comma-separated "
                                                        "(default: all 1).")
    weighting: str = setting("fixed", "fixed (Eq. 6, `task_weights`) | uncertainty (learned per-task weights, "
                                      "Kendall et al. 2018; screening/weighting.py).")
    loss: str = setting("l1", "Per-task loss: mse (paper) | l1 | huber; the metric is MAE.")
    metal_head: bool = setting(True, "Also learn P(metal) by cross-entropy (needs band_gap).")
    epochs: int = setting(150, "Training epochs.")
    batch_size: int = setting(128, "Crystals per optimizer step.")
    lr: float = setting(0.005, "Learning rate (after the warm-up).")
    optimizer: str = setting("adamw", "adamw (decoupled weight decay) | adam (paper)")
    weight_decay: float = setting(0.01, "Weight decay.")
    schedule: str = setting("cosine", "cosine | step | none: the learning-rate schedule after the warm-up.")
    warmup_epochs: float = setting(2.0, "Linear learning-rate warm-up from lr/100, in epochs.")
    ema_decay: float = setting(0.999, "Decay of the weights' moving average (0 = off).")
    bn_recompute: int = setting(4096, "Training crystals used to re-estimate batch-norm statistics each epoch "
                                      "(0 = off).")
    patience: int = setting(1000, "Early stopping: epochs without a better validation score.")
    seed: int = setting(0, "Initialization and shuffling seed (differs between ensemble members).")
    split: List[float] = setting(help="train,val,test fractions.", factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = setting(0, "Seed of the split (keep it when training ensemble members).")
    atom_fea_len: int = setting(64, "Atom feature length.")
    n_conv: int = setting(3, "Graph convolutions.")
    h_fea_len: int = setting(128, "Hidden layer width of each task's head.")
    n_h: int = setting(1, "Hidden layers of each task's head.")
    device: str = setting("cpu", "cpu | cuda")

    @classmethod
    def paper(cls, **settings) -> "TrainSettings":
        """The MT-CGCNN paper's recipe (MSE, Adam, no EMA, no metal head, 60/20/20), then `settings`."""
        base = dict(loss="mse", optimizer="adam", weight_decay=0.0, warmup_epochs=0.0, ema_decay=0.0,
                    bn_recompute=0, metal_head=False, split=[0.6, 0.2, 0.2])
        return cls(**{**base, **settings})

    def model_config(self, featurizer: FeaturizerSettings) -> "ModelSettings":
        from screening.model import ModelSettings

        return ModelSettings(list(self.tasks), self.atom_fea_len, self.n_conv, self.h_fea_len, self.n_h,
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
