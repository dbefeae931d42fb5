"""ALUM: virtual adversarial training for masked-LM (continued) pretraining.

Liu et al., 2020, "Adversarial Training for Large Neural Language Models" (arXiv:2004.08994),
Eq. (1) and Algorithm 1:

    min_θ  E_x [ L_MLM(f(x; θ), y)  +  α · max_{‖δ‖∞ ≤ ε} ℓ_s(f(x + δ; θ), f(x; θ)) ]

No labels: the term compares the model's own output distributions, and for the MLM task they
are taken at the masked positions only (the MLM head returns (N, V) logits there).

That is SMART's R_s on the MLM task, so this class IS SmartRegularizer (mtadv/adversarial/
smart.py, the one shared ascent `virtual_adversarial_perturbation`) under its own name, so runs,
logs and task definitions say "alum". What it does: δ perturbs ctx.embeds (the task's
perturbation space, --adv_space; the raw word embeddings by default), starts at N(0, σ²I) on real
tokens, takes K steps η·g/‖g‖ (ℓ∞: g/‖g‖∞ per token), each projected onto the ε-ball; ℓ_s is
the task's `adv_loss` (symmetric KL, each term's target detached, as in ALUM's criterion).
Paper settings (flag `--alum`): α = 10 for pretraining (α = 1 for fine-tuning: add --adv_weight 1),
ε = 1e-5, η = 1e-3, σ = 1e-5, K = 1, ℓ∞.

What the reference code does (mt-dnn's v0.2 branch, alum/adv_masked_lm.py, AdvMaskedLmLoss, a
fairseq criterion): it perturbs `inner_states[prob_n_layer]` (default 0: the embedding layer's
output, after its LayerNorm and dropout) and feeds the perturbed tensor straight into the
transformer layers (RobertaEncoder.embed_forward in alum/adv_model/model.py), never re-embedded.
The noise starts at N(0, 1)·noise_var (1e-5), moves to v + η·g with g the gradient of the
one-sided KL(f(x) ‖ f(x + v)), and is then normalized to unit ℓ∞ per token, (v + η·g) / (‖v +
η·g‖∞ + noise_gamma): the noise is normalized, not projected onto an ε-ball. The term is
(KL(f(x).detach() ‖ f(x + v)) + KL(f(x + v).detach() ‖ f(x))) · adv_alpha, summed over masked
tokens. The whole term runs only with `--adv_opt` > 0, defined there with default 0; the launch
script alum/alum_train.sh passes --adv_alpha 10 and never sets it. Its adversarial forward calls
embed_forward with one argument more than that method takes. The flags here set a radius, a step
and a noise scale in the chosen space; none of their settings is the reference's computation.
"""

from __future__ import annotations

from mtadv.adversarial.base import ADV_METHODS
from mtadv.adversarial.smart import SmartRegularizer


@ADV_METHODS.register("alum")
class AlumRegularizer(SmartRegularizer):
    """α · ℓ_s(f(x + δ), f(x)) at the masked positions; ℓ_s is the task's `adv_loss` (sym_kl for mlm)."""

    name = "alum"
