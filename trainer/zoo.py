"""Model zoo: binary networks by name, each recreated from a JSON config.

=================  ========================================================================
``fmnist-bnn``     small W1/A1 residual net for 28x28 (Fashion-MNIST); LCE-friendly channel counts
``resnet20``       CIFAR ResNet-20 with binary convs and real-valued shortcuts per conv (Bi-Real)
``vgg-small``      CIFAR VGG-Small (128-128-256-256-512-512), binary except first/last
``birealnet18``    Bi-Real Net 18 (ImageNet layout)
``quicknet-small`` ``quicknet`` ``quicknet-large``: larq-zoo's QuickNets (ImageNet, 224x224, 1000 classes)
=================  ========================================================================

Every model keeps its first and last layer in full precision, binarizes the rest with
``trainer.layers.BinaryConv2d`` (one-padding, TF-SAME geometry), and has a plain forward graph (no
data-dependent control flow) so that it exports to ONNX.

Example::

    >>> import torch
    >>> from trainer.zoo import create_model, model_summary
    >>> model = create_model("fmnist-bnn", num_classes=10, in_channels=1, input_size=28)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> again = create_model(model.name, **model.config)
    >>> model_summary(model, (1, 28, 28))["binary_params"] > 0
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.errors import TrainerError
from trainer.layers import BinaryConv2d, binarizer_parameters, binary_layers, pad_same

BinaryConv = Callable[..., BinaryConv2d]  # BinaryConv2d with the binarizers already chosen


# --- building blocks ------------------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """Full-precision conv with TF-SAME zero padding (asymmetric on even sizes at stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, **kwargs: Any):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0], value=0.0)
        return super().forward(x)


class BlurPool(nn.Module):
    """Fixed anti-aliasing depthwise 3x3 filter ``[1,2,1] x [1,2,1] / 16``, stride 2, SAME (QuickNet)."""

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        self.register_buffer("weight", kernel.expand(channels, 1, 3, 3).clone())
        self.channels, self.stride = channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, 3, self.stride, value=0.0)
        return F.conv2d(x, self.weight, stride=self.stride, groups=self.channels)


class BinaryResidual(nn.Module):
    """``x + BN(act(binary_conv(x)))``: a real-valued shortcut around one binary conv.

    ``relu=True`` is the order LCE fuses best (conv -> ReLU -> BN, QuickNet); ``relu=False`` is Bi-Real.
    """

    def __init__(self, channels: int, conv: BinaryConv, relu: bool = True) -> None:
        super().__init__()
        self.conv = conv(channels, channels, 3, 1)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.act(self.conv(x)))


class BinaryWiden(nn.Module):
    """Double the channels: ``BN(act(binary_conv(x))) + concat(x, x)`` (a free real-valued shortcut)."""

    def __init__(self, in_channels: int, conv: BinaryConv, relu: bool = True) -> None:
        super().__init__()
        self.conv = conv(in_channels, 2 * in_channels, 3, 1)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.bn = nn.BatchNorm2d(2 * in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=1) + self.bn(self.act(self.conv(x)))


class BiRealDown(nn.Module):
    """Bi-Real downsampling: ``BN(binary_conv_stride2(x)) + BN(conv1x1(avgpool2(x)))``."""

    def __init__(self, in_channels: int, out_channels: int, conv: BinaryConv) -> None:
        super().__init__()
        self.conv = conv(in_channels, out_channels, 3, 2)
        self.bn = nn.BatchNorm2d(out_channels)
        # ceil_mode: same output size as the TF-SAME stride-2 conv on odd sizes too.
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, ceil_mode=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.shortcut(x)


class BiRealStage(nn.Sequential):
    """``convs`` binary convs with a shortcut each; the first downsamples when ``stride == 2``."""

    def __init__(self, in_channels: int, out_channels: int, convs: int, stride: int, conv: BinaryConv):
        first = [BiRealDown(in_channels, out_channels, conv)] if stride == 2 else []
        rest = [BinaryResidual(out_channels, conv, relu=False) for _ in range(convs - len(first))]
        super().__init__(*first, *rest)


# --- models ---------------------------------------------------------------------------------------


