"""GCN-LSTM image captioning (Yao et al., ECCV 2018): the spatial graph and caption metrics, the model and the
reproduction. Written by hand (nbdev leaves a package's `__init__.py` alone); the modules are generated from
`nbs/60_captioning/`."""
from .graphs import *
from alignnb.core import Result as _Result


def reproduce(quick: bool = True, out=None) -> _Result:
    "Placeholder until the experiments page lands: no claim measured yet."
    return _Result("captioning", "GCN-LSTM's fused relation graphs raise CIDEr-D over Up-Down.",
                   "COCO Karpathy test, after SCST: Up-Down 120.1 -> fused GCN-LSTM 128.7 CIDEr-D", {})
