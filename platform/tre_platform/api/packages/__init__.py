"""Packages domain: the vetted package mirror."""