def pooled(size: int, times: int) -> int:
    """Spatial size after ``times`` floor-mode 2x2 max-pools."""
    for _ in range(times):
        size //= 2
    return size


def fmnist_bnn(
    num_classes: int,
    in_channels: int,
    input_size: tuple[int, int],
    conv: BinaryConv,
    *,
    width: int = 64,
    blocks: tuple[int, ...] | list[int] = (1, 1),
    dropout: float = 0.0,
    relu: bool = True,
    stem_pool: bool = False,
) -> nn.Module:
    """Float stem conv, binary stages of ``width * 2**i`` channels with real shortcuts, float head.

    Stage ``i`` runs ``blocks[i]`` residual binary convs; each later stage starts with a 2x2 max-pool
    and a binary conv that doubles the channels. With the defaults (width 64, two stages at 28x28 and
    14x14) it has the cost of a plain 322k-parameter BNN with the same three binary convs (measured at
    91.5% on Fashion-MNIST in 15 epochs, docs/models.md) plus real-valued shortcuts.
    Binary conv in-channels are multiples of 32 and out-channels multiples of 8 for ``width % 32 == 0``
    (LCE performance guide); max-pools feed the next binarizer (LCE fuses them into a binary max-pool).
    ``relu=False`` drops the ReLU between binary conv and BatchNorm (Bi-Real style; no parameters
    change), which our converter fuses completely into the binary conv.
    ``stem_pool=True`` adds a 2x2 max-pool right after the float stem: every binary conv then runs at
    a quarter of the pixels (fmnist-bnn: 72.8 M -> 18.5 M MACs per image; measured 0.34-0.48x the
    training step time). The default layout is unchanged.
    """
    stages = len(blocks)
    pools = stages + int(bool(stem_pool))
    height, width_px = pooled(input_size[0], pools), pooled(input_size[1], pools)
    if stages < 1 or height < 1 or width_px < 1:
        raise TrainerError(
            f"fmnist-bnn with {pools} max-pool(s) needs an input of at least {2**pools}x{2**pools}, "
            f"got {list(input_size)}"
        )
    channels = [width * 2**stage for stage in range(stages)]
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
    ]
    if stem_pool:
        layers.append(nn.MaxPool2d(2))
    for stage, count in enumerate(blocks):
        if stage > 0:
            layers += [nn.MaxPool2d(2), BinaryWiden(channels[stage - 1], conv, relu)]
        layers += [BinaryResidual(channels[stage], conv, relu) for _ in range(count)]
    layers += [
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(channels[-1] * height * width_px, num_classes),
    ]
    return nn.Sequential(*layers)


def resnet20(
    num_classes: int, in_channels: int, input_size: tuple[int, int], conv: BinaryConv, *, width: int = 16
) -> nn.Module:
    """ResNet-20 for CIFAR: 3 stages x 3 basic blocks (2 binary convs each), Bi-Real shortcuts per conv."""
    channels = [width, 2 * width, 4 * width]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
    for stage, out_channels in enumerate(channels):
        in_ch = channels[max(stage - 1, 0)]
        layers.append(BiRealStage(in_ch, out_channels, 6, 1 if stage == 0 else 2, conv))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes)]
    return nn.Sequential(*layers)


def vgg_small(
    num_classes: int, in_channels: int, input_size: tuple[int, int], conv: BinaryConv, *, width: int = 128
) -> nn.Module:
    """VGG-Small (LQ-Net/XNOR CIFAR net): float conv, 5 binary convs, 3 max-pools, float classifier.

    Order binary conv -> BN -> max-pool, so the pool feeds the next binarizer.
    """
    height, width_px = pooled(input_size[0], 3), pooled(input_size[1], 3)
    if height < 1 or width_px < 1:
        raise TrainerError(f"vgg-small needs an input of at least 8x8, got {list(input_size)}")
    w = width
    plan = [
        (w, w, True),
        (w, 2 * w, False),
        (2 * w, 2 * w, True),
        (2 * w, 4 * w, False),
        (4 * w, 4 * w, True),
    ]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)]
    for c_in, c_out, pool in plan:
        layers += [conv(c_in, c_out, 3, 1), nn.BatchNorm2d(c_out)]
        if pool:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(4 * w * height * width_px, num_classes)]
    return nn.Sequential(*layers)


