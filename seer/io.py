"""Atomic file writes: a crash mid-write leaves the previous file whole (write to a temp file, fsync, rename)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file under the process umask (``mkstemp`` gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json_object(path: str | Path, error: type[Exception] = ValueError, missing: str = "missing") -> dict[str, Any]:
    """Read a JSON file that must hold an object; every failure raises ``error`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise error(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def atomic_replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move a fully written directory ``src`` into place at ``dst``; an old ``dst`` is removed only after the
    new one is in place under a temporary name, so at every moment one complete copy exists."""
    src, dst = Path(src), Path(dst)
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)


def claim_output_dir(path: str | Path, owned: Any, what: str) -> bool:
    """Refuse an output folder a command did not create: ``path`` must be absent, empty, or pass ``owned(path)`` (it
    carries the command's own manifest). Returns whether it holds an earlier output of the command. Raises
    :class:`seer.cli.UserError` naming the folder, so nothing of the user's is overwritten."""
    from seer.cli import UserError

    path = Path(path)
    if not path.exists():
        return False
    if not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder; {what} writes a folder there")
    if not any(path.iterdir()):
        return False
    if owned(path):
        return True
    raise UserError(f"{path}: the folder is not empty and was not written by {what} (no manifest of its own); "
                    "choose an empty or new folder, nothing was written")


def staging_dir(final: str | Path) -> Path:
    """A fresh temporary folder beside ``final`` to build it in, then :func:`atomic_replace_dir` it into place; the
    staging folders a killed build left are removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.building-"
    for stale in final.parent.glob(f"{prefix}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix))
