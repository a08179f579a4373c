"""Domain library of the Trusted Research Environment: no web and no database code."""

__version__ = "0.1.0"
