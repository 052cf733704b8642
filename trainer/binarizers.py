"""The binarizers by name: the one list of valid ``--binarizer`` and ``--act-binarizer`` values.

=============  ==========  ==========================================================================
kind           name        implementation
=============  ==========  ==========================================================================
activation     ``ste``     ``trainer.quantizers.ste_sign``: clipped straight-through sign
activation     ``approx``  ``trainer.quantizers.approx_sign``: Bi-Real Net's ApproxSign
activation     ``none``    ``trainer.quantizers.identity``: full precision (the layer pads with 0)
weight         ``ste``     ``trainer.quantizers.SteWeightBinarizer``: ``s * sign(W)``
weight         ``lns``     ``trainer.lns.LNSWeightBinarizer``: ``s * sign(f(W))``, f learned (LNS)
weight         ``none``    ``trainer.quantizers.FullPrecisionWeight``: ``W`` (full precision)
=============  ==========  ==========================================================================

``none`` builds the full-precision twin of a zoo model (``--binarizer none --act-binarizer none``)
or stage 1 of two-stage training (``--binarizer none --act-binarizer ste``: binary activations,
real weights, as ReActNet).

The registry maps names to ``"module:attribute"`` strings that are imported on first use, so the
names are available without torch (``edgebnn --help`` builds its choices from them).

Example::

    >>> import torch
    >>> from trainer.binarizers import WEIGHT_BINARIZERS, build_weight_binarizer, get_activation_binarizer
    >>> list(WEIGHT_BINARIZERS)
    ['ste', 'lns', 'none']
    >>> sign = get_activation_binarizer("ste")
    >>> sign(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    >>> binarize = build_weight_binarizer("ste", weight_shape=(2, 1, 1, 1))
    >>> binarize(torch.tensor([[[[0.5]]], [[[-0.25]]]])).flatten()
    tensor([ 0.5000, -0.2500])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainer.errors import TrainerError

if TYPE_CHECKING:  # for the type hints only: importing it needs torch
    import torch

    from trainer.quantizers import WeightBinarizer

# name -> "module:function", a function x -> {-1, +1} with its surrogate gradient.
ACTIVATION_BINARIZERS: dict[str, str] = {
    "ste": "trainer.quantizers:ste_sign",
    "approx": "trainer.quantizers:approx_sign",
    "none": "trainer.quantizers:identity",
}

# name -> "module:class", a trainer.quantizers.WeightBinarizer built as cls(weight_shape, **options).
WEIGHT_BINARIZERS: dict[str, str] = {
    "ste": "trainer.quantizers:SteWeightBinarizer",
    "lns": "trainer.lns:LNSWeightBinarizer",
    "none": "trainer.quantizers:FullPrecisionWeight",
}
FULL_PRECISION = "none"  # the name of the identity binarizer in both registries
# How LNS reduces its auxiliary loss over a layer's weights: "sum" is the paper's, "mean" is not
# (the choices of --aux-reduction; the same tuple as trainer.lns.REDUCTIONS, which needs torch).
AUX_REDUCTIONS = ("sum", "mean")


def _resolve(kind: str, registry: dict[str, str], name: str) -> Any:
    try:
        module_name, _, attribute = registry[name].partition(":")
    except KeyError:
        raise TrainerError(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}") from None
    return getattr(importlib.import_module(module_name), attribute)


def get_activation_binarizer(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation binarizer called ``name``; TrainerError listing the valid names otherwise."""
    return _resolve("activation binarizer", ACTIVATION_BINARIZERS, name)


def get_weight_binarizer(name: str) -> Callable[..., WeightBinarizer]:
    """The weight-binarizer class called ``name``; TrainerError listing the valid names otherwise."""
    return _resolve("weight binarizer", WEIGHT_BINARIZERS, name)


def build_weight_binarizer(
    name: str, weight_shape: tuple[int, ...], config: dict[str, Any] | None = None
) -> WeightBinarizer:
    """Build binarizer ``name`` for a weight of ``weight_shape``; unknown options raise TrainerError."""
    factory = get_weight_binarizer(name)
    try:
        return factory(tuple(weight_shape), **(config or {}))
    except TypeError as error:
        raise TrainerError(f"bad option for weight binarizer {name!r}: {error}") from None
