"""Differentiable dynamic programming (Mensch & Blondel, ICML 2018): smoothed max operators, the smoothed Viterbi and
DTW dynamic programs with their gradients and second derivatives, structured attention, and the reproduction.

Written by hand (nbdev leaves a package's `__init__.py` to its author): it re-exports the public names of each module,
so `from alignnb.smoothdp import soft_dtw` works. Docs: https://alignnb.github.io/alignnb/."""

from .smoothed_max import *
from .viterbi import *
from .dtw import *
from .attention import *
from .kernels import *  # no public names: the fast paths are private, reached through `dtw`
from .experiments import *
from .experiments import reproduce
from alignnb.data import segment_task, warped_series  # the sample sets the experiments use, at their old address
from alignnb.data import SEGMENT_CLOSE as CLOSE, SEGMENT_OPEN as OPEN  # the span markers, at their old names
