"""R-Drop: consistency between two dropout sub-models of the same input.

Liang, Wu, Li, Wang, Meng, Qin, Chen, Zhang & Liu, 2021, "R-Drop: Regularized Dropout for Neural
Networks" (NeurIPS), Eq. (1)-(3): run each example twice with different dropout masks, giving
P1 = P^w1(y|x) and P2 = P^w2(y|x), and train on

    L = −log P1(y|x) − log P2(y|x) + α · L_KL,   L_KL = ½ (KL(P1‖P2) + KL(P2‖P1))

with gradients through both distributions (the official code detaches neither side). Here the
step trains on L / 2 = ½(L1 + L2) + (α/2)·L_R, averaged over examples:
- halved, so an R-Drop task weighs in a multi-task step (and against --max_grad_norm) like a plain
  one; the ratio of the two terms, which is what α means, is the paper's;
- L1 is the trainer's clean forward (dropout on) and L2 one more forward with fresh masks: this term
  is ½(L2 − L1) + (α/2)·L_R, added to L1;
- L_R, the consistency term, is the average of the two directions of the task's divergence
  (`adv_loss`): ½(KL(P1‖P2) + KL(P2‖P1)) for sym_kl / kl tasks, the paper's L_KL; (s1 − s2)²,
  MSE between the two scores, for mse (regression) tasks, as the official GLUE code does for STS-B
  (the paper's appendix A.4, per the authors in dropreg/R-Drop#20). For unit-variance Gaussians N(s, 1) it is twice their symmetric KL,
  which is the same factor as between MSE and their NLL, so α weighs it against the task loss as it
  weighs L_KL against the cross-entropy.

Paper's GLUE setting: α tuned in {0.1, 0.5, 1.0} per task; the fairseq criterion's default
`--reg-alpha` is 1.0. Default here: α = 1.0 (--adv_weight). No perturbation, so the adv_eps/lr/
steps/norm settings do not apply; the second forward never replays the clean masks (that would make
L_R zero), whatever --adv_replay_dropout says. Without dropout (eval mode, dropout 0) the two
forwards agree exactly and the term is exactly zero. Cost: one extra forward, no ascent.
Sources, conventions and the official code's variants: docs/methods/rdrop.md.
"""

from __future__ import annotations

from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.losses import DIVERGENCES
from mtadv.taskdef import TaskDef

# sym_kl is already the sum of both directions, each with its target detached (SMART's convention);
# R-Drop averages the two directions of `kl`, whose arguments are both differentiated (its code's).
ONE_DIRECTION = {"sym_kl": "kl"}


def consistency(task: TaskDef, first: Tensor, second: Tensor) -> Tensor:
    """L_R = ½ (D(first, second) + D(second, first)), D the task's divergence in one direction.

    first, second: (B, C) logits or (B,) scores of the two sub-models, both attached.
    """
    divergence = DIVERGENCES.get(ONE_DIRECTION.get(task.adv_loss, task.adv_loss))
    return 0.5 * (divergence(first, second) + divergence(second, first))


@ADV_METHODS.register("rdrop")
class RDrop(Regularizer):
    """½(L2 − L1) + (α/2)·L_R, so that the step trains on ½ · (R-Drop's objective)."""

    name = "rdrop"
    strength = ("adv_weight",)
    at_zero_perturbation = None  # its term is dropout's, not a perturbation's
    # α = 1.0: the top of the paper's GLUE range {0.1, 0.5, 1.0} and the fairseq criterion's default.
    defaults = {"adv_weight": 1.0}
    space = None  # perturbs no input: the clean forward takes any task's space
    perturbs = "dropout"

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        # The second sub-model: a complete forward of the same batch with fresh dropout masks, so every
        # dropout (embeddings included) is resampled whatever the task's perturbation space.
        second = ctx.model(ctx.batch, task=ctx.task.name)  # (B, C) or (B,)
        second_loss = ctx.loss_fn(second, ctx.batch["labels"])
        l_r = consistency(ctx.task, ctx.logits, second)
        extra = 0.5 * (second_loss - ctx.task_loss) + 0.5 * self.cfg.adv_weight * l_r
        return extra, {"adv_loss": l_r.item(), "rdrop_second_loss": second_loss.item()}
