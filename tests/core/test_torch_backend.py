"""The PyTorch backend through the Embedder: same numbers as a plain forward pass, flip TTA,
BatchNorm folding, bf16 accuracy, the fp32 fallback on overflow, no side effects on the
caller's model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from faceforge.core.embedder import Embedder
from faceforge.core.precision import native_bf16
from faceforge.core.preprocess import Preprocess
from faceforge.core.torch_backend import (
    RuntimeOptions,
    TorchBackend,
    fold_batchnorm,
    inference_copy,
)
from faceforge.errors import CheckpointError, ConfigError, DataError
from faceforge.evaluation.verification import evaluate_embeddings
from faceforge.models import build_backbone


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_backbone("mobilefacenet", embedding_size=64)
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding matters
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), np.uint8)


def _reference(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    x = (images.astype(np.float32) - 127.5) / 127.5  # insightface's ((x / 255) - 0.5) / 0.5
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def test_fp32_matches_plain_forward_and_flip_sums_views():
    model, images = _model(), _images(5)
    ref = _reference(model, images)
    mirrored = _reference(model, images[:, :, ::-1])
    embedder = Embedder.from_backbone(model, precision="fp32", batch_size=2)
    tolerance = {"rtol": 1e-4, "atol": 1e-4 * np.abs(ref).max()}
    out = embedder.embed_raw(images)
    assert out.dtype == np.float32 and out.shape == (5, 64)
    np.testing.assert_allclose(out, ref, **tolerance)
    plain, views = embedder.views(images, flip=True)
    np.testing.assert_allclose(plain, ref, **tolerance)
    np.testing.assert_allclose(views, mirrored, **tolerance)
    flipped = Embedder.from_backbone(model, precision="fp32", flip=True)
    np.testing.assert_allclose(flipped.embed_raw(images), ref + mirrored, rtol=1e-4, atol=2e-4)
    normalised = flipped.embed(images)
    expected = (ref + mirrored) / np.linalg.norm(ref + mirrored, axis=1, keepdims=True)
    np.testing.assert_allclose(normalised, expected, atol=1e-5)


def test_bgr_contract_and_custom_normalisation():
    model, images = _model(), _images(2)
    pre = Preprocess(color="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = images[:, :, :, ::-1].astype(np.float32) / 255.0
    with torch.no_grad():
        ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    for channels_last in (True, False):
        embedder = Embedder.from_backbone(model, pre, precision="fp32", channels_last=channels_last)
        np.testing.assert_allclose(
            embedder.embed_raw(images), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max()
        )


def test_callers_model_is_untouched():
    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Embedder.from_backbone(model, precision="fp32").embed(_images(4))
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    prepared = inference_copy(model, torch.device("cpu"))
    assert not prepared.training and model.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())


class _Branchy(torch.nn.Module):
    """conv->bn (foldable), conv feeding bn and a skip (not foldable), linear->bn1d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)
        self.conv2, self.bn2 = torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4)
        self.fc, self.bn3 = torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        y = self.conv2(x)
        x = self.bn2(y) + y
        return self.bn3(self.fc(x.mean((2, 3))))


def test_fold_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    model = _Branchy()
    for bn in (model.bn1, model.bn2, model.bn3):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    model.eval()
    folded = fold_batchnorm(model)
    remaining = [n for n, m in folded.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert remaining == ["bn2"]  # conv2's output is also used by the skip
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    x = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(model.bn1, torch.nn.BatchNorm2d)  # the original is untouched


def test_bad_inputs_raise():
    embedder = Embedder.from_backbone(_model(), precision="fp32")
    with pytest.raises(DataError, match=r"shape \(N, 112, 112, 3\), got uint8 \(1, 96, 96, 3\)"):
        embedder.embed(np.zeros((1, 96, 96, 3), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        embedder.embed(np.zeros((1, 112, 112, 3), np.float32))
    assert embedder.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 64)
    assert embedder.embed(_images(1)[0]).shape == (1, 64)  # one face without a batch axis
    with pytest.raises(ConfigError, match="precision"):
        Embedder.from_backbone(_model(), precision="int8")
    with pytest.raises(DataError, match="batch_size must be positive"):
        Embedder.from_backbone(_model(), batch_size=0)


class _OverflowsBelowFp32(torch.nn.Module):
    """Finite in fp32, infinite under reduced-precision autocast: what an untrained IResNet
    does in fp16 (activations past 65504), simulated on a CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.mean((2, 3)))
        return y if y.dtype == torch.float32 else y * float("inf")


def test_reduced_precision_overflow_falls_back_to_fp32_once():
    torch.manual_seed(0)
    model, images = _OverflowsBelowFp32().eval(), _images(3)
    with pytest.warns(UserWarning, match="bf16 gave non-finite embeddings.*fp32 from now on"):
        embedder = Embedder.from_backbone(model, precision="bf16")
    assert embedder.backend.precision == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per embedder, not one per batch
        out = embedder.embed_raw(images)
    assert np.isfinite(out).all()
    expected = Embedder.from_backbone(model, precision="fp32").embed_raw(images)
    np.testing.assert_array_equal(out, expected)


def test_non_finite_fp32_output_is_an_error():
    model = _OverflowsBelowFp32().eval()
    model.fc.bias.data.fill_(float("nan"))  # diverged weights
    with pytest.raises(CheckpointError, match="non-finite embeddings in fp32"):
        Embedder.from_backbone(model, precision="fp32")


def test_bf16_matches_fp32_verification_accuracy():
    synthetic = pytest.importorskip("faceforge.data.synthetic")
    if not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16")
    vset = synthetic.SyntheticFaces(seed=0).verification_set(num_identities=30, num_pairs=40)
    model = _model()
    fp32 = Embedder.from_backbone(model, precision="fp32").views(vset.images, flip=True)
    bf16 = Embedder.from_backbone(model, precision="bf16").views(vset.images, flip=True)
    for a, b in zip(fp32, bf16, strict=True):
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.99
    acc32 = evaluate_embeddings(fp32[0], vset.issame, flipped=fp32[1]).accuracy
    acc16 = evaluate_embeddings(bf16[0], vset.issame, flipped=bf16[1]).accuracy
    assert abs(acc32 - acc16) <= 1e-3


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.PReLU(8),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 16),
    ).eval()


def test_compiled_backend_matches_eager_on_a_padded_last_micro_batch():
    net = _tiny_net()
    x = torch.randn(6, 3, 32, 32)  # micro-batches of 4: the second one is padded to 4
    eager = TorchBackend(net, RuntimeOptions(torch.device("cpu"), "fp32", micro_batch=4))
    compiled = TorchBackend(
        net, RuntimeOptions(torch.device("cpu"), "fp32", micro_batch=4, compile=True)
    )
    expected, got = eager.run(x), compiled.run(x)
    assert got.shape == (6, 16) and compiled.compiled  # ran compiled, did not fall back
    # same fp32 function, different kernels: rounding of a 27-term dot product chain
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: broken)
    net = _tiny_net()
    backend = TorchBackend(net, RuntimeOptions(torch.device("cpu"), "fp32", compile=True))
    x = torch.randn(3, 3, 32, 32)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        got = backend.run(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = backend.run(x)
    with torch.no_grad():
        torch.testing.assert_close(got, net(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, got)
