"""Hardware budget: cost model (`cost`), board profiles (`profiles`), student search (`search`), plot (`plot`).

    from edgekd.budget import Budget, get_profile, search
    result = search(Budget(latency_ms=2.0, flash_bytes=64 * 1024, precision="int8"), get_profile("rpi4"))
    result.chosen.student_id
"""

from .profiles import get_profile, list_profiles, resolve_profile
from .search import Budget, BudgetInfeasibleError, Candidate, SearchResult, search

__all__ = ["Budget", "BudgetInfeasibleError", "Candidate", "SearchResult", "get_profile", "list_profiles",
           "resolve_profile", "search"]
