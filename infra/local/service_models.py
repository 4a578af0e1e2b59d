"""One botocore loader for every botocore session of the process, so each service model is parsed once.

A botocore session parses the JSON models of the services it is asked about (EC2's is megabytes) and keeps them
for its own clients only. A process running the emulator makes at least three sessions: moto's, at import (for
the regions EC2 serves), moto's backends', and ``LocalAWS``'s: each parsed EC2's model again, 0.6 s of CPU in every
process that starts an emulator (each test worker, each sandbox of the real-etcd tests). The models are the same
files, and a loader already hands one parsed model to every client of its session (its cache is shared, read
only), so sessions sharing it get what each would have parsed. Installed when ``infra.local`` is imported,
before moto is: the emulator's modules import this one first.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.loaders
import botocore.session

_LOADERS: dict[str | None, Any] = {}
_LOCK = threading.Lock()
_create_loader = botocore.loaders.create_loader


def shared_loader(search_path_string: str | None = None) -> Any:
    """botocore's ``create_loader``, once per search path: every later session gets the same loader."""
    with _LOCK:
        if search_path_string not in _LOADERS:
            _LOADERS[search_path_string] = _create_loader(search_path_string)
        return _LOADERS[search_path_string]


botocore.session.create_loader = shared_loader  # type: ignore[attr-defined]
