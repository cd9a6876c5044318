#!/usr/bin/env python3
"""Build the site in the current folder: `python build.py` (or `python build.py COMMAND ...`).

A thin entry point: it is the same command line as `broadsheet`; run
`python build.py --help` to see the commands (build, check, new, serve).
"""

from broadsheet.cli import run

if __name__ == "__main__":
    run()
