"""Perturbation spaces: which tensor an input-space method perturbs, and how it goes back in.

Every input-space method (SMART, ALUM, FGM, PGD, FreeAT, FreeLB, VAT, SiFT, ...) sees one
tensor `ctx.embeds` (B, T, H) and runs `ctx.forward(embeds + δ)`; the space decides what that
tensor is (setting `adv_space`, per task):

- `word`: the raw word embeddings, the tensor Hugging Face takes as `inputs_embeds`. Position
  and token-type embeddings and the embedding LayerNorm are applied after the perturbation, once.
  Radii are absolute, so their meaning depends on the encoder's embedding scale (MiniLM's mean
  |coordinate| is about 0.04).
- `embedding`: the embedding layer's output (word + position + type embeddings, LayerNorm,
  dropout): the tensor the first transformer layer receives. It is perturbed once and never
  re-embedded: the embedding layer runs as usual and a forward hook replaces its output.
  Coordinates are divided by each token's root-mean-square (detached), so radii, step sizes and
  initial noise are stated relative to the token's own scale: ε = 0.01 under ℓ∞ bounds every
  coordinate by 1% of the token's RMS, whatever the encoder's hidden size or LayerNorm gains.
  (Under ℓ2 a radius bounds the norm over H coordinates of unit RMS, so it scales with √H.)
  Gradients still reach the whole embedding layer through the clean tensor.

Shapes: embeds, δ (B, T, H); the per-token scale (B, T, 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import Tensor, nn

from mtadv.errors import UserError
from mtadv.registry import Registry

SPACES: Registry[type[PerturbationSpace]] = Registry("perturbation space")
EMBEDDING_LAYER_NAMES = ("embeddings",)  # BERT, RoBERTa, ELECTRA, DeBERTa(-v2), ALBERT, DistilBERT


def embedding_layer(encoder: nn.Module) -> nn.Module:
    """The encoder's embedding layer (word + position + type embeddings and their LayerNorm)."""
    for name in EMBEDDING_LAYER_NAMES:
        module = getattr(encoder, name, None)
        if isinstance(module, nn.Module):
            return module
    raise ValueError(
        f"{type(encoder).__name__} has no embedding layer named {EMBEDDING_LAYER_NAMES}: "
        "use adv_space word with this encoder"
    )


@contextlib.contextmanager
def embedding_output_hook(encoder: nn.Module, hook: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Run the block with the embedding layer's output replaced by hook(output)."""

    def forward_hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return hook(output)

    handle = embedding_layer(encoder).register_forward_hook(forward_hook)
    try:
        yield
    finally:
        handle.remove()


class PerturbationSpace:
    """Where δ lives. `clean_forward` gives the tensor to perturb (attached, on the clean path) and
    the clean output; `forward` runs the model at a perturbed tensor. `scale` is space-specific state
    of the clean forward that `forward` needs (the per-token RMS of the embedding space).

    With `leaf=True` the tensor is cut from the weights and made a leaf that requires grad, still on
    the clean path: ∇ of the clean output with respect to it is the input gradient at δ = 0, which
    an attack on frozen weights gets without a second forward."""

    name = ""

    def clean_forward(
        self, forward_model: nn.Module, model: nn.Module, batch: dict[str, Tensor], task: str, leaf: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        raise NotImplementedError

    def forward(
        self, model: nn.Module, batch: dict[str, Tensor], task: str, perturbed: Tensor, scale: Tensor | None
    ) -> Tensor:
        raise NotImplementedError


@SPACES.register("word")
class WordSpace(PerturbationSpace):
    name = "word"

    def clean_forward(self, forward_model, model, batch, task, leaf=False):
        embeds = model.embed(batch)  # (B, T, H) word embeddings
        if leaf:
            embeds = embeds.detach().requires_grad_(True)
        return embeds, forward_model(batch, task=task, inputs_embeds=embeds), None

    def forward(self, model, batch, task, perturbed, scale):
        return model(batch, task=task, inputs_embeds=perturbed)


def token_rms(x: Tensor) -> Tensor:
    """(B, T, 1) root-mean-square of each token's coordinates, detached (a unit, not a path)."""
    return x.detach().float().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6).to(x.dtype)


@SPACES.register("embedding")
class EmbeddingSpace(PerturbationSpace):
    name = "embedding"

    def clean_forward(self, forward_model, model, batch, task, leaf=False):
        captured: dict[str, Tensor] = {}

        def normalize(out: Tensor) -> Tensor:  # out: (B, T, H) the embedding layer's output
            scale = token_rms(out)
            embeds = out / scale
            if leaf:
                embeds = embeds.detach().requires_grad_(True)
            captured["embeds"], captured["scale"] = embeds, scale
            return captured["embeds"] * scale  # the clean path runs through embeds, so ∇_embeds exists

        with embedding_output_hook(model.encoder, normalize):
            logits = forward_model(batch, task=task)
        return captured["embeds"], logits, captured["scale"]

    def forward(self, model, batch, task, perturbed, scale):
        with embedding_output_hook(model.encoder, lambda out: perturbed * scale):
            return model(batch, task=task)


def get_space(name: str) -> PerturbationSpace:
    """The registered space by name; an unknown name fails listing the known ones."""
    return SPACES.get(name)()


def task_space(regularizers: list) -> str:
    """The perturbation space of a task's input-space methods (word when it has none); each
    regularizer's `space` is its adv_space, or None when it perturbs no input."""
    spaces = {r.space for r in regularizers if r.space is not None}
    if len(spaces) > 1:
        raise UserError(f"a task's methods perturb different spaces {sorted(spaces)}: give them one adv_space")
    return spaces.pop() if spaces else "word"
