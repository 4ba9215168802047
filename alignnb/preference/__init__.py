"""Online preference optimisation (Calandriello et al., ICML 2024): IPO, DPO, SLiC and Nash-MD-PG losses, an exact
tabular laboratory for the regularised preference game, and online IPO / IPO-MD / Nash-MD-PG on a small causal LM.

Written by hand (nbdev never overwrites a package's `__init__.py`): it re-exports the public names of each module,
so `from alignnb.preference import ipo_loss` works. The modules, one layer each:

- `losses`: the offline losses, the soft-label wrapper and the Nash-MD-PG surrogate (nbs/11_preference/00_losses)
- `games`: tabular games, exploitability, the Nash solver, tabular training and fixed points (01_games)
- `online`: the judge, the preference model, the residual-head policy and online optimisation of a causal LM
  (02_online)
- `trl_trainers`: online IPO, IPO-MD and Nash-MD-PG as a TRL trainer (03_trl); loaded on first use of its names,
  because importing trl takes seconds
- `experiments`: the tabular laboratory's runs, paired win rates, the claims (exact tabular ones, Table 2 pairings
  with a bootstrap over prompts x seeds) and `reproduce` (09_experiments)
"""
from .losses import *
from .games import *
from .online import *
from .experiments import *
from .experiments import reproduce

_TRL_NAMES = ("OnlinePreferenceConfig", "OnlinePreferenceTrainer", "PREFERENCE_METHODS")


def __getattr__(name: str):
    "The TRL trainers (nbs/11_preference/03_trl) load on first use: importing trl takes seconds."
    if name in _TRL_NAMES:
        from . import trl_trainers
        return getattr(trl_trainers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
