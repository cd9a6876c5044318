"""Broadsheet: a static site generator for curated tech news digests."""

__version__ = "0.1.0"
