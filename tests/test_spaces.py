"""Perturbation spaces (mtadv.adversarial.spaces) on every encoder family the README promises, and
every input-space method's invariants in every space: the ball, a zero perturbation, gradients
reaching the encoder, dropout-mask replay.
"""

from __future__ import annotations

import pytest
import torch
from conftest import GLUE_YAML, build_tiny_encoder
from transformers import AutoModel, AutoTokenizer

from mtadv.adversarial import ADV_METHODS, StepContext
from mtadv.adversarial.perturb import RngState, norm_of
from mtadv.adversarial.spaces import SPACES, embedding_layer, get_space, token_rms
from mtadv.config import AdvConfig
from mtadv.losses import TASK_LOSSES
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs

FAMILIES = ["bert", "roberta", "deberta-v2", "electra"]
SPACE_NAMES = SPACES.names()
PAIRS = [("a man is playing a large flute .", "a man is playing a flute ."), ("no weapons were found .", "yes")]
LABELS = {"rte": torch.tensor([0, 1]), "stsb": torch.tensor([3.8, 0.4])}


@pytest.fixture(scope="module")
def tasks():
    return {k: v for k, v in load_task_defs(GLUE_YAML).items() if k in ("rte", "stsb")}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param)


def build(encoder_dir, tasks, seed: int = 0):
    torch.manual_seed(seed)
    model = MultiTaskModel(AutoModel.from_pretrained(encoder_dir), tasks).train()
    tok = AutoTokenizer.from_pretrained(encoder_dir)
    a, b = zip(*PAIRS)
    return model, dict(tok(list(a), list(b), padding=True, return_tensors="pt"))


def make_ctx(model, tasks, task: str, batch: dict, space: str) -> StepContext:
    """What the trainer's micro-step builds: the clean forward in `space`."""
    batch = {**batch, "labels": LABELS[task]}
    rng = RngState.capture(torch.device("cpu"))
    embeds, logits, scale = get_space(space).clean_forward(model, model, batch, task)
    loss = TASK_LOSSES.get(tasks[task].loss)(logits, batch["labels"])
    return StepContext(model, tasks[task], batch, embeds, logits, loss, rng, space=space, space_scale=scale)


# ------------------------------------------------------------------ the spaces on every family


@pytest.mark.parametrize("space", SPACE_NAMES)
def test_zero_perturbation_replays_the_clean_forward(family, tasks, space):
    model, batch = build(family, tasks)
    ctx = make_ctx(model, tasks, "rte", batch, space)
    again = ctx.forward(ctx.embeds, replay_dropout=True)  # same masks, δ = 0
    assert torch.allclose(again, ctx.logits, atol=1e-6)
    with torch.random.fork_rng():
        torch.manual_seed(123)
        other = ctx.forward(ctx.embeds, replay_dropout=False)  # other masks
    assert not torch.allclose(other, ctx.logits, atol=1e-6)


def test_embedding_space_is_the_normalized_embedding_output(family, tasks):
    """embeds · RMS is exactly what the embedding layer returned; each real token has unit RMS."""
    model, batch = build(family, tasks)
    model.eval()  # no dropout, so the embedding layer's output is deterministic
    seen = {}
    handle = embedding_layer(model.encoder).register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    ctx = make_ctx(model, tasks, "rte", batch, "embedding")
    handle.remove()
    assert torch.allclose(ctx.embeds * ctx.space_scale, seen["out"], atol=1e-6)
    real = batch["attention_mask"].bool()
    rms = ctx.embeds.pow(2).mean(-1)[real]
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)


def test_embedding_space_is_not_re_embedded(family, tasks):
    """A perturbation δ reaches the first transformer layer as δ · RMS, once: the encoder's output
    equals a forward whose embedding layer returns (embeds + δ) · RMS, with no second LayerNorm."""
    model, batch = build(family, tasks)
    model.eval()
    ctx = make_ctx(model, tasks, "rte", batch, "embedding")
    delta = 0.05 * torch.randn_like(ctx.embeds)
    got = ctx.forward(ctx.embeds + delta, replay_dropout=False)
    target = (ctx.embeds + delta) * ctx.space_scale
    layer = embedding_layer(model.encoder)
    handle = layer.register_forward_hook(lambda m, a, out: target)
    want = model(batch, task="rte")
    handle.remove()
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, ctx.logits, atol=1e-4)  # and δ does change the output


def test_gradient_reaches_the_embedding_layer_in_embedding_space(family, tasks):
    model, batch = build(family, tasks)
    ctx = make_ctx(model, tasks, "rte", batch, "embedding")
    ctx.forward(ctx.embeds + 0.01).sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "embeddings" in n and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_token_rms_ignores_the_graph():
    x = torch.randn(2, 3, 4, requires_grad=True)
    assert not token_rms(x).requires_grad
    assert torch.allclose(token_rms(x).squeeze(-1), x.detach().pow(2).mean(-1).sqrt())


# ------------------------------------------------------------------ every input-space method in every space


def input_space_methods() -> list[str]:
    """The registered methods that perturb an input (declared by `space` on an instance)."""
    return [n for n in ADV_METHODS.names() if ADV_METHODS.get(n)(AdvConfig(adv=n)).space is not None]


