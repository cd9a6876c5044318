"""`python -m broadsheet` is the same CLI as `broadsheet`."""

import sys

from .cli import main

sys.exit(main())
