"""What happens after a change that can take access away: kept for callers that import it from here.

The interface lives in :mod:`tre_platform.enforcement` (the one way in for enforcement); this module
only re-exports its two hook functions.
"""

from tre_platform.enforcement import access_changed, suppressed

__all__ = ["access_changed", "suppressed"]