def birealnet18(
    num_classes: int, in_channels: int, input_size: tuple[int, int], conv: BinaryConv, *, width: int = 64
) -> nn.Module:
    """Bi-Real Net 18: 7x7 float stem, 4 stages of 4 binary convs with per-conv shortcuts, float FC."""
    channels = [width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(width),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]
    for stage, out_channels in enumerate(channels):
        in_ch = channels[max(stage - 1, 0)]
        layers.append(BiRealStage(in_ch, out_channels, 4, 1 if stage == 0 else 2, conv))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes)]
    return nn.Sequential(*layers)


class QuickNet(nn.Module):
    """larq-zoo's QuickNet (larq_zoo/sota/quicknet.py, v1.0), rebuilt in PyTorch.

    Stem: float 3x3/2 conv (f/4) -> BN -> ReLU -> depthwise 3x3/2 -> BN (no affine) -> 1x1 conv (f) -> BN.
    Sections of residual blocks ``x + BN(ReLU(binary_conv3x3(x)))``; a channel change first goes through
    a float transition ReLU -> MaxPool(2, stride 1) -> BlurPool(stride 2) -> 1x1 conv -> BN.
    Head: ReLU -> global average pool -> float dense.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        conv: BinaryConv,
        section_blocks: tuple[int, ...],
        section_filters: tuple[int, ...],
    ) -> None:
        super().__init__()
        stem = section_filters[0]
        self.stem = nn.Sequential(
            SameConv2d(in_channels, stem // 4, 3, 2, bias=False),
            nn.BatchNorm2d(stem // 4),
            nn.ReLU(),
            SameConv2d(stem // 4, stem // 4, 3, 2, groups=stem // 4, bias=False),
            nn.BatchNorm2d(stem // 4, affine=False),
            nn.Conv2d(stem // 4, stem, 1, bias=False),
            nn.BatchNorm2d(stem),
        )
        blocks: list[nn.Module] = []
        channels = stem
        for count, filters in zip(section_blocks, section_filters, strict=True):
            for _ in range(count):
                if filters != channels:
                    blocks.append(
                        nn.Sequential(
                            nn.ReLU(),
                            nn.MaxPool2d(2, stride=1),
                            BlurPool(channels),
                            nn.Conv2d(channels, filters, 1, bias=False),
                            nn.BatchNorm2d(filters),
                        )
                    )
                    channels = filters
                blocks.append(BinaryResidual(channels, conv))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def quicknet_builder(
    section_blocks: tuple[int, ...], section_filters: tuple[int, ...]
) -> Callable[..., nn.Module]:
    def build(num_classes: int, in_channels: int, input_size: tuple[int, int], conv: BinaryConv) -> nn.Module:
        return QuickNet(num_classes, in_channels, conv, section_blocks, section_filters)

    return build


# --- registry -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]
    num_classes: int
    in_channels: int
    input_size: int
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "fmnist-bnn": ModelSpec(fmnist_bnn, 10, 1, 28, "W1/A1 residual CNN for 28x28 grey images"),
    "resnet20": ModelSpec(resnet20, 10, 3, 32, "CIFAR ResNet-20, Bi-Real shortcuts"),
    "vgg-small": ModelSpec(vgg_small, 10, 3, 32, "CIFAR VGG-Small"),
    "birealnet18": ModelSpec(birealnet18, 1000, 3, 224, "Bi-Real Net 18 (ImageNet)"),
    "quicknet-small": ModelSpec(
        quicknet_builder((4, 4, 4, 4), (32, 64, 256, 512)), 1000, 3, 224, "larq-zoo QuickNetSmall"
    ),
    "quicknet": ModelSpec(
        quicknet_builder((4, 4, 4, 4), (64, 128, 256, 512)), 1000, 3, 224, "larq-zoo QuickNet"
    ),
    "quicknet-large": ModelSpec(
        quicknet_builder((6, 8, 12, 6), (64, 128, 256, 512)), 1000, 3, 224, "larq-zoo QuickNetLarge"
    ),
}


def _size_pair(input_size: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    size = tuple(int(v) for v in input_size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise TrainerError(f"input_size must be an int or [height, width], got {list(input_size)}")
    return size  # type: ignore[return-value]


# Bounds of the architecture options (issue 15: a hostile or mistyped value is a clean error, and a
# width of 10^6 is refused before torch tries to allocate terabytes). The largest zoo layout uses
# width 96; ImageNet models 64.
MAX_WIDTH = 4096
MAX_BLOCKS_PER_STAGE = 64
MAX_STAGES = 8
MAX_INPUT_SIZE = 4096
MAX_CLASSES = 100_000
MAX_IN_CHANNELS = 64


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_option(model: str, name: str, value: Any, default: Any) -> None:
    """TrainerError naming the option unless ``value`` is a sane value of ``default``'s kind."""
    prefix = f"{model}: option {name}={value!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TrainerError(f"{prefix} must be true or false")
    elif isinstance(default, int):
        if not _is_int(value) or not 1 <= value <= MAX_WIDTH:
            raise TrainerError(f"{prefix} must be an integer in 1..{MAX_WIDTH}")
    elif isinstance(default, float):
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value < 1.0:
            raise TrainerError(f"{prefix} must be a number in [0, 1)")
    elif isinstance(default, tuple | list):
        if (
            not isinstance(value, list | tuple)
            or not 1 <= len(value) <= MAX_STAGES
            or not all(_is_int(v) and 0 <= v <= MAX_BLOCKS_PER_STAGE for v in value)
        ):
            raise TrainerError(
                f"{prefix} must be a list of 1..{MAX_STAGES} integers in 0..{MAX_BLOCKS_PER_STAGE}, e.g. [1, 1]"
            )


