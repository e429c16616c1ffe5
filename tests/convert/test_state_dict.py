"""read_state_dict: safetensors with and without the package, sharded indexes, torch files, refusals."""
import json
import os
import pickle
import sys

import numpy as np
import pytest

from jaxmodels.convert.state_dict import WeightFileError, read_safetensors, read_state_dict, torch_load

TENSORS = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b.bias": np.array([1, -2], np.int64)}


def _write_safetensors(path, tensors):
    """The format's spec: 8-byte header length, JSON header, little-endian bytes."""
    names = {np.float32: "F32", np.int64: "I64"}
    header, offset, chunks = {"__metadata__": {"format": "np"}}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": names[array.dtype.type], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob + b"".join(chunks))


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
        assert got[key].dtype == want[key].dtype


def test_safetensors_read_without_the_package_and_sharded_indexes(tmp_path, monkeypatch):
    _write_safetensors(tmp_path / "part1.safetensors", {"a.weight": TENSORS["a.weight"]})
    _write_safetensors(tmp_path / "part2.safetensors", {"b.bias": TENSORS["b.bias"]})
    index = {"weight_map": {"a.weight": "part1.safetensors", "b.bias": "part2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _assert_same(read_state_dict(tmp_path), TENSORS)  # a model directory: its index, then the shards
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # the package is optional
    _assert_same(read_state_dict(tmp_path), TENSORS)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(WeightFileError, match="bad.safetensors is too short"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_torch_files_load_weights_only_and_refuse_other_globals(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in TENSORS.items()}}, tmp_path / "w.pt")
    _assert_same(read_state_dict(tmp_path / "w.pt"), TENSORS)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    with pytest.raises(WeightFileError, match=r"evil\.bin: torch\.load\(weights_only=True\) failed .*system"):
        read_state_dict(tmp_path / "evil.bin")
    assert not marker.exists()
    with pytest.raises(WeightFileError, match="an embedded thing: torch.load"):
        torch_load(tmp_path / "evil.bin", name="an embedded thing")
