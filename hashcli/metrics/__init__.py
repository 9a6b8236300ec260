"""Exact, fast retrieval metrics for binary codes ranked by Hamming distance.

>>> from hashcli.metrics import evaluate_code_files
>>> report = evaluate_code_files("test.h5", "train.h5", top_k=[100])
>>> report.map, report.map_index_order, report.map_at_k[100]

Tie-aware mAP (the expected AP over random orders within distance ties) is the headline
number; see :mod:`hashcli.metrics.evaluate` for every convention. :func:`code_statistics`
describes the codes themselves (bit balance, effective bits, buckets, distances by class).
"""

from hashcli.metrics.code_stats import CodeStats, code_statistics
from hashcli.metrics.evaluate import (
    ClassAP,
    PRCurve,
    RetrievalReport,
    evaluate,
    evaluate_code_files,
)
from hashcli.metrics.hamming import RankBlock, hamming_histograms, iter_rank_blocks
from hashcli.metrics.ranking import (
    ap_bounds,
    harmonic_numbers,
    radius_counts,
    tie_aware_ap,
    tie_aware_top_k,
)

__all__ = [
    "ClassAP",
    "CodeStats",
    "PRCurve",
    "RankBlock",
    "RetrievalReport",
    "ap_bounds",
    "code_statistics",
    "evaluate",
    "evaluate_code_files",
    "hamming_histograms",
    "harmonic_numbers",
    "iter_rank_blocks",
    "radius_counts",
    "tie_aware_ap",
    "tie_aware_top_k",
]
