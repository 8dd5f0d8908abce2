"""The training settings `screen train` builds its options from, importable without torch, so
`screen --help` and `screen train --help` start without loading the training stack."""
from screening.featurize import FeaturizerConfig  # noqa: F401  (--cutoff, --max-neighbors)
from screening.train_config import TrainConfig  # noqa: F401  (every training setting, defined once)
