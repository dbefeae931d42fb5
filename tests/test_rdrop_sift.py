"""R-Drop and SiFT: their objectives against hand-computed formulas, on the tiny random encoder.

Contexts are built as the trainer's _micro_step builds them, through the perturbation space:
train mode (dropout live), RNG captured before the clean forward. rte is classification (sym_kl),
stsb regression (mse).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import GLUE_YAML, PAIR_LABELS, SENTENCE_PAIRS
from transformers import AutoModel, AutoTokenizer

from mtadv.adversarial import ADV_METHODS, StepContext
from mtadv.adversarial.perturb import RngState, norm_of
from mtadv.adversarial.rdrop import RDrop
from mtadv.adversarial.sift import SIFT_GUARD, SiFT, sift_direction
from mtadv.adversarial.spaces import get_space
from mtadv.config import AdvConfig, method_defaults
from mtadv.losses import TASK_LOSSES
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs

PAIRS = SENTENCE_PAIRS
LABELS = {task: torch.tensor(values) for task, values in PAIR_LABELS.items()}
TASKS = ["rte", "stsb"]
SPACES = ["word", "embedding"]


@pytest.fixture(scope="module")
def tasks():
    return {k: v for k, v in load_task_defs(GLUE_YAML).items() if k in TASKS}


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


def make_model(tiny_encoder, tasks, dropout: bool = True, seed: int = 0) -> MultiTaskModel:
    """Train mode; dropout=False builds every dropout (encoder, attention, head) at p = 0."""
    torch.manual_seed(seed)
    off = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    encoder = AutoModel.from_pretrained(tiny_encoder, **off)
    return MultiTaskModel(encoder, tasks, head_dropout=0.1 if dropout else 0.0).train()


def make_batch(tokenizer, task: str) -> dict[str, torch.Tensor]:
    a, b = zip(*PAIRS)
    batch = dict(tokenizer(list(a), list(b), padding=True, return_tensors="pt"))
    batch["labels"] = LABELS[task]
    return batch


def make_ctx(model, tasks, task: str, batch, space: str = "word") -> StepContext:
    """What _micro_step builds: RNG state, then the clean forward through the perturbation space."""
    rng = RngState.capture(torch.device("cpu"))
    embeds, logits, scale = get_space(space).clean_forward(model, model, batch, task)
    task_loss = TASK_LOSSES.get(tasks[task].loss)(logits, batch["labels"])
    ctx = StepContext(model, tasks[task], batch, embeds, logits, task_loss, rng)
    ctx.space, ctx.space_scale = space, scale
    return ctx


def layer0_grads(model) -> list[torch.Tensor]:
    return [p.grad for n, p in model.named_parameters() if ".layer.0." in n and p.grad is not None]


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def rdrop(**kw) -> RDrop:
    return RDrop(AdvConfig(adv="rdrop", **{**method_defaults("rdrop"), **kw}))


def sift(**kw) -> SiFT:
    return SiFT(AdvConfig(adv="sift", **{**method_defaults("sift"), **kw}))


# ------------------------------------------------------------------ R-Drop


def test_rdrop_is_registered_and_perturbs_no_input():
    assert ADV_METHODS.get("rdrop") is RDrop
    reg = rdrop()
    assert reg.space is None and not reg.replaces_task_loss and reg.cfg.adv_weight == 1.0


@pytest.mark.parametrize("mode", ["eval", "dropout_zero"])
@pytest.mark.parametrize("task", TASKS)
def test_rdrop_term_exactly_zero_without_dropout(mode, task, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks, dropout=mode == "eval")
    if mode == "eval":
        model.eval()
    loss, logs = rdrop().loss(make_ctx(model, tasks, task, make_batch(tokenizer, task)))
    assert logs["adv_loss"] == 0.0 and loss.item() == 0.0


@pytest.mark.parametrize("task", TASKS)
def test_rdrop_term_positive_with_dropout_even_when_replay_is_asked(task, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = rdrop(adv_replay_dropout=True)  # R-Drop never replays: two sub-models by definition
    _, logs = reg.loss(make_ctx(model, tasks, task, make_batch(tokenizer, task)))
    assert logs["adv_loss"] > 0


@pytest.mark.parametrize("task", TASKS)
def test_rdrop_objective_is_half_the_papers_formula_on_the_same_two_forwards(task, tiny_encoder, tasks, tokenizer):
    """ctx.task_loss + term == ½ (L1 + L2 + α·L_R), values and gradients, L_R by hand:
    ½(KL(P1‖P2) + KL(P2‖P1)) with neither side detached (official code), or MSE(s1, s2)."""
    alpha = 0.7
    model = make_model(tiny_encoder, tasks)
    batch = make_batch(tokenizer, task)
    ctx = make_ctx(model, tasks, task, batch)
    second_rng = RngState.capture(torch.device("cpu"))  # the masks the regularizer's forward will draw
    term, logs = rdrop(adv_weight=alpha).loss(ctx)
    (ctx.task_loss + term).backward(retain_graph=True)
    got = grads(model)
    model.zero_grad(set_to_none=True)

    with second_rng.replay():
        second = model(batch, task=task)
    first = ctx.logits
    loss_fn = TASK_LOSSES.get(tasks[task].loss)
    if task == "rte":
        p1, p2 = F.log_softmax(first, -1), F.log_softmax(second, -1)
        kl_12 = F.kl_div(p2, p1.exp(), reduction="batchmean")  # KL(P1‖P2), target attached
        kl_21 = F.kl_div(p1, p2.exp(), reduction="batchmean")
        l_r = 0.5 * (kl_12 + kl_21)
    else:
        l_r = ((first - second) ** 2).mean()
    want = 0.5 * (loss_fn(first, batch["labels"]) + loss_fn(second, batch["labels"]) + alpha * l_r)
    want.backward()

    assert math.isclose(logs["adv_loss"], l_r.item(), rel_tol=1e-5)
    assert torch.allclose(ctx.task_loss + term, want, rtol=1e-6)
    assert (got - grads(model)).norm() <= 1e-5 * grads(model).norm()


def test_rdrop_gradients_reach_the_encoder_through_both_forwards(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    term, _ = rdrop().loss(ctx)
    term.backward()  # the term alone: ½(L2 − L1) + (α/2)·L_R
    assert layer0_grads(model) and any(g.abs().sum() > 0 for g in layer0_grads(model))


# ------------------------------------------------------------------ SiFT


def test_sift_defaults_are_the_official_codes():
    reg = sift()
    c = reg.cfg
    assert (c.adv_space, c.adv_init_mag, c.adv_lr, c.adv_steps) == ("embedding", 1e-2, 1e-4, 1)
    assert (c.adv_norm, c.adv_norm_level, c.adv_eps, c.adv_weight) == ("linf", "token", math.inf, 5.0)
    assert c.adv_replay_dropout is True and reg.space == "embedding" and not reg.replaces_task_loss


@pytest.mark.parametrize("space", SPACES)
def test_sift_perturbation_has_the_documented_size(space, tiny_encoder, tasks, tokenizer):
    """No projection at the defaults: ‖δ‖∞ ≤ 2σ + K·η per token; padding untouched; δ moved from δ_0."""
    model = make_model(tiny_encoder, tasks)
    sigma, eta, steps = 1e-2, 3e-3, 2  # η large enough to see the steps next to δ_0
    reg = sift(adv_space=space, adv_lr=eta, adv_steps=steps)
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"), space)
    torch.manual_seed(7)
    reg.loss(ctx)
    delta = reg.last_delta
    assert delta.shape == ctx.embeds.shape
    assert delta.abs().max() <= 2 * sigma + steps * eta + 1e-7
    assert torch.all(delta * (1 - ctx.mask) == 0)
    first = sift(adv_space=space, adv_steps=0)  # δ_0 alone, from the same seed
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"), space)
    torch.manual_seed(7)
    first.loss(ctx)
    assert (first.last_delta.abs() == 2 * sigma).any()  # δ_0: N(0, σ²) clamped at ±2σ
    moved = (delta - first.last_delta).abs()
    assert 0 < moved.max() <= steps * eta * (1 + 1e-5)  # each step moves a coordinate by at most η


@pytest.mark.parametrize("norm,level", [("linf", "token"), ("l2", "example")])
def test_sift_stays_inside_a_finite_adv_eps(norm, level, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = sift(adv_eps=0.01, adv_init_mag=0.05, adv_lr=0.05, adv_steps=2, adv_norm=norm, adv_norm_level=level)
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"), "embedding")
    reg.loss(ctx)
    assert 0 < norm_of(reg.last_delta, norm, level).max() <= 0.01 * (1 + 1e-5)


def test_sift_direction_is_guarded_like_the_code():
    g = torch.zeros(1, 2, 4)
    g[0, 0] = torch.tensor([4.0, -2.0, 0.0, 1.0])  # a large gradient: the step's ℓ∞ is ≈ 1
    g[0, 1] = torch.tensor([1e-6, 0.0, -5e-7, 0.0])  # a tiny one: damped by the 1e-6 guard
    d = sift_direction(g, "linf", "token")
    want = g / (1e-6 + g.abs().amax(-1, keepdim=True))  # sift.py: grad / (1e-6 + grad.abs().max(-1))
    assert torch.equal(d, want) and SIFT_GUARD == 1e-6
    assert math.isclose(d[0, 0].abs().max().item(), 1.0, rel_tol=1e-6)
    assert math.isclose(d[0, 1].abs().max().item(), 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("task", TASKS)
def test_sift_zero_sigma_zero_steps_is_exactly_zero_with_replay(task, space, tiny_encoder, tasks, tokenizer):
    """δ = 0 and replayed masks: the perturbed forward is the clean one, bit for bit."""
    model = make_model(tiny_encoder, tasks)
    reg = sift(adv_space=space, adv_init_mag=0.0, adv_steps=0)  # masks replayed: the default
    ctx = make_ctx(model, tasks, task, make_batch(tokenizer, task), space)
    loss, logs = reg.loss(ctx)
    assert torch.count_nonzero(reg.last_delta) == 0
    assert loss.item() == 0.0 and logs["adv_loss"] == 0.0
    assert torch.equal(ctx.forward(ctx.embeds + reg.last_delta, replay_dropout=True), ctx.logits)
    assert not torch.equal(ctx.forward(ctx.embeds, replay_dropout=False), ctx.logits)  # dropout is live


def test_sift_null_control_is_zero_and_draws_the_same_numbers_as_sift(tiny_encoder, tasks, tokenizer):
    """glue_full's `sift_null` (σ = η = 0): a zero term, and the global RNG left where sift's leaves it,
    so its run sees sift's dropout masks with plain's gradient."""
    rng_after, terms = [], []
    for kw in ({}, {"adv_init_mag": 0.0, "adv_lr": 0.0}):
        model = make_model(tiny_encoder, tasks)
        torch.manual_seed(1)
        ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"), "embedding")
        loss, _ = sift(**kw).loss(ctx)
        rng_after.append(torch.get_rng_state())
        terms.append(loss.item())
    assert terms[0] > 0.0 and terms[1] == 0.0
    assert torch.equal(rng_after[0], rng_after[1])


@pytest.mark.parametrize("space", SPACES)
def test_sift_without_replay_holds_the_dropout_noise_as_the_code_does(space, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = sift(adv_space=space, adv_init_mag=0.0, adv_steps=0, adv_replay_dropout=False)
    loss, _ = reg.loss(make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"), space))
    assert torch.count_nonzero(reg.last_delta) == 0 and loss.item() > 0  # δ = 0, fresh masks: not zero


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("task", TASKS)
def test_sift_term_positive_and_gradients_reach_the_encoder(task, space, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = sift(adv_space=space)  # the defaults (replayed masks: the term is δ's effect alone)
    ctx = make_ctx(model, tasks, task, make_batch(tokenizer, task), space)
    loss, logs = reg.loss(ctx)
    assert all(p.grad is None for p in model.parameters())  # the ascent took gradients w.r.t. δ only
    assert torch.isfinite(loss) and logs["adv_loss"] > 0 and logs["adv_ascent_skipped"] == 0.0
    assert 0 < logs["adv_delta_norm"] <= 2e-2 + 1e-4 + 1e-7
    loss.backward()
    assert layer0_grads(model) and any(g.abs().sum() > 0 for g in layer0_grads(model))


def test_sift_ascent_increases_the_divergence(tiny_encoder, tasks, tokenizer):
    """The step goes uphill: D at δ_K exceeds D at δ_0 (same seed, same replayed masks)."""
    model = make_model(tiny_encoder, tasks)
    batch = make_batch(tokenizer, "rte")
    terms = []
    for steps in (0, 3):
        torch.manual_seed(3)
        reg = sift(adv_lr=0.05, adv_steps=steps)
        terms.append(reg.loss(make_ctx(model, tasks, "rte", batch, "embedding"))[1]["adv_loss"])
    assert terms[1] > terms[0]


def test_sift_non_finite_ascent_gradient_keeps_delta(tiny_encoder, tasks, tokenizer, monkeypatch):
    import mtadv.adversarial.sift as sift_module

    monkeypatch.setattr(sift_module, "input_grad", lambda *a, **kw: None)  # an fp16 overflow, say
    model = make_model(tiny_encoder, tasks)
    torch.manual_seed(5)
    reg = sift()
    loss, logs = reg.loss(make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"), "embedding"))
    assert logs["adv_ascent_skipped"] == 1.0 and torch.isfinite(loss)
    assert 0 < reg.last_delta.abs().max() <= 2e-2  # δ_0: clamped noise, no step taken


def test_sift_in_a_task_definition_gets_its_own_defaults(tasks):
    from mtadv.adversarial import build_regularizers
    from mtadv.config import RunConfig

    overridden = {**tasks, "rte": dataclasses.replace(tasks["rte"], adv={"method": "sift", "adv_weight": 3.0})}
    regs = build_regularizers(RunConfig(adv=AdvConfig(adv="rdrop")), overridden)
    assert type(regs["stsb"][0]) is RDrop and type(regs["rte"][0]) is SiFT
    assert regs["rte"][0].cfg.adv_weight == 3.0 and regs["rte"][0].cfg.adv_space == "embedding"
