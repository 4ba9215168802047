"""MEliTA, MAP-Elites with transverse assessment (Zammit, Liapis & Yannakakis, EvoMUSART 2024): text and image
artefacts, the contrastive transverse assessor, MAP-Elites and MEliTA, and the reproduction. Written by hand (nbdev
leaves a package's `__init__.py` alone); the modules are generated from `nbs/80_melita/`."""
from .artefacts import *
from .assessor import *
from .search import *
from .experiments import *
from .experiments import reproduce
