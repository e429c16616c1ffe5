"""RestrictedUnpickler: resolves its allowlist and nothing else, before any refused callable runs."""
import collections
import io
import os
import pickle

import pytest

from jaxmodels.training.serialization import UnsafePickleError, restricted_load

ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict}


def _load(data, allowed=ALLOWED):
    return restricted_load(io.BytesIO(data), allowed=allowed, path="f.pkl", what="a test pickle",
                           on_error=lambda e: ValueError(f"f.pkl: unreadable ({type(e).__name__})"))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_allowed_globals_and_protocol2_bytes_load():
    value = collections.OrderedDict(a=[1, 2], b=b"\x00\xff")
    assert _load(pickle.dumps(value, protocol=2)) == value  # bytes come as _codecs.encode(str, 'latin1')


def test_other_globals_are_refused_naming_file_and_global(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match=r"f\.pkl: refused to unpickle global '(posix|os|nt)\.system'") as info:
        _load(pickle.dumps(_Evil(marker), protocol=2))
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)
    assert "collections.OrderedDict" in str(info.value)  # what the file may reference
    assert not marker.exists()


def test_codecs_encode_only_as_latin1_bytes():
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="only allowed as encode"):
        _load(payload)


def test_persistent_ids_are_refused_and_corrupt_data_gets_the_readers_error():
    class Persisting(pickle.Pickler):
        def persistent_id(self, obj):
            return "ref" if obj == "x" else None

    buffer = io.BytesIO()
    Persisting(buffer, protocol=2).dump(["x"])
    with pytest.raises(UnsafePickleError, match="persistent id"):
        _load(buffer.getvalue())
    with pytest.raises(ValueError, match=r"f\.pkl: unreadable"):
        _load(pickle.dumps([1, 2])[:3])
