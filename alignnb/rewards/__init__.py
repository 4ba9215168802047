"""Transformed and combined rewards (Wang et al., ICML 2024): the log-sigmoid-centred reward transform, its
sum-as-AND aggregation, a Bradley-Terry reward model on the small LM, and a KL-regularised RLHF loop (RLOO) to compare
raw and transformed rewards.

Written by hand (nbdev leaves a package's `__init__.py` to its author): it re-exports the public names of each module,
so that `from alignnb.rewards import log_sigmoid_transform` works whichever page defines it.
`transform` holds the method, `reward_models` the task and the Bradley-Terry reward model, `rlhf` the RL loop and
`experiments` the reproduction."""

from .transform import *
from .reward_models import *
from .rlhf import *
from .trl_rewards import *
from .experiments import *
from .experiments import reproduce
