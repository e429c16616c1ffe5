"""Atomic writes: the destination is the old file or the complete new one; no temporary is left."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from jaxmodels.training.files import (atomic_copy, atomic_directory, atomic_path, atomic_save_npz, atomic_write,
                                      atomic_write_json, atomic_write_text)


class Boom(Exception):
    pass


def test_write_creates_the_directory_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    with atomic_write(path) as f:
        f.write("héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert os.listdir(path.parent) == ["out.txt"]


def test_a_failing_body_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(Boom):
        with atomic_write(path, "wb") as f:
            f.write(b"partial")
            f.flush()
            raise Boom
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(Boom):
        with atomic_write(tmp_path / "new.txt") as f:
            raise Boom
    assert os.listdir(tmp_path) == ["out.bin"]  # no partial file, not even an empty one


def test_the_destination_is_replaced_only_when_the_body_ends(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic_write(path) as f:
        f.write("new")
        f.flush()
        assert path.read_text() == "old"  # a reader meanwhile still sees the complete old file
    assert path.read_text() == "new"


def test_concurrent_writers_never_share_a_temporary(tmp_path):
    path = tmp_path / "out.json"

    def write(i):
        for _ in range(20):
            atomic_write_json(path, {"writer": i, "data": list(range(200))})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert json.loads(path.read_text())["data"] == list(range(200))
    assert os.listdir(tmp_path) == ["out.json"]


def test_file_permissions_follow_the_umask(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode='a'"):
        with atomic_write(tmp_path / "a.txt", "a"):
            pass


def test_json_npz_and_copy(tmp_path):
    atomic_write_json(tmp_path / "v.json", {"é": 1}, ensure_ascii=False, indent=2)
    assert (tmp_path / "v.json").read_text(encoding="utf-8") == json.dumps({"é": 1}, ensure_ascii=False, indent=2)
    arrays = {"a": np.arange(3), "b": np.ones((2, 2), np.float32)}
    for compressed in (False, True):
        atomic_save_npz(tmp_path / "data", arrays, compressed=compressed)  # exactly this name: no ".npz" added
        with np.load(tmp_path / "data") as back:
            assert set(back.files) == {"a", "b"}
            np.testing.assert_array_equal(back["b"], arrays["b"])
    atomic_copy(tmp_path / "v.json", tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_bytes() == (tmp_path / "v.json").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["copy.json", "data", "v.json"]


def test_atomic_path_for_writers_that_need_a_name(tmp_path):
    path = tmp_path / "x.bin"
    with atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and not os.path.exists(tmp)
        with open(tmp, "wb") as f:
            f.write(b"1")
    assert path.read_bytes() == b"1"
    with pytest.raises(Boom):
        with atomic_path(path) as tmp:
            open(tmp, "wb").close()
            raise Boom
    assert os.listdir(tmp_path) == ["x.bin"]


def test_atomic_directory_first_writer_wins(tmp_path):
    entry = tmp_path / "cache" / "entry"
    with atomic_directory(entry) as tmp:
        os.makedirs(tmp)
        open(os.path.join(tmp, "f"), "w").close()
        with atomic_directory(entry) as other:  # a concurrent writer that finishes first
            os.makedirs(other)
            open(os.path.join(other, "g"), "w").close()
    assert os.listdir(entry) == ["g"]
    assert os.listdir(entry.parent) == ["entry"]
    with pytest.raises(Boom):
        with atomic_directory(tmp_path / "cache" / "broken") as tmp:
            os.makedirs(tmp)
            raise Boom
    assert os.listdir(entry.parent) == ["entry"]


def test_importing_it_stays_light():
    """The data layer imports it: neither it nor the lazy ``jaxmodels.training`` package imports JAX or Orbax."""
    code = ("import sys, jaxmodels.training.files; "
            "print(sorted(m for m in ('jax', 'flax', 'orbax', 'optax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
