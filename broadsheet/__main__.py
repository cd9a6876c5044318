"""`python -m broadsheet` is the same CLI as `broadsheet`."""

from .cli import run

run()
