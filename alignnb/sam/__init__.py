"""Customised instance segmentation with SAM (Kim et al., arXiv 2403.09199): a small trainable SAM, its
"pretraining" on synthetic scenes, the prompt learning and point matching modules, and the reproduction. Written by
hand (nbdev leaves a package's `__init__.py` alone); the modules are generated from `nbs/70_sam/`."""
from .model import *
from .pretrain import *
from .modules import *
from .experiments import *
from .experiments import reproduce
