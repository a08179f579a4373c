"""Domain library of the Trusted Research Environment: no web and no database code."""

from tre_lib.compute import session

__version__ = "0.1.0"

__all__ = ["__version__", "session"]
