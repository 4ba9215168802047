"""Deep active learning for NER (Shen et al., ICLR 2018): the CNN-CNN-LSTM tagger and a BiLSTM-CRF baseline, the
acquisition functions (MNLP, least confidence, BALD by MC dropout, random) under a token budget, the active-learning
loop with its oracles, and the reproduction. Written by hand (nbdev leaves a package's `__init__.py` alone); the
modules are generated from `nbs/91_active_ner/`."""
from .tagger import *
from .acquisition import *
from .loop import *
from .human import *
from .experiments import *
from .experiments import reproduce
