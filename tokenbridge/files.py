"""Atomic file writes: a crash or a full disk never leaves half a file where a whole one was."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path`` (a temporary file in the same folder, so
    the rename is atomic); the folder is created when missing. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(path: str | os.PathLike, value, indent: int = 1) -> Path:
    """``value`` as indented JSON with a final newline, written atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value, indent=indent) + "\n"))