def _check_geometry(name: str, num_classes: Any, in_channels: Any, input_size: Any) -> tuple[int, int]:
    """Validated ``num_classes``, ``in_channels`` (ints) and ``input_size`` (int or [h, w]) of a model."""
    sizes = input_size if isinstance(input_size, list | tuple) else [input_size]
    checks = (
        ("num_classes", num_classes, MAX_CLASSES, [num_classes]),
        ("in_channels", in_channels, MAX_IN_CHANNELS, [in_channels]),
        ("input_size", input_size, MAX_INPUT_SIZE, sizes),
    )
    for label, shown, limit, values in checks:
        if not values or not all(_is_int(v) and 1 <= v <= limit for v in values):
            raise TrainerError(f"{name}: {label} must be a positive integer up to {limit}, got {shown!r}")
    return _size_pair(input_size)


def check_model_options(name: str, options: dict[str, Any] | None) -> None:
    """TrainerError unless ``options`` are known architecture options of zoo model ``name`` with sane
    values (cheap: nothing is built; ``edgebnn train`` checks them before loading any data)."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise TrainerError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}") from None
    options = options or {}
    if not isinstance(options, dict):
        raise TrainerError(f"{name}: model options must be a table of KEY=VALUE, got {options!r}")
    allowed = [p for p in inspect.signature(spec.build).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(map(str, options)) - {p.name for p in allowed})
    if unknown:
        valid = ", ".join(p.name for p in allowed) or "none"
        raise TrainerError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    defaults = {p.name: p.default for p in allowed}
    for option, value in options.items():
        _check_option(name, option, value, defaults[option])


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | list[int] | None = None,
    weight_binarizer: str = "ste",
    activation_binarizer: str = "ste",
    binarizer_config: dict[str, Any] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build zoo model ``name``; ``model.config`` recreates it with ``create_model(name, **config)``.

    Omitted ``num_classes``/``in_channels``/``input_size`` take the model's defaults. ``overrides`` are
    architecture options of the model (e.g. ``width``); unknown names raise TrainerError.
    """
    try:
        spec = MODELS[name]
    except KeyError:
        raise TrainerError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    num_classes = spec.num_classes if num_classes is None else num_classes
    in_channels = spec.in_channels if in_channels is None else in_channels
    input_size = spec.input_size if input_size is None else input_size
    # Values may come from a (tampered) checkpoint or the command line: check types and bounds.
    size = _check_geometry(name, num_classes, in_channels, input_size)
    for label, value in (
        ("weight_binarizer", weight_binarizer),
        ("activation_binarizer", activation_binarizer),
    ):
        if not isinstance(value, str):
            raise TrainerError(f"{name}: {label} must be a binarizer name, got {value!r}")
    if binarizer_config is not None and not isinstance(binarizer_config, dict):
        raise TrainerError(f"{name}: binarizer_config must be a table of options, got {binarizer_config!r}")
    check_model_options(name, overrides)
    conv = partial(
        BinaryConv2d,
        weight_binarizer=weight_binarizer,
        activation_binarizer=activation_binarizer,
        binarizer_config=dict(binarizer_config or {}),
    )
    try:
        model = spec.build(num_classes, in_channels, size, conv, **overrides)
    except (TypeError, ValueError) as error:  # a value of the right kind that the layers still refuse
        raise TrainerError(f"{name}: invalid model configuration ({error})") from None
    model.name = name
    model.config = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": list(size),
        "weight_binarizer": weight_binarizer,
        "activation_binarizer": activation_binarizer,
        "binarizer_config": dict(binarizer_config or {}),
        **{key: list(value) if isinstance(value, tuple) else value for key, value in overrides.items()},
    }
    return model


