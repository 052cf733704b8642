"""LNS: learning binary weights with noisy supervision (Han et al., ICML 2020).

Each binarized layer gets a small mapping network ``f`` applied to its whole latent filter bank
``W`` (``c_out`` images of ``c_in`` channels, ``k x k`` pixels); the deployed weight is
``s * sign(f(W))``. ``sign(W)`` serves as a noisy label for ``f(W)``, through a loss corrected for
label noise (an unbiased estimator of the loss against the unknown clean bits)::

    l(q, y) = (q - y)^2
    l_corr(q, t) = [(1 - rho_{-t}) l(q, t) - rho_{t} l(q, -t)] / (1 - rho_pos - rho_neg)
    aux = alpha * SUM over the layer's weights of l_corr(f(W), sign(W))
    (reduction="mean": the MEAN over the layer's weights, a variant that is not the paper's)

``total = cross_entropy + trainer.layers.aux_loss(model)``. The mapping networks only exist during
training: export keeps the bits they produce and drops them. ``warmup_loss`` is the same corrected
loss without ``alpha``: the data-free warm-up (``trainer.warmup``) trains the mapping to reproduce
sign(W) before fine-tuning, whatever alpha the fine-tuning uses. The method and the choices the paper
leaves open: docs/lns-method.md; the implementation and its measurements: docs/models.md.

Example::

    >>> import torch
    >>> from trainer.lns import LNSWeightBinarizer
    >>> binarize = LNSWeightBinarizer((8, 4, 3, 3), alpha=1.0, rho=0.005)
    >>> weight = torch.randn(8, 4, 3, 3)
    >>> bits = binarize(weight)
    >>> bool((bits.abs() == weight.abs().mean(dim=(1, 2, 3), keepdim=True)).all())
    True
    >>> binarize.aux_loss(weight).shape, sum(p.numel() for p in binarize.parameters()) > 0
    (torch.Size([]), True)
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.errors import TrainerError
from trainer.quantizers import WeightBinarizer, channel_scale, scaled_ste_sign, sign

# How the auxiliary loss is reduced over a layer's weights: "sum" is the paper's, "mean" is not.
# (trainer.binarizers.AUX_REDUCTIONS repeats it for the torch-free CLI; a test keeps them equal.)
REDUCTIONS = ("sum", "mean")


class MappingNetwork(nn.Module):
    """3x3 convs ``c_in -> m*c_in -> m*c_in -> c_in``, BatchNorm + ReLU after the first two.

    BatchNorm always uses the statistics of its batch (the layer's own filters), so the output is a
    deterministic function of ``W`` in train and eval mode alike.
    """

    def __init__(self, in_channels: int, width: int = 2) -> None:
        super().__init__()
        hidden = width * in_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden, track_running_stats=False),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden, track_running_stats=False),
            nn.ReLU(),
            nn.Conv2d(hidden, in_channels, 3, padding=1),
        )

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.layers(weight)


def noise_rates(t: torch.Tensor, rho_pos: float, rho_neg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rho_{t}, rho_{-t})`` elementwise for labels ``t`` in {-1, +1}."""
    positive = t > 0
    rho_t = torch.where(positive, rho_pos, rho_neg).to(t.dtype)
    rho_minus_t = torch.where(positive, rho_neg, rho_pos).to(t.dtype)
    return rho_t, rho_minus_t


def corrected_loss(
    q: torch.Tensor, t: torch.Tensor, rho_pos: float, rho_neg: float, reduction: str = "sum"
) -> torch.Tensor:
    """Sum (or mean) over all entries of the noise-corrected squared loss of ``q`` against labels ``t``."""
    rho_t, rho_minus_t = noise_rates(t, rho_pos, rho_neg)
    loss = ((1 - rho_minus_t) * (q - t) ** 2 - rho_t * (q + t) ** 2) / (1 - rho_pos - rho_neg)
    return loss.mean() if reduction == "mean" else loss.sum()


class LNSWeightBinarizer(WeightBinarizer):
    """``W -> s * sign(f(W))`` with ``s = mean|W|`` per output channel and an STE from the output to q.

    Options: ``alpha`` (weight of the auxiliary loss), ``rho`` or ``rho_pos``/``rho_neg`` (label-noise
    rates), ``width`` (hidden channels = width * c_in), ``clip`` (STE window on q, None = identity),
    ``reduction`` (``sum`` over the layer's weights as the paper, or ``mean``: not the paper's).
    """

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        alpha: float = 1.0,
        rho: float = 0.005,
        rho_pos: float | None = None,
        rho_neg: float | None = None,
        width: int = 2,
        clip: float | None = None,
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.rho_pos = float(rho if rho_pos is None else rho_pos)
        self.rho_neg = float(rho if rho_neg is None else rho_neg)
        if not (0 <= self.rho_pos < 1 and 0 <= self.rho_neg < 1 and self.rho_pos + self.rho_neg < 1):
            raise TrainerError(
                f"LNS noise rates need 0 <= rho_pos, rho_neg and rho_pos + rho_neg < 1, "
                f"got rho_pos={self.rho_pos}, rho_neg={self.rho_neg}"
            )
        if self.alpha < 0:
            raise TrainerError(f"LNS alpha must be >= 0, got {alpha}")
        if int(width) < 1:
            raise TrainerError(f"LNS width must be a positive integer, got {width}")
        if reduction not in REDUCTIONS:
            raise TrainerError(f"LNS reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        if len(weight_shape) != 4:
            raise TrainerError(f"LNS maps 4-d conv weights (c_out, c_in, k, k), got shape {weight_shape}")
        self.clip = clip
        self.mapping = MappingNetwork(weight_shape[1], int(width))
        self._cached: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def mapped(self, weight: torch.Tensor) -> torch.Tensor:
        """``q = f(W)``, reusing the one computed by the last forward if ``W`` is unchanged since."""
        if self._cached is not None:
            q, cached_weight, version = self._cached
            if cached_weight is weight and version == weight._version and q.requires_grad:
                return q
        return self.mapping(weight)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        q = self.mapping(weight)
        # Cache the graph for aux_loss in the same step; an optimizer step bumps W's version.
        self._cached = (q, weight, weight._version) if torch.is_grad_enabled() else None
        return scaled_ste_sign(q, channel_scale(weight), self.clip)

    def __getstate__(self) -> dict:
        # The cache holds an autograd graph, which copy.deepcopy and pickle cannot copy: drop it.
        return {**super().__getstate__(), "_cached": None}

    def aux_loss(self, weight: torch.Tensor) -> torch.Tensor:
        """``alpha * sum l_corr(f(W), sign(W))``; the noisy labels carry no gradient."""
        q = self.mapped(weight)
        self._cached = None
        return self.alpha * self._noisy_label_loss(q, weight)

    def warmup_loss(self, weight: torch.Tensor) -> torch.Tensor:
        """The corrected loss without alpha, for the mapping alone (no gradient reaches ``W``)."""
        return self._noisy_label_loss(self.mapping(weight.detach()), weight)

    def _noisy_label_loss(self, q: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        labels = sign(weight.detach())
        return corrected_loss(q, labels, self.rho_pos, self.rho_neg, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, rho_pos={self.rho_pos}, rho_neg={self.rho_neg}, clip={self.clip}, "
            f"reduction={self.reduction}"
        )
