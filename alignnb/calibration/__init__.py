"""Proper calibration errors (Gruber & Buettner, NeurIPS 2022): scores and estimators, recalibration maps, the
simulation with a known truth, real networks' CIFAR predictions, and the reproduction. Written by hand (nbdev leaves a
package's `__init__.py` alone); the modules are generated from `nbs/40_calibration/`."""
from .scores import *
from .recalibration import *
from .simulation import *
from .cifar import *
from .metrics import *
from .experiments import *
from .experiments import reproduce