# --- size and cost --------------------------------------------------------------------------------


def model_summary(
    model: nn.Module, input_shape: tuple[int, int, int] | list[int] | None = None
) -> dict[str, Any]:
    """Parameter counts, deployed size and (given ``input_shape`` ``[C, H, W]``) MACs per input.

    Counted like larq's model summary: binary weights at 1 bit, every other trainable parameter and
    fixed filter (QuickNet's blur-pool) at 32 bits; BatchNorm running statistics and the training-only
    LNS mapping networks are not counted. ``size_bytes = binary_params / 8 + 4 * float_params``.
    A ``BinaryConv2d`` with the full-precision weight binarizer (``none``, the FP twin) counts as float
    parameters; its MACs are binary only when both its weights and its input are binary.
    """
    binary = [(name, layer) for name, layer in binary_layers(model) if layer.weight_binarizer_name != "none"]
    binary_ids = {id(layer.weight) for _, layer in binary if not layer.frozen}
    training_only = {id(p) for p in binarizer_parameters(model)}
    binary_params = sum(layer.in_channels * layer.out_channels * layer.kernel_size**2 for _, layer in binary)
    float_params = sum(
        p.numel() for p in model.parameters() if id(p) not in binary_ids and id(p) not in training_only
    )
    float_params += sum(m.weight.numel() for m in model.modules() if isinstance(m, BlurPool))
    float_params += sum(  # a frozen full-precision layer keeps its weight as a buffer
        layer.frozen_weight.numel()
        for _, layer in binary_layers(model)
        if layer.frozen and layer.weight_binarizer_name == "none"
    )

    summary = {
        "binary_params": binary_params,
        "float_params": float_params,
        "params": binary_params + float_params,
        "size_bytes": binary_params / 8 + 4 * float_params,
        "binary_layers": len(binary),
    }
    if input_shape is None:
        return summary
    macs = {"binary": 0, "float": 0}

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        per_output = output[0].numel()  # one sample
        if isinstance(module, BinaryConv2d):
            kind = (
                "float" if module.full_precision_input or module.weight_binarizer_name == "none" else "binary"
            )
            macs[kind] += per_output * module.in_channels * module.kernel_size**2
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs["float"] += per_output * module.in_channels // module.groups * k
        elif isinstance(module, BlurPool):
            macs["float"] += per_output * 9
        elif isinstance(module, nn.Linear):
            macs["float"] += per_output * module.in_features

    # The weight binarizers' own modules (LNS mapping networks) run on weights, not per image.
    training_modules = {id(m) for _, layer in binary_layers(model) for m in layer.weight_binarizer.modules()}
    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, BinaryConv2d | nn.Conv2d | BlurPool | nn.Linear) and id(m) not in training_modules
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {**summary, "binary_macs": macs["binary"], "float_macs": macs["float"]}
