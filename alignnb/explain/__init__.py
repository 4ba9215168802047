"""Explainability for transformer language models (Zhao et al., ACM TIST 2024): local feature attribution on a task
with ground-truth rationales, attention and decomposition, global methods, and the evaluation of faithfulness and
plausibility. Written by hand (nbdev leaves a package's `__init__.py` alone); the modules are generated from
`nbs/50_explain/`."""
from .attribution import *
from .attention import *
from .evaluation import *
from .global_methods import *
from .experiments import *
from .experiments import reproduce
