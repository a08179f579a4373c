"""The policy engine: Cedar policies in ``policies/cedar`` decide every access, and say why.

Enforcement points call :func:`authorize` (or :func:`require`, which raises on a deny); see
:mod:`tre_platform.policy.engine` for how a decision is made and explained.
"""

from tre_platform.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle
from tre_platform.policy.engine import (
    Decision,
    PolicyEngine,
    authorize,
    get_engine,
    reload_engine,
    require,
)
from tre_platform.policy.facts import ACTIONS, PolicyRequest, World

__all__ = [
    "ACTIONS",
    "Decision",
    "PolicyBundle",
    "PolicyBundleError",
    "PolicyEngine",
    "PolicyRequest",
    "World",
    "authorize",
    "get_engine",
    "load_bundle",
    "reload_engine",
    "require",
]
