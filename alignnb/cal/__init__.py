"""CAL (Henley & Piorkowski, arXiv 2403.07762): labelling widgets that prevent inapt labels, guide the choice,
document the labels and show previous labels. Written by hand (nbdev leaves a package's `__init__.py` alone); the
modules are generated from `nbs/90_cal/`."""
from .schema import *
from .store import *
from .widget import *
from .experiments import *
from .experiments import reproduce
