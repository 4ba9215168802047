"""CacheGen (Liu, Li et al., SIGCOMM 2024): a KV-cache codec (layer-wise absmax quantisation, anchor + delta symbols,
range coding with per-(layer, channel) tables, independent CRC-checked chunks), bins calibrated for a quality budget,
the bandwidth-adaptive streaming planner, the baselines it is measured against, the long-context LM, the multi-level
chunk format, the loopback sender and receiver, the end-to-end time-to-first-token measurement, and the reproduction.

The pages are `nbs/30_cachegen/`; this file is written by hand (nbdev does not overwrite it) and re-exports each
module's public names, so `from alignnb.cachegen import CacheGenCodec` works."""

from .codec import *
from .codec import _HEADER  # the tests read the fixed header size
from .bins import *
from .streaming import *
from .baselines import *
from .long_lm import *
from .chunks import *
from .transport import *
from .end_to_end import *
from .experiments import *
from .experiments import reproduce
# the Hugging Face plumbing the codec's users (and the tests) reach through this package
from alignnb.hf import (KVCache, layer_matrix, matrix_to_layer, kv_cache_of, kv_cache_into, capture_kv,
                        outputs_with_kv, continuation_perplexity, continuation_logprobs, mean_kl, load_minilm,
                        minilm_caches)
