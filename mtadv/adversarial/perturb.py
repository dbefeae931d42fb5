"""The perturbation math every input-space method shares: masking, noise, normalization,
projection onto the ε-ball, dropout-mask replay, and the inner gradient under mixed precision.

Shapes: word embeddings and perturbations are (B, T, H); masks are (B, T, 1) so padded tokens
are never perturbed. `level` says where norms are taken: "token" (over H, each token its own
ball) or "example" (over T·H, each example its own ball).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

TINY = 1e-12  # guards divisions only; the radius ε is enforced by project()


def token_mask(batch: dict[str, Tensor], like: Tensor) -> Tensor:
    """(B, T, 1) mask of real tokens, in like's dtype."""
    return batch["attention_mask"].unsqueeze(-1).to(like.dtype)


def _dims(level: str) -> tuple[int, ...]:
    if level == "token":
        return (-1,)
    if level == "example":
        return (-2, -1)
    raise ValueError(f"norm level must be 'token' or 'example', got {level!r}")


def norm_of(x: Tensor, norm: str, level: str) -> Tensor:
    """‖x‖ per token (B, T, 1) or per example (B, 1, 1)."""
    dims = _dims(level)
    if norm == "linf":
        return x.abs().amax(dim=dims, keepdim=True)
    if norm == "l2":
        return x.float().pow(2).sum(dim=dims, keepdim=True).sqrt().to(x.dtype)
    raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")


def normalize(g: Tensor, norm: str, level: str) -> Tensor:
    """g / ‖g‖: the steepest-ascent direction of unit norm (zero where g is zero)."""
    return g / (norm_of(g, norm, level) + TINY)


def direction(g: Tensor, norm: str, level: str, sign: bool = False) -> Tensor:
    """The ascent direction: g/‖g‖, or sign(g) for ℓ∞ when sign=True.

    sign(g) is the steepest-ascent direction under ℓ∞ (Madry et al.'s PGD, Shafahi et al.'s FreeAT,
    FGSM): a step η·sign(g) moves every coordinate with a nonzero gradient by exactly η. g/‖g‖∞ moves
    only the largest coordinate by η (SMART's and FreeLB's reference code use it). ℓ2 ignores `sign`.
    """
    if sign and norm == "linf":
        return g.sign()
    return normalize(g, norm, level)


def project(delta: Tensor, eps: float, norm: str, level: str) -> Tensor:
    """Π onto {‖δ‖ ≤ ε}: clamp for ℓ∞, rescale for ℓ2."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / (norm_of(delta, "l2", level) + TINY)).clamp(max=1.0)
    return delta * scale


def gaussian_noise(like: Tensor, sigma: float, mask: Tensor) -> Tensor:
    """v ~ N(0, σ²I) on real tokens, zero on padding."""
    return torch.randn_like(like) * sigma * mask


@dataclass
class RngState:
    """The RNG state before a forward pass, to replay its dropout masks."""

    cpu: Tensor
    cuda: list[Tensor] | None

    @classmethod
    def capture(cls, device: torch.device) -> RngState:
        cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda)

    @contextlib.contextmanager
    def replay(self):
        """Run the block with this state; the outer RNG stream continues untouched afterwards."""
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def uniform_init(like: Tensor, mag: float, mask: Tensor, norm: str, level: str) -> Tensor:
    """FreeLB's random start on real tokens, zero on padding (mag = 0 gives δ = 0).

    ℓ2: δ ~ U(−1, 1) scaled by mag/√(n·H), n = real tokens per norm group (L per example, 1 per
    token), so E‖δ‖₂ ≈ mag/√3 whatever the length. ℓ∞: δ ~ U(−mag, mag).
    """
    if mag == 0:
        return torch.zeros_like(like)
    u = torch.empty_like(like).uniform_(-1.0, 1.0) * mask  # (B, T, H)
    if norm == "linf":
        return u * mag
    tokens = mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1) if level == "example" else torch.ones_like(mask[:, :1])
    return u * mag / (tokens * like.shape[-1]).sqrt()  # (B, 1, 1) scale per example


def ascend(
    delta: Tensor,
    grad: Tensor,
    step: float,
    radius: float | None,
    mask: Tensor,
    norm: str,
    level: str,
    sign: bool = False,
) -> Tensor:
    """One projected ascent step Π_{‖δ‖≤radius}(δ + step·d) on real tokens, d = direction(g) (radius None: no Π)."""
    delta = delta.detach() + (step * direction(grad, norm, level, sign) * mask).to(delta.dtype)  # grad: fp32
    return delta if radius is None else project(delta, radius, norm, level)


def scaled_grad(
    loss: Tensor,
    inputs: Sequence[Tensor],
    scale: float = 1.0,
    *,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> list[Tensor | None]:
    """∂loss/∂inputs in fp32, taken on scale·loss and divided by scale afterwards.

    Under fp16 autocast the backward runs in half precision, where the small gradients of an inner
    ascent underflow to zero; the trainer passes its GradScaler's current scale (StepContext.grad_scale,
    1.0 without fp16), as it does for the step's own backward. Non-finite values (an overflow at that
    scale) are returned as they are: every caller checks them with `all_finite`. retain_graph defaults
    to create_graph, as in torch.autograd.grad.
    """
    grads = torch.autograd.grad(
        loss * scale if scale != 1.0 else loss,
        list(inputs),
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=allow_unused,
    )
    return [None if g is None else (g.float() / scale if scale != 1.0 else g.float()) for g in grads]


HALF = (torch.float16, torch.bfloat16)


def full_precision_target(forward: Callable[[Tensor], Tensor], x: Tensor, target: Tensor) -> Tensor:
    """The clean output an fp32 inner ascent compares against: target, detached, unless autocast made it half
    precision; then forward(x) again, without a graph (call it with autocast off; `forward` replays dropout).

    A divergence between a half-precision target and an fp32 output carries the target's rounding error
    (about 2^-8 relative in bf16) as a first-order term, larger than what a small perturbation changes.
    """
    if target.dtype not in HALF:
        return target.detach()
    with torch.no_grad():
        return forward(x)


def all_finite(tensors: Sequence[Tensor | None]) -> bool:
    """No NaN or inf in any of the tensors (None entries are skipped)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)
