"""The `posd` command line."""

from posd.cli.main import main

__all__ = ["main"]
