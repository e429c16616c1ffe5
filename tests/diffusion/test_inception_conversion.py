"""Our Flax FID Inception-v3 with converted weights computes pytorch-fid's features.

No weights are downloaded: pytorch-fid's FID Inception is built with RANDOM weights (its
construction replicated from torchvision's ``inception_v3`` plus the FIDInceptionA/C/E_1/E_2
blocks), BatchNorm scales/biases randomised and running statistics calibrated on random images
then perturbed, saved with ``torch.save``, converted by ``load_torch_inception`` and compared
with ``pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True)`` (whose
weight download is replaced by that state dict) on the same images.
"""
import json
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

_TORCHVISION_OPS = None  # keeps the stand-in op definitions alive (see _import_torchvision)


def _import_torchvision():
    """torchvision, also when its compiled ops cannot load.

    PyPI's Linux torchvision wheels are CUDA builds; over the CPU torch wheel their ``_C``
    extension fails to load, and torchvision 0.28's ``_meta_registrations`` then dies on
    ``register_fake("torchvision::nms")``. The models need none of those ops, so defining the two
    schemas it registers fakes for lets the (pure Python) models import.
    """
    global _TORCHVISION_OPS
    try:
        import torchvision
        return torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _TORCHVISION_OPS = torch.library.Library("torchvision", "DEF")
    _TORCHVISION_OPS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_OPS.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    return torchvision


torchvision = _import_torchvision()
pfi = pytest.importorskip("pytorch_fid.inception")
F = torch.nn.functional

from jaxmodels.convert.torch_inception import (  # noqa: E402
    InceptionConversionError, load_torch_inception, params_from_torch)
from jaxmodels.vision.inception import InceptionV3, inception_extractor, resize_bilinear  # noqa: E402

IMAGE_SIZE = 64


def _fid_inception_random(seed: int = 0):
    """pytorch-fid's ``fid_inception_v3()`` body with random weights instead of the download."""
    torch.manual_seed(seed)
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    model.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = pfi.FIDInceptionE_1(1280)
    model.Mixed_7c = pfi.FIDInceptionE_2(2048)
    generator = torch.Generator().manual_seed(seed + 1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.normal_(0.0, 0.2, generator=generator)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: the running stats become the batch's stats
        # Calibrate the running statistics so activations stay O(1) through ~95 random layers ...
        model.train()
        small = torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        model(2 * F.interpolate(small, size=(299, 299), mode="bilinear", align_corners=False) - 1)
        model.eval()
        # ... then perturb them, so that they are not self-consistent with any batch.
        for bn in norms:
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25, generator=generator))
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn(bn.running_mean.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = _fid_inception_random()
    state_dict = model.state_dict()
    path = tmp_path_factory.mktemp("inception") / "pt_inception_random.pth"
    torch.save(state_dict, path)

    # pytorch-fid's own wrapper, its weight download replaced by our random state dict.
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *args, **kwargs: state_dict
    try:
        fid_model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                                    normalize_input=True).eval()
    finally:
        pfi.load_state_dict_from_url = original

    rng = np.random.default_rng(0)
    images = rng.uniform(-1.0, 1.0, (2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)  # our range
    with torch.no_grad():
        x01 = torch.from_numpy((images + 1.0) / 2.0).permute(0, 3, 1, 2)  # pytorch-fid's input: NCHW [0, 1]
        pool3 = fid_model(x01)[0][:, :, 0, 0].numpy()
        logits = model(2 * F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False) - 1).numpy()
    return {"path": path, "state_dict": state_dict, "images": images, "pool3": pool3, "logits": logits}


@pytest.fixture(scope="module")
def variables(reference):
    return load_torch_inception(reference["path"])


def _relative_max_diff(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


def test_pool3_and_logits_match_pytorch_fid(reference, variables):
    assert variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)
    assert variables["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"].shape == (192,)
    out = jax.jit(InceptionV3().apply)(variables, reference["images"])
    assert out["pool3"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert np.std(reference["pool3"]) > 1e-2  # the random network is not degenerate
    assert _relative_max_diff(out["pool3"], reference["pool3"]) < 1e-4
    assert _relative_max_diff(out["logits"], reference["logits"]) < 1e-4


def test_torchvision_variant_ignores_aux_head(reference, variables):
    """torchvision's plain Inception3 (``fid=False`` pooling); its ``AuxLogits.*`` keys are skipped."""
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, num_classes=1008, init_weights=False)
    model.load_state_dict(reference["state_dict"], strict=False)  # all but AuxLogits
    model.eval()
    state_dict = model.state_dict()
    assert any(k.startswith("AuxLogits.") for k in state_dict)
    converted = params_from_torch(state_dict)
    images = reference["images"]
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        logits = model(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)).numpy()
    # Through the FeatureExtractor (quantize=False: the reference saw the float images).
    ours = inception_extractor(converted, fid=False, output="logits", quantize=False)(images)
    assert ours.shape == (2, 1008)
    assert _relative_max_diff(ours, logits) < 1e-4
    assert _relative_max_diff(ours, reference["logits"]) > 1e-3  # the FID pooling patches matter


def test_resize_matches_torch_interpolate():
    rng = np.random.default_rng(1)
    for size_in, size_out in [((7, 11), (20, 13)), ((40, 30), (17, 29)), ((64, 64), (299, 299))]:
        images = rng.normal(size=(2, *size_in, 3)).astype(np.float32)
        ours = np.asarray(resize_bilinear(images, size_out))
        theirs = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2), size=size_out, mode="bilinear",
                               align_corners=False).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_missing_unexpected_and_misshaped_keys_are_named(reference, tmp_path):
    state_dict = dict(reference["state_dict"])
    del state_dict["Mixed_6c.branch7x7_2.conv.weight"]
    path = tmp_path / "missing.pth"
    torch.save(state_dict, path)
    with pytest.raises(InceptionConversionError, match=r"missing keys \(1\): Mixed_6c\.branch7x7_2\.conv\.weight"):
        load_torch_inception(path)

    state_dict = dict(reference["state_dict"])
    state_dict["Mixed_9z.conv.weight"] = torch.zeros(1)
    with pytest.raises(InceptionConversionError, match=r"unexpected keys \(1\): Mixed_9z\.conv\.weight"):
        params_from_torch(state_dict)

    state_dict = dict(reference["state_dict"])
    state_dict["Mixed_5b.branch1x1.bn.running_var"] = torch.ones(63)
    with pytest.raises(InceptionConversionError, match=r"Mixed_5b\.branch1x1\.bn\.running_var: expected shape \(64,\)"):
        params_from_torch(state_dict)


def _write_safetensors(path, tensors):
    """A minimal safetensors writer (the format's spec), so this test needs no extra package."""
    header, offset, chunks = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob + b"".join(chunks))


def test_safetensors_and_headless_state_dicts(reference, variables, tmp_path):
    tensors = {k: v.numpy() for k, v in reference["state_dict"].items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "inception.safetensors"
    _write_safetensors(path, tensors)
    from_safetensors = load_torch_inception(path)
    jax.tree_util.tree_map(np.testing.assert_array_equal, from_safetensors, variables)

    headless = params_from_torch({k: v for k, v in tensors.items() if not k.startswith("fc.")})
    assert "fc" not in headless["params"]
    with pytest.raises(ValueError, match="fc layer"):
        inception_extractor(headless, output="logits")
