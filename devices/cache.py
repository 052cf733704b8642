"""Where edgebnn keeps what it builds or downloads once: ``$EDGEBNN_CACHE``, else
``$XDG_CACHE_HOME/edgebnn``, else ``~/.cache/edgebnn`` (outside the repository).

    >>> import os
    >>> os.environ["EDGEBNN_CACHE"] = "/tmp/edgebnn-cache"
    >>> from devices.cache import cache_dir
    >>> str(cache_dir("wheels"))
    '/tmp/edgebnn-cache/wheels'
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("EDGEBNN_CACHE")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgebnn")
    return Path(root, *parts)
