"""Studies over many runs: A/B comparisons with confidence intervals, latency-target searches."""

from vsim.studies.compare import Comparison, compare, compare_measured
from vsim.studies.search import SearchResult, search

__all__ = ["Comparison", "SearchResult", "compare", "compare_measured", "search"]
