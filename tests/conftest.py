import os
os.environ.setdefault("ALIGNNB_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
