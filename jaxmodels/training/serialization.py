"""Reading pickles that may come from anywhere: an unpickler that resolves only an allowlist of globals.

``pickle.load`` runs whatever callable a file names (``os.system``, say), so jaxmodels never calls it on
a dataset or weights file. Readers of pickled formats (the Planetoid graphs in ``jaxmodels.data``, the
ZINC molecules of the PNA project) build a ``RestrictedUnpickler`` with the exact ``(module, name)``
globals their files use; any other global, and any persistent id, raises ``UnsafePickleError`` naming
the file before anything is called. It lives here, in the lowest layer, so the data layer and the
projects share the one definition; it imports only the standard library.
"""
from __future__ import annotations

import pickle
from typing import IO, Any, Callable, Mapping

# Protocol-2 pickles written by Python 3 spell ``bytes`` as ``_codecs.encode(str, 'latin1')``.
_BYTES_GLOBAL = ("_codecs", "encode")


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle referenced a global outside the allowlist (or a safe global got unsafe arguments).

    Both a ``pickle.UnpicklingError`` (what ``pickle`` raises for a refused load) and a ``ValueError`` (what
    the readers raise for every malformed input file).
    """


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``allowed`` globals; ``path`` is named in every refusal.

    ``allowed`` maps ``(module, name)`` as written in the pickle to the object it resolves to (the object
    may be a checking wrapper rather than the original). ``_codecs.encode`` is always resolved, but only
    as ``encode(str, 'latin1')``, the form protocol-2 pickles use for ``bytes``. ``what`` describes the
    files the reader expects (e.g. ``"a ZINC molecules pickle"``) for the error message.
    """

    def __init__(self, file: IO[bytes], *, allowed: Mapping[tuple[str, str], Any], path: str, what: str,
                 **kwargs):
        super().__init__(file, **kwargs)
        self.allowed = {**allowed, _BYTES_GLOBAL: self._latin1_bytes}
        self.path = path
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            known = ", ".join(sorted(f"{m}.{n}" for m, n in self.allowed))
            raise UnsafePickleError(
                f"{self.path}: refused to unpickle global '{module}.{name}'; {self.what} only references {known}. "
                f"The file is not {self.what} or has been tampered with.") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.path}: refused a persistent id {pid!r} (not used by {self.what})")

    def _latin1_bytes(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(obj, str) or encoding != "latin1" or errors != "strict":
            raise UnsafePickleError(f"{self.path}: _codecs.encode is only allowed as encode(str, 'latin1')")
        return obj.encode("latin1")


def restricted_load(file: IO[bytes], *, allowed: Mapping[tuple[str, str], Any], path: str, what: str,
                    on_error: Callable[[Exception], Exception], **kwargs) -> Any:
    """Unpickles ``file`` through ``RestrictedUnpickler``; refusals propagate as ``UnsafePickleError``, any
    other failure (truncated or corrupt data: ``EOFError``, ``UnpicklingError``, ...) is re-raised as
    ``on_error(error)``, the reader's own error naming the file. ``kwargs`` go to ``pickle.Unpickler``
    (e.g. ``encoding="latin1"`` for Python 2 pickles)."""
    try:
        return RestrictedUnpickler(file, allowed=allowed, path=path, what=what, **kwargs).load()
    except UnsafePickleError:
        raise
    except Exception as error:
        raise on_error(error) from error
