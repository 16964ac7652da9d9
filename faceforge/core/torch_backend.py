"""The PyTorch embedder backend: a backbone prepared once to embed many batches fast.

The backbone runs as an eval-mode *copy* prepared for inference (the caller's model is never
modified): BatchNorm folded into the preceding convolution / linear layer, weights and
inputs in ``channels_last`` layout, and the autocast dtype that ``precision`` resolves to on
the device (:mod:`faceforge.core.precision`: bf16 on CPUs that compute it natively, fp16 on
CUDA, else fp32). On CPU the network sees micro-batches of 16 images, which keeps
activations in cache and measured faster than larger batches (or than splitting them over
single-threaded workers), and runs best where freed memory stays in the process between
micro-batches (:mod:`faceforge.allocator`, which the ``faceforge`` command applies: 1.14x
for MobileFaceNet, 1.3x compiled). Each option can be turned off
(:class:`RuntimeOptions`), which is how other backends (ONNX Runtime, quantised models) are
compared against this one.

In fp32 on CPU (CPUs without native bf16) the 3x3 convolutions of at least 128 channels
run as Winograd F(4x4, 3x3) (:mod:`faceforge.core.winograd`): 1.44x for IResNet-50 with
oneDNN limited to AVX2, 1.18x with AVX-512.

``compile`` adds ``torch.compile`` (inductor, weights frozen as constants so convolutions
run as prepacked oneDNN kernels on CPU): about 1.2x the eager speed of MobileFaceNet on an
AVX2 CPU, for a one-time compile of ~10-30 s (cached on disk by inductor), so it pays off
for long jobs (evaluations, a server) and is off by default. The last micro-batch of a
call is padded to the micro-batch size so that one input shape compiles once.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from faceforge.core.precision import Precision, resolve_precision
from faceforge.core.winograd import use_winograd

#: images per forward pass on CPU (see the module docstring)
CPU_MICRO_BATCH = 16


@dataclass(frozen=True)
class RuntimeOptions:
    """How an embedder backend runs its network; a backend ignores the options it has no use
    for (ONNX Runtime has no BatchNorm folding to switch off)."""

    #: where the network runs; ``None`` keeps an in-memory backbone where it is
    device: torch.device | None = None
    #: ``auto | fp32 | bf16 | fp16`` (:data:`~faceforge.core.precision.PRECISIONS`)
    precision: str = "auto"
    fold_bn: bool = True
    channels_last: bool = True
    #: images per forward pass (default: 16 on CPU, the whole batch elsewhere)
    micro_batch: int | None = None
    #: intra-op threads of ONNX Runtime (0: its default, one per core)
    threads: int = 0
    #: ``torch.compile`` the prepared network (see the module docstring)
    compile: bool = False
    #: 3x3 convolutions by Winograd F(4x4, 3x3) (:mod:`faceforge.core.winograd`); ``None``:
    #: where it pays, fp32 on CPU without ``compile``
    winograd: bool | None = None


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free module)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Copy of an eval-mode ``model`` where each BatchNorm fed only by a convolution or linear
    layer is folded into that layer's weights (one op instead of two at inference).

    The model is traced with ``torch.fx``; tracing errors propagate to the caller.
    """
    traced = torch.fx.symbolic_trace(copy.deepcopy(model))
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if node.args else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
            continue
        if not isinstance(source, torch.fx.Node) or source.op != "call_module":
            continue
        if len(source.users) != 1:
            continue
        layer = modules[source.target]
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        parent, _, name = source.target.rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, name, fused)
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def inference_copy(
    model: nn.Module,
    device: torch.device,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device``, BatchNorm folded where possible.

    A model that ``torch.fx`` cannot trace is copied unfolded. The output is the same
    function up to floating-point rounding; ``model`` itself is left as it was.
    """
    was_training = model.training
    model.eval()
    try:
        prepared = None
        if fold_bn:
            with contextlib.suppress(Exception):  # untraceable model: keep it unfolded
                prepared = fold_batchnorm(model)
        if prepared is None:
            prepared = copy.deepcopy(model)
    finally:
        model.train(was_training)
    prepared.eval().to(device)
    if channels_last:
        prepared.to(memory_format=torch.channels_last)
    return prepared


class TorchBackend:
    """A backbone prepared once (:func:`inference_copy`) for the embedder's batches.

    Not thread-safe: use one per thread.
    """

    def __init__(self, backbone: nn.Module, options: RuntimeOptions) -> None:
        self.device = options.device or model_device(backbone)
        self.compute = resolve_precision(options.precision, self.device)
        self.channels_last = options.channels_last
        self.model = inference_copy(
            backbone, self.device, fold_bn=options.fold_bn, channels_last=options.channels_last
        )
        micro_batch = options.micro_batch
        if micro_batch is None:
            micro_batch = CPU_MICRO_BATCH if self.device.type == "cpu" else 1 << 30
        self.micro_batch = micro_batch
        wanted = options.winograd
        if wanted is None:  # fp32 on CPU; under compile inductor picks the kernels
            wanted = self.device.type == "cpu" and self.compute.dtype is None
            wanted = wanted and not options.compile
        #: whether some convolutions run as Winograd F(4x4, 3x3)
        self.winograd = wanted and use_winograd(self.model) > 0
        self.eager = self.model
        self.compiled = options.compile
        if options.compile:
            self.model = torch.compile(self.model, options={"freezing": True})

    @property
    def precision(self) -> str:
        """What runs: ``fp32``, ``bf16`` or ``fp16``."""
        return self.compute.name

    @property
    def accelerated(self) -> bool:
        return self.device.type != "cpu"

    def __repr__(self) -> str:
        layout = "channels-last" if self.channels_last else "NCHW"
        extras = ", Winograd 3x3" * self.winograd + ", compiled" * self.compiled
        return f"torch on {self.device}, {self.precision}, {layout}{extras}"

    def fall_back_to_fp32(self) -> None:
        """Run in fp32 from now on (the embedder calls this when reduced precision produced
        non-finite embeddings)."""
        self.compute = Precision(self.device.type, None)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Raw float32 (N, D) embeddings of float (N, 3, H, W) model input on the device."""
        if not self.channels_last:
            x = x.contiguous()
        step = self.micro_batch
        # autocast caches the cast weights within the region: micro-batches share them
        with torch.inference_mode(), self.compute.autocast():
            parts = [self._forward(x[i : i + step]) for i in range(0, len(x), step)]
        return torch.cat(parts).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on one micro-batch; a compiled network on CPU sees a short last
        micro-batch padded with zeros to the micro-batch size (one shape, one compile)."""
        if not self.compiled:
            return self.model(x)
        missing = self.micro_batch - len(x)
        if self.device.type == "cpu" and missing > 0:
            padded = torch.cat([x, x.new_zeros((missing, *x.shape[1:]))])
            if self.channels_last:
                padded = padded.contiguous(memory_format=torch.channels_last)
            return self._forward(padded)[: len(x)]
        try:
            return self.model(x)
        except Exception as error:  # no C++ compiler, unsupported op: eager still works
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); "
                "embedding without it",
                stacklevel=2,
            )
            self.model, self.compiled = self.eager, False
            return self.model(x)
