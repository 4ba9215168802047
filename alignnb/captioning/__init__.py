"""GCN-LSTM image captioning (Yao et al., ECCV 2018): the spatial graph and caption metrics, the region encoder,
edge-gated GCN, Up-Down decoder, relation classifier and late fusion, self-critical training, and the reproduction. Written by hand (nbdev
leaves a package's `__init__.py` alone); the modules are generated from `nbs/60_captioning/`."""
from .graphs import *
from .model import *
from .scst import *
from .experiments import *
from .experiments import reproduce
