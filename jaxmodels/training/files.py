"""Atomic file writes: readers see the old file or the complete new one, never a partial write.

Each writer writes a uniquely named temporary path beside the destination (same directory, so
same file system), flushes it to disk and moves it into place with ``os.replace``, which POSIX
makes atomic. If the body raises, the temporary path is removed and the destination is left as it
was. Concurrent writers of one destination never share a temporary path; the last to finish wins.

The module imports only the standard library and NumPy, so the data layer and report writers can
use it without pulling in JAX or Orbax.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from typing import IO, Any, Iterator, Mapping

import numpy as np

_MODES = ("w", "wb")


def _temporary_path(path: str) -> str:
    """A fresh hidden name beside ``path``: ``<dir>/.<name>.<random>.tmp``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _flush_to_disk(path: str) -> None:
    """fsync a finished regular file, so the rename never publishes data still in the page cache."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path (not yet created) beside ``path``; on success moves it onto ``path``.

    For writers that need a file name rather than a file object (``h5py.File``). The parent
    directory is created if missing.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _temporary_path(path)
    try:
        yield tmp
        _flush_to_disk(tmp)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """``open(path, mode)`` whose content appears at ``path`` only when the ``with`` body succeeds.

    ``mode`` is ``"w"`` (text; ``encoding`` and ``newline`` as for ``open``) or ``"wb"`` (bytes).
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_write mode={mode!r}: expected one of {_MODES}")
    text = {"encoding": encoding, "newline": newline} if mode == "w" else {}
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), **text) as f:
        yield f


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_write(path, encoding=encoding) as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, value: Any, **dumps_kwargs) -> None:
    """Writes ``json.dumps(value, **dumps_kwargs)`` to ``path`` atomically (UTF-8)."""
    atomic_write_text(path, json.dumps(value, **dumps_kwargs))


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, Any], *, compressed: bool = False) -> None:
    """``np.savez`` (or ``np.savez_compressed``) of ``arrays`` to exactly ``path``, atomically.

    Writing through a file object keeps ``path`` as given (NumPy appends ``.npz`` to bare names).
    """
    save = np.savez_compressed if compressed else np.savez
    with atomic_write(path, "wb") as f:
        save(f, **arrays)


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copies the bytes of ``source`` to ``path`` atomically."""
    with open(source, "rb") as src, atomic_write(path, "wb") as dst:
        shutil.copyfileobj(src, dst)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary directory path (not yet created) beside ``path``; on success renames it to ``path``.

    For caches that several processes may fill at once: when another writer has already put a
    directory at ``path``, that one is kept and ours is discarded (first writer wins), so a reader
    that found ``path`` never sees it replaced.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _temporary_path(path)
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not os.path.isdir(path):  # a real failure, not a concurrent writer that won
                raise
    finally:
        _remove(tmp)