def adv_config(name: str, space: str, **kw) -> AdvConfig:
    """Radii large enough to move a tiny model (relative units in the embedding space)."""
    base = dict(adv=name, adv_eps=0.05, adv_lr=0.02, adv_steps=2, adv_init_mag=0.01, adv_norm="l2")
    base.update(adv_norm_level="example", freelb_max_norm=0.05, vat_xi=1e-3, adv_space=space)
    return AdvConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("bert-spaces"))


@pytest.mark.parametrize("task", ["rte", "stsb"])
@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("name", input_space_methods())
def test_method_in_space_finite_with_encoder_gradients(name, space, task, bert, tasks):
    model, batch = build(bert, tasks)
    reg = ADV_METHODS.get(name)(adv_config(name, space))
    loss, _ = reg.loss(make_ctx(model, tasks, task, batch, space))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if ".layer.0." in n and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("norm,level", [("l2", "example"), ("linf", "token"), ("l2", "token")])
@pytest.mark.parametrize("name", input_space_methods())
def test_method_in_space_stays_in_the_ball(name, space, norm, level, bert, tasks):
    model, batch = build(bert, tasks)
    cfg = adv_config(name, space, adv_norm=norm, adv_norm_level=level, adv_lr=1.0)  # big steps hit the ball
    reg = ADV_METHODS.get(name)(cfg)
    radius = getattr(reg, "perturbation_radius", cfg.adv_eps)
    reg.loss(make_ctx(model, tasks, "rte", batch, space))
    delta = getattr(reg, "last_delta", None)
    if delta is None or radius is None:
        pytest.skip(f"{name} keeps no perturbation with a radius")
    assert norm_of(delta, norm, level).max() <= radius * (1 + 1e-5)


@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("name", input_space_methods())
def test_zero_radius_in_space_gives_the_clean_term(name, space, bert, tasks):
    """ε = 0 (and no initial noise): the perturbed forward is the clean one, so a divergence term is
    exactly 0 and a perturbed-loss term equals the clean loss."""
    model, batch = build(bert, tasks)
    cfg = adv_config(name, space, adv_eps=0.0, adv_init_mag=0.0, freelb_max_norm=0.0, adv_lr=0.0, vat_xi=1e-3)
    reg = ADV_METHODS.get(name)(cfg)
    ctx = make_ctx(model, tasks, "rte", batch, space)
    loss, logs = reg.loss(ctx)
    expected = {"zero": 0.0, "clean_loss": ctx.task_loss.item()}.get(ADV_METHODS.get(name).at_zero_perturbation)
    if expected is None:
        pytest.skip(f"{name} has no perturbation to zero")
    assert logs["adv_loss"] == pytest.approx(expected, rel=1e-5, abs=1e-7)


def weight_methods() -> list[str]:
    return [n for n in ADV_METHODS.names() if ADV_METHODS.get(n).perturbs == "weights"]


@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("name", weight_methods())
def test_weight_method_at_a_zero_step_gives_the_clean_loss_in_either_space(name, space, bert, tasks):
    """A weight perturbation (AWP) runs beside a task's input-space method, so its forward meets either
    space's clean tensor: it must recompute the input, not feed that tensor back as word embeddings."""
    model, batch = build(bert, tasks)
    reg = ADV_METHODS.get(name)(adv_config(name, space, adv_lr=0.0))
    ctx = make_ctx(model, tasks, "rte", batch, space)
    _, logs = reg.loss(ctx)
    assert logs["adv_loss"] == pytest.approx(ctx.task_loss.item(), rel=1e-5, abs=1e-7)


def shared_methods() -> list[str]:
    """The registered methods that a task adds next to its own (`shared_by_tasks`: the EMA teacher), so they
    meet the clean forward of that method's space."""
    return [n for n in ADV_METHODS.names() if ADV_METHODS.get(n).shared_by_tasks]


@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("name", shared_methods())
def test_shared_method_takes_the_space_of_the_tasks_method(name, space, bert, tasks):
    """Its term is finite in either space, and at a zero perturbation (the teacher: no lag yet) it is 0 or the
    clean loss, up to the embedding space's rounding (the clean path runs through x / RMS · RMS)."""
    model, batch = build(bert, tasks)
    cls = ADV_METHODS.get(name)
    reg = cls(adv_config(name, space, adv_eps=0.0, adv_init_mag=0.0, adv_lr=0.0))
    ctx = make_ctx(model, tasks, "rte", batch, space)
    loss, _ = reg.loss(ctx)
    assert torch.isfinite(loss)
    expected = {"zero": 0.0, "clean_loss": ctx.task_loss.item()}.get(cls.at_zero_perturbation)
    if expected is not None:
        assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_a_task_picks_its_space_in_its_task_definition(bert, tasks):
    """adv_space is an AdvConfig field, so a task's `adv:` mapping sets it for that task alone."""
    from mtadv.config import adv_config_for_task

    base = AdvConfig(adv="smart")
    got = adv_config_for_task(base, {"adv_space": "embedding"}, "rte", "glue.yml")
    assert got.adv_space == "embedding" and base.adv_space == "word"
