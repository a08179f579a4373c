"""The airlock: release requests, server-side output checks, two-person review, signed bundles, and the
database-backed differential-privacy budget ledger."""
