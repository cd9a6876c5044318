"""Site search with Pagefind: an index made from the finished pages, inside the staging folder.

Pagefind reads the built HTML (only the parts marked `data-pagefind-body`: stories, topics and
issues) and writes a static index under `pagefind/`, which the search page queries in the
browser. It runs before the output swap, so the index always matches the pages beside it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .diagnostics import BuildFailed, Diagnostic

SEARCH_FOLDER = "pagefind"
TIMEOUT_SECONDS = 600


def index_site(folder: Path) -> None:
    """Run Pagefind (shipped as the `pagefind[bin]` package) over a built site folder."""
    command = [sys.executable, "-m", "pagefind", "--site", str(folder), "--output-subdir",
               SEARCH_FOLDER, "--silent"]
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildFailed([Diagnostic("site.yaml", 0, "search", f"Pagefind could not run: {exc}")]
                          ) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BuildFailed([Diagnostic("site.yaml", 0, "search", "Pagefind failed: "
                                      + (detail[-1] if detail else f"exit {result.returncode}"))])
