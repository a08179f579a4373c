"""Agreements domain."""
