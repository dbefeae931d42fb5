"""ALUM: virtual adversarial training for masked-LM (continued) pretraining.

Liu et al., 2020, "Adversarial Training for Large Neural Language Models" (arXiv:2004.08994),
Eq. (1) and Algorithm 1:

    min_θ  E_x [ L_MLM(f(x; θ), y)  +  α · max_{‖δ‖∞ ≤ ε} ℓ_s(f(x + δ; θ), f(x; θ)) ]

δ is a perturbation of the word embeddings, started at N(0, σ²I) and moved by K steps of
normalized gradient ascent of size η, projected onto the ε-ball; ℓ_s is the symmetric KL.
No labels: the term compares the model's own output distributions, and for the MLM task they
are taken at the masked positions only (the MLM head returns (N, V) logits there).

That is SMART's R_s on the MLM task, so this class IS SmartRegularizer (mtadv/adversarial/
smart.py, the one shared ascent `virtual_adversarial_perturbation`) under its own name, so runs,
logs and task definitions say "alum". Paper settings (flag `--alum`): α = 10 for pretraining
(α = 1 for fine-tuning: add --adv_weight 1), ε = 1e-5, η = 1e-3, σ = 1e-5, K = 1, ℓ∞.
"""

from __future__ import annotations

from mtadv.adversarial.base import ADV_METHODS
from mtadv.adversarial.smart import SmartRegularizer


@ADV_METHODS.register("alum")
class AlumRegularizer(SmartRegularizer):
    """α · ℓ_s(f(x + δ), f(x)) at the masked positions; ℓ_s is the task's `adv_loss` (sym_kl for mlm)."""

    name = "alum"
