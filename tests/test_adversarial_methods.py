"""Invariants of every registered adversarial method (parametrized over ADV_METHODS), plus the
method-specific checks: FreeLB's averaged gradient, PGD's clean inner steps, FreeAT's replays and
carried perturbation, VAT without labels, AWP's weight selection.

Everything runs on the tiny random encoder from conftest (train mode, so dropout is live and
dropout-mask replay matters).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import GLUE_YAML, PAIR_LABELS, REPO, SENTENCE_PAIRS
from transformers import AutoModel, AutoTokenizer

from mtadv.adversarial import ADV_METHODS, StepContext, build_regularizers
from mtadv.adversarial.awp import select_weights
from mtadv.adversarial.embedding_attack import task_loss_at
from mtadv.adversarial.perturb import RngState, norm_of
from mtadv.cli import run_train
from mtadv.config import AdvConfig, RunConfig, TrainConfig
from mtadv.errors import ConfigError
from mtadv.losses import TASK_LOSSES
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs

METHODS = ADV_METHODS.names()
# by declared trait: no input space (AWP's weights, R-Drop's dropout) or no perturbation to bound (a penalty)
NO_INPUT_PERTURBATION = {
    n
    for n in METHODS
    if ADV_METHODS.get(n).space is None or getattr(ADV_METHODS.get(n), "perturbation_radius", 0) is None
}
# by declared trait: the term is a loss at x + δ (the rest add a divergence or a penalty)
LOSS_AT_PERTURBED_INPUT = {n for n in METHODS if ADV_METHODS.get(n).at_zero_perturbation == "clean_loss"}
NOTHING_TO_ZERO = {n for n in METHODS if ADV_METHODS.get(n).at_zero_perturbation is None}
# by declared trait: the term compares the student with its own past (the EMA teacher), so its perturbation is a
# lag that only training after the term began creates; at creation (θ̃ = θ) it is the zero perturbation
PERTURBED_IN_TIME = {n for n in METHODS if ADV_METHODS.get(n).perturbs == "weights_in_time"}

PAIRS = SENTENCE_PAIRS
LABELS = {task: torch.tensor(values) for task, values in PAIR_LABELS.items()}


def adv_config(name: str, **kw) -> AdvConfig:
    """Settings large enough to move a tiny model, with every radius finite."""
    base = dict(
        adv=name,
        adv_eps=0.05,
        adv_lr=0.02,
        adv_steps=2,
        adv_init_mag=0.01,
        adv_norm="l2",
        adv_norm_level="example",
        freelb_max_norm=0.05,
        vat_xi=1e-3,
    )
    return AdvConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tasks():
    return {k: v for k, v in load_task_defs(GLUE_YAML).items() if k in ("rte", "stsb")}


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


def make_model(tiny_encoder, tasks, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    model = MultiTaskModel(AutoModel.from_pretrained(tiny_encoder), tasks)
    return model.train()


def make_batch(
    tokenizer, task: str, rows: slice = slice(None), labels: bool = True, pairs: list = PAIRS
) -> dict[str, torch.Tensor]:
    a, b = zip(*pairs[rows])
    batch = dict(tokenizer(list(a), list(b), padding=True, return_tensors="pt"))
    if labels:
        batch["labels"] = LABELS[task][rows]
    return batch


def make_ctx(model, tasks, task: str, batch, step: int = 0, with_labels: bool = True) -> StepContext:
    """The context the trainer builds in micro_step: clean forward on the word embeddings."""
    rng = RngState.capture(torch.device("cpu"))
    embeds = model.embed(batch)  # (B, T, H)
    logits = model(batch, task=task, inputs_embeds=embeds)
    if with_labels:
        task_loss = TASK_LOSSES.get(tasks[task].loss)(logits, batch["labels"])
    else:
        task_loss = torch.zeros(())
    return StepContext(model, tasks[task], batch, embeds, logits, task_loss, rng, step, 0)


def close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> bool:
    """Same gradients up to float summation order, compared as one vector over all parameters
    (some, like attention key biases, are zero in exact arithmetic and pure rounding noise here)."""
    assert got.keys() == want.keys()
    a, b = torch.cat([got[k].flatten() for k in got]), torch.cat([want[k].flatten() for k in got])
    return bool((a - b).norm() <= 1e-5 * b.norm())


def encoder_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def perturbed(name: str, reg, model, tasks, tokenizer, task: str) -> StepContext:
    """A step context at which the method's perturbation is not zero. A method perturbed in time first trains
    the student one SGD step after its term began, so that θ̃ lags θ (as from the trainer's second step on)."""
    if name in PERTURBED_IN_TIME:
        ctx = make_ctx(model, tasks, task, make_batch(tokenizer, task))
        loss, _ = reg.loss(ctx)  # the term begins: θ̃ = θ
        (ctx.task_loss + loss).backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(0.5 * p.grad)
        model.zero_grad(set_to_none=True)
        reg.on_optimizer_step(model)  # θ̃ moves part of the way after θ
    return make_ctx(model, tasks, task, make_batch(tokenizer, task))


# ------------------------------------------------------------------ every method


@pytest.mark.parametrize("task", ["rte", "stsb"])
@pytest.mark.parametrize("name", METHODS)
def test_loss_finite_and_gradients_reach_encoder(name, task, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get(name)(adv_config(name))
    loss, logs = reg.loss(perturbed(name, reg, model, tasks, tokenizer, task))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(isinstance(v, float) for v in logs.values())
    loss.backward()  # the regularizer's term alone
    layer_grads = [p.grad for n, p in model.named_parameters() if ".layer.0." in n and p.grad is not None]
    assert layer_grads and any(g.abs().sum() > 0 for g in layer_grads)


@pytest.mark.parametrize("name", METHODS)
def test_inner_steps_leave_no_weight_gradient(name, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get(name)(adv_config(name))
    reg.loss(make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte")))
    assert all(p.grad is None for p in model.parameters())  # the trainer's backward is the only one


@pytest.mark.parametrize("name", METHODS)
def test_parameters_bit_exact_after_forward_backward(name, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reg = ADV_METHODS.get(name)(adv_config(name))
    for task in ("rte", "stsb"):
        ctx = make_ctx(model, tasks, task, make_batch(tokenizer, task))
        loss, _ = reg.loss(ctx)
        (ctx.task_loss + loss).backward()
        reg.on_optimizer_step(model)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed


@pytest.mark.parametrize("norm,level", [("l2", "example"), ("linf", "token")])
@pytest.mark.parametrize("name", sorted(set(METHODS) - NO_INPUT_PERTURBATION))
def test_perturbation_inside_radius_and_off_padding(name, norm, level, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    cfg = adv_config(name, adv_norm=norm, adv_norm_level=level)
    reg = ADV_METHODS.get(name)(cfg)
    # two steps on batches of different shapes: FreeAT's δ carries over (its first δ is 0)
    for rows in (slice(0, 4), slice(1, 3)):
        ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte", rows))
        loss, _ = reg.loss(ctx)
        (ctx.task_loss + loss).backward()
        reg.on_optimizer_step(model)
    delta = reg.last_delta  # every input-space method exposes its last δ (B, T, H)
    radius = getattr(reg, "perturbation_radius", cfg.adv_eps)
    assert delta.shape == ctx.embeds.shape
    assert norm_of(delta, norm, level).max() <= radius * (1 + 1e-5)
    assert norm_of(delta, norm, level).max() > 0  # it did perturb
    assert torch.all(delta * (1 - ctx.mask) == 0)  # padding is never perturbed
    # each example's embeddings, not the embedding matrix: the same token ([CLS]) gets different δ
    assert ctx.batch["input_ids"][0, 0] == ctx.batch["input_ids"][1, 0]
    assert not torch.equal(delta[0, 0], delta[1, 0])


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_for_a_seed(name, tiny_encoder, tasks, tokenizer):
    def run():
        model = make_model(tiny_encoder, tasks)
        torch.manual_seed(123)
        reg = ADV_METHODS.get(name)(adv_config(name))
        ctx = perturbed(name, reg, model, tasks, tokenizer, "stsb")
        loss, _ = reg.loss(ctx)
        (ctx.task_loss + loss).backward()
        return loss.detach(), encoder_grads(model)

    (loss1, grads1), (loss2, grads2) = run(), run()
    assert torch.equal(loss1, loss2)
    assert grads1.keys() == grads2.keys() and all(torch.equal(grads1[k], grads2[k]) for k in grads1)


@pytest.mark.parametrize("name", sorted(set(METHODS) - NOTHING_TO_ZERO))
def test_zero_perturbation(name, tiny_encoder, tasks, tokenizer):
    """ε = 0, init 0, step 0: a divergence term vanishes; a loss at x + 0 is the clean loss. A method perturbed
    in time has no lag yet: the term's first step, θ̃ = θ (dropout replayed), gives exactly 0 too."""
    model = make_model(tiny_encoder, tasks)
    cfg = adv_config(name, adv_eps=0.0, adv_init_mag=0.0, adv_lr=0.0, freelb_max_norm=0.0)
    reg = ADV_METHODS.get(name)(cfg)
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    loss, _ = reg.loss(ctx)
    clean = ctx.task_loss.detach()
    if name in LOSS_AT_PERTURBED_INPUT:
        assert torch.isclose(loss, clean, rtol=1e-6, atol=0)
    else:  # divergence terms and penalties
        assert loss.item() == 0


@pytest.mark.parametrize("name", METHODS)
def test_declared_traits_agree(name):
    """What a method perturbs and its `space` tell the same story: an input space exactly for input methods."""
    cls = ADV_METHODS.get(name)
    assert cls.perturbs in {"input", "weights", "dropout", "weights_in_time"}
    assert (cls(adv_config(name)).space is None) == (cls.perturbs != "input")
    assert cls.at_zero_perturbation in {"zero", "clean_loss", None}


@pytest.mark.parametrize("name", METHODS)
def test_adv_name_builds_the_method_for_every_task(name, tasks):
    """--adv NAME gives every task the method; one shared by tasks (the EMA teacher) is one object for all."""
    cls = ADV_METHODS.get(name)
    regs = build_regularizers(RunConfig(adv=adv_config(name)), tasks)
    (rte,), (stsb,) = regs["rte"], regs["stsb"]
    assert type(rte) is type(stsb) is cls
    assert (rte is stsb) == cls.shared_by_tasks


# ------------------------------------------------------------------ method-specific


def test_pgd_weights_trained_by_final_adversarial_loss_only(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("pgd")(adv_config("pgd", adv_steps=3))
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    loss, _ = reg.loss(ctx)
    assert all(p.grad is None for p in model.parameters())  # K ascent steps: no weight gradient
    loss.backward(retain_graph=True)
    got = encoder_grads(model)
    model.zero_grad(set_to_none=True)
    task_loss_at(ctx, reg.last_delta).backward()  # L(x + δ_K) alone, same dropout masks
    want = encoder_grads(model)
    assert close(got, want)


@pytest.mark.parametrize("steps", [2, 3])
def test_freelb_gradient_is_mean_of_step_gradients(steps, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("freelb")(adv_config("freelb", adv_steps=steps, adv_lr=0.05, freelb_max_norm=0.0))
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    loss, _ = reg.loss(ctx)
    loss.backward(retain_graph=True)
    got = encoder_grads(model)
    assert len(reg.deltas) == steps and not torch.equal(reg.deltas[0], reg.deltas[-1])
    per_step = []
    for delta in reg.deltas:
        model.zero_grad(set_to_none=True)
        task_loss_at(ctx, delta).backward(retain_graph=True)  # each step's loss on its own
        per_step.append(encoder_grads(model))
    mean = {k: torch.stack([g[k] for g in per_step]).mean(0) for k in got}
    assert close(got, mean)
    assert not close(got, per_step[0])  # the steps differ, so the test can tell a mean from one step


def test_vat_runs_on_a_batch_without_labels(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("vat")(adv_config("vat"))
    batch = make_batch(tokenizer, "rte", labels=False)
    loss, logs = reg.loss(make_ctx(model, tasks, "rte", batch, with_labels=False))
    assert "labels" not in batch
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_grad_penalty_is_half_eps_squared_input_gradient(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("grad_penalty")(adv_config("grad_penalty", adv_eps=0.3))
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    loss, _ = reg.loss(ctx)
    # reference: each example's own loss differentiated w.r.t. its own embeddings
    x = ctx.embeds.detach().requires_grad_(True)
    with ctx.rng.replay():
        logits = model(ctx.batch, task="rte", inputs_embeds=x)
    per_example = torch.nn.functional.cross_entropy(logits, ctx.batch["labels"], reduction="none")  # (B,)
    sq = [torch.autograd.grad(li, x, retain_graph=True)[0][i].pow(2).sum() for i, li in enumerate(per_example)]
    assert torch.allclose(loss, 0.5 * 0.3 * torch.stack(sq).mean(), rtol=1e-4)


def test_awp_perturbs_selected_weights_within_bounds_and_changes_loss(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    cfg = adv_config("awp", adv_lr=0.5, adv_eps=0.01)
    reg = ADV_METHODS.get("awp")(cfg)
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    loss, logs = reg.loss(ctx)
    deltas, params = reg.last_weight_delta, dict(model.named_parameters())
    assert deltas and all(".layer." in n and "LayerNorm" not in n and n.endswith(".weight") for n in deltas)
    assert not any(n.startswith("heads.") or "embeddings" in n for n in deltas)
    assert all(torch.all(v.abs() <= cfg.adv_eps * params[n].abs() + 1e-12) for n, v in deltas.items())
    assert any(v.abs().sum() > 0 for v in deltas.values())
    assert abs(logs["adv_loss"] - ctx.task_loss.item()) > 1e-6  # the weight perturbation matters


def test_awp_pattern_matching_nothing_is_a_config_error(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("awp")(adv_config("awp", adv_weight_pattern="^no_such_weight$"))
    with pytest.raises(ConfigError, match="adv_weight_pattern"):
        reg.loss(make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte")))
    assert select_weights(model, r"heads\.rte\.dense\.weight").keys() == {"heads.rte.dense.weight"}


def test_freeat_perturbation_carries_over_and_is_checkpointed(tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("freeat")(adv_config("freeat", adv_norm="linf", adv_norm_level="token"))
    assert reg.replays == 2
    for step, rows in enumerate((slice(0, 4), slice(0, 4), slice(1, 3))):  # two replays, then a smaller batch
        ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte", rows), step=step)
        loss, _ = reg.loss(ctx)
        if step == 1:
            assert reg.last_delta.abs().max() > 0  # carried over from the previous replay
        (ctx.task_loss + loss).backward()
        reg.on_optimizer_step(model)
    b, t = ctx.embeds.shape[:2]
    carried = reg.buffer[:b, :t] * ctx.mask
    assert reg.buffer.shape[:2] == (4, make_batch(tokenizer, "rte")["input_ids"].shape[1])
    assert reg.buffer.abs().max() <= 0.05 + 1e-7
    restored = ADV_METHODS.get("freeat")(reg.cfg)
    restored.load_state_dict(reg.state_dict())
    restored.loss(make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte", slice(1, 3)), step=3))
    assert torch.equal(restored.last_delta, carried)


# four pairs each: a long batch (about 40 tokens) and a short one (about 8)
LONG_PAIRS = [(f"{a} {a} {a}", f"{b} {b}") for a, b in PAIRS]
SHORT_PAIRS = [(a.split()[0], b.split()[-1]) for a, b in PAIRS]


@pytest.mark.parametrize("order", ["LSL", "SLS", "LLSL", "SLSSL"])
def test_freeat_carried_perturbation_never_leaves_the_ball(order, tiny_encoder, tasks, tokenizer):
    """ℓ2 per example, step η = ε: after a short batch a long batch's corner holds new values followed by
    older ones, together outside the ball unless the corner is projected before use."""
    model = make_model(tiny_encoder, tasks)
    eps = 0.05
    reg = ADV_METHODS.get("freeat")(adv_config("freeat", adv_eps=eps, adv_lr=eps))
    # a carried δ on the ball, spread over a long batch's tokens (a trained encoder's ascent spreads it; the tiny
    # random one puts nearly all of it on [CLS], which would hide the stale tail)
    long = make_batch(tokenizer, "rte", pairs=LONG_PAIRS)
    torch.manual_seed(0)
    spread = torch.randn_like(model.embed(long).detach()) * long["attention_mask"].unsqueeze(-1)  # (B, T, H)
    reg.load_state_dict({"delta": eps * spread / norm_of(spread, "l2", "example")})
    for step, kind in enumerate(order):
        batch = make_batch(tokenizer, "rte", pairs=LONG_PAIRS if kind == "L" else SHORT_PAIRS)
        ctx = make_ctx(model, tasks, "rte", batch, step=step)
        loss, _ = reg.loss(ctx)
        assert norm_of(reg.last_delta, "l2", "example").max() <= eps * (1 + 1e-5), (order, step)
        assert torch.all(reg.last_delta * (1 - ctx.mask) == 0)
        loss.backward()
        reg.on_optimizer_step(model)
    assert reg.last_delta.abs().max() > 0  # it did carry a perturbation


def _first_linf_step(name: str, ctx: StepContext, step: float) -> torch.Tensor:
    """δ after one ℓ∞ ascent step from δ = 0, far from the radius (ε = 10·step): no projection acts."""
    cfg = adv_config(name, adv_norm="linf", adv_norm_level="token", adv_init_mag=0.0, adv_steps=1, adv_lr=step)
    reg = ADV_METHODS.get(name)(dataclasses.replace(cfg, adv_eps=step if name == "fgm" else 10 * step))
    if name == "pgd":
        return reg.attack(ctx)
    loss, _ = reg.loss(ctx)
    if name == "fgm":  # FGM's single step has size ε
        return reg.last_delta
    loss.backward()  # FreeAT: the step comes from the trainer's backward, after the optimizer step
    reg.on_optimizer_step(ctx.model)
    b, t = ctx.embeds.shape[:2]
    return reg.buffer[:b, :t]


@pytest.mark.parametrize("name", ["pgd", "freeat", "fgm"])
def test_linf_step_is_the_sign_of_the_gradient(name, tiny_encoder, tasks, tokenizer):
    """Madry's PGD, Shafahi's FreeAT and FGSM step η·sign(g): every real-token coordinate moves by η."""
    model = make_model(tiny_encoder, tasks)
    ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
    delta = _first_linf_step(name, ctx, 0.02)
    real = ctx.mask.expand_as(delta).bool()
    assert torch.all(delta[real].abs() == torch.tensor(0.02))
    assert torch.all(delta[~real] == 0)


def _tiny_run_config(tiny_encoder, output_dir, train: dict | None = None, **adv) -> RunConfig:
    """A tiny run: rte alone unless `train` says otherwise; 16 examples a task, 4 batches of 4 each."""
    settings = dict(
        task_def=str(GLUE_YAML),
        tasks="rte",
        data_dir=str(REPO / "data" / "glue_sample"),
        init_checkpoint=str(tiny_encoder),
        output_dir=str(output_dir),
        epochs=2.0,
        batch_size=4,
        max_train_samples=16,
        max_eval_samples=8,
        log_steps=100,
    )
    return RunConfig(train=TrainConfig(**{**settings, **(train or {})}), adv=adv_config(**adv))


def _spy_micro_steps(monkeypatch) -> list[tuple[int, int, str, tuple]]:
    """Record (epoch, optimizer step, task, batch) for every micro-step the trainer runs."""
    from mtadv.trainer import Trainer

    seen: list[tuple[int, int, str, tuple]] = []
    original = Trainer.micro_step

    def spy(self, task, batch, n_micro):
        seen.append((self.state.epoch, self.state.step, task, tuple(map(tuple, batch["input_ids"].tolist()))))
        return original(self, task, batch, n_micro)

    monkeypatch.setattr(Trainer, "micro_step", spy)
    return seen


def test_freeat_replays_each_batch_m_times_within_the_plain_budget(tiny_encoder, tmp_path, monkeypatch):
    from mtadv.adversarial.freeat import FreeAT
    from mtadv.build import build_trainer

    seen: list[tuple[int, tuple[int, ...]]] = []
    original = FreeAT.loss

    def spy(self, ctx):
        seen.append((ctx.step, tuple(ctx.batch["input_ids"][:, 1].tolist())))
        return original(self, ctx)

    monkeypatch.setattr(FreeAT, "loss", spy)
    trainer = build_trainer(_tiny_run_config(tiny_encoder, tmp_path / "run", name="freeat", freeat_replays=2))
    assert trainer.total_steps == 2 * trainer.groups_per_epoch  # epochs × batches: same budget as plain
    trainer.train()
    assert [s for s, _ in seen] == list(range(trainer.total_steps))  # one optimizer step per replay
    batches = [b for _, b in seen]
    assert all(batches[i] == batches[i + 1] for i in range(0, len(batches), 2))  # each batch twice in a row
    assert len(set(batches)) == trainer.groups_per_epoch  # epochs / m = one pass over the data


def _two_task_def(tmp_path, rte_adv: dict) -> Path:
    """glue.yml's rte and stsb, with rte's own `adv:` mapping (the CLI runs no method)."""
    import yaml

    defs = yaml.safe_load(GLUE_YAML.read_text())["tasks"]
    path = tmp_path / "two_tasks.yml"
    path.write_text(yaml.safe_dump({"tasks": {"rte": {**defs["rte"], "adv": rte_adv}, "stsb": defs["stsb"]}}))
    return path


def _times_seen(seen, task: str, epoch: int = 0) -> dict[tuple, list[int]]:
    """Each batch of a task in one epoch -> the optimizer steps that trained it."""
    out: dict[tuple, list[int]] = {}
    for e, step, t, batch in seen:
        if e == epoch and t == task:
            out.setdefault(batch, []).append(step)
    return out


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_freeat_in_one_task_replays_that_task_only(grad_accum, tiny_encoder, tmp_path, monkeypatch):
    """FreeAT in rte's `adv:` only: rte's batches get m = 2 steps each, stsb's one (grad accumulation
    groups mix the tasks: a group's second step trains its rte batches alone)."""
    from mtadv.build import build_trainer

    seen = _spy_micro_steps(monkeypatch)
    task_def = _two_task_def(tmp_path, {"method": "freeat", "freeat_replays": 2})
    train = {"task_def": str(task_def), "tasks": "rte,stsb", "grad_accum": grad_accum}
    trainer = build_trainer(_tiny_run_config(tiny_encoder, tmp_path / "run", train, name="none"))
    assert trainer.total_steps == 2 * trainer.groups_per_epoch  # the budget: epochs × groups
    trainer.train()
    stsb, rte = _times_seen(seen, "stsb"), _times_seen(seen, "rte")
    assert len(stsb) == len(rte) == 4  # the whole first epoch ran: every batch of both tasks
    assert all(len(steps) == 1 for steps in stsb.values())  # never replayed
    assert all(len(steps) == 2 and steps[1] == steps[0] + 1 for steps in rte.values())  # twice in a row


@pytest.mark.parametrize("inactive", [{"adv_warmup_steps": 1000}, {"adv_start_epoch": 5}])
def test_inactive_freeat_replays_nothing(inactive, tiny_encoder, tmp_path, monkeypatch):
    from mtadv.build import build_trainer

    seen = _spy_micro_steps(monkeypatch)
    task_def = _two_task_def(tmp_path, {"method": "freeat", "freeat_replays": 2, **inactive})
    train = {"task_def": str(task_def), "tasks": "rte,stsb", "epochs": 1.0}
    trainer = build_trainer(_tiny_run_config(tiny_encoder, tmp_path / "run", train, name="none"))
    trainer.train()
    assert [s for _, s, _, _ in seen] == list(range(trainer.total_steps))  # one micro-step per step
    assert len({b for *_, b in seen}) == len(seen) == 8  # one pass: each of the 8 batches exactly once


def test_task_adv_mapping_overrides_the_cli(tiny_encoder, tasks):
    cfg = RunConfig(adv=AdvConfig(adv="none"))
    overridden = {**tasks, "rte": dataclasses.replace(tasks["rte"], adv={"method": "freelb", "freelb_max_norm": 0.2})}
    regs = build_regularizers(cfg, overridden)
    assert regs["stsb"] == [] and type(regs["rte"][0]).__name__ == "FreeLB"
    assert regs["rte"][0].perturbation_radius == 0.2


@pytest.mark.integration
@pytest.mark.parametrize("name", METHODS)
def test_multitask_cli_run_with_grad_accum(name, tiny_encoder, tmp_path):
    """rte (classification) + stsb (regression), two micro-batches per step, through the CLI."""
    out = tmp_path / "run"
    argv = [
        *("--tasks", "rte,stsb", "--init_checkpoint", str(tiny_encoder), "--output_dir", str(out)),
        *("--max_steps", "3", "--grad_accum", "2", "--batch_size", "4", "--log_steps", "1"),
        *("--max_train_samples", "16", "--max_eval_samples", "8", "--adv", name, "--adv_eps", "0.05"),
        *("--adv_lr", "0.02", "--adv_steps", "2", "--freelb_max_norm", "0.05"),
    ]
    assert run_train(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["final"]) == {"rte", "stsb"} and results["run"]["steps"] == 3
    assert results["run"]["skipped_steps"] == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    own = {"loss", "total_loss"}  # the trainer's; a regularizer logs scalars of its own next to them
    term_logged = [k for row in history for k in row if k.startswith("train/rte/") and k.split("/")[-1] not in own]
    assert term_logged, "the regularizer never ran"
    adv_logged = [(row, k[: -len("adv_loss")]) for row in history for k in row if k.endswith("/adv_loss")]
    if ADV_METHODS.get(name)(adv_config(name)).replaces_task_loss:  # as published: no clean loss
        assert all(row[p + "total_loss"] == pytest.approx(row[p + "adv_loss"], rel=1e-5) for row, p in adv_logged)


@pytest.mark.parametrize("name", METHODS)
def test_keep_clean_loss_always_keeps_it(name):
    published = ADV_METHODS.get(name)(adv_config(name)).replaces_task_loss
    keep = ADV_METHODS.get(name)(adv_config(name, adv_keep_clean_loss=True)).replaces_task_loss
    assert not keep and (not published or ADV_METHODS.get(name).at_zero_perturbation == "clean_loss")


def test_the_published_adversarial_training_methods_replace_the_clean_loss():
    replacing = {n for n in METHODS if ADV_METHODS.get(n)(adv_config(n)).replaces_task_loss}
    assert {"pgd", "freeat", "freelb", "awp"} <= replacing and not {"fgm", "smart", "vat", "rdrop"} & replacing


@pytest.mark.integration
@pytest.mark.parametrize("name", ["freelb", "awp", "freeat"])
def test_method_combines_with_the_bregman_teacher(name, tiny_encoder, tmp_path):
    out = tmp_path / "run"
    argv = [
        *("--tasks", "rte", "--init_checkpoint", str(tiny_encoder), "--output_dir", str(out), "--log_steps", "1"),
        *("--max_steps", "2", "--batch_size", "4", "--max_train_samples", "8", "--max_eval_samples", "4"),
        *("--adv", name, "--adv_eps", "0.05", "--adv_lr", "0.02", "--bregman_mu", "1", "--bregman_start_step", "0"),
    ]
    assert run_train(argv) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    rows = [row for row in history if "train/rte/adv_loss" in row]
    assert rows and all("train/rte/bregman_loss" in row for row in rows)
    for row in rows:  # the step trains on the adversarial loss (published variant) plus the teacher term
        want = row["train/rte/adv_loss"] + row["train/rte/bregman_mu"] * row["train/rte/bregman_loss"]
        assert row["train/rte/total_loss"] == pytest.approx(want, rel=1e-5)


# ------------------------------------------------------------------ mixed precision


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine over the last dimension, in float64 and with no ε floor (gradients here are of order 1e-9)."""
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def test_scaled_grad_keeps_small_fp16_gradients():
    """An fp16 backward of a small loss underflows; taken on loss × 2^16 and divided back it matches fp32."""
    from mtadv.adversarial.perturb import scaled_grad

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    x = torch.randn(8, 64, requires_grad=True)

    def grad(dtype, scale):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = layer(layer(x)).float().sum() * 1e-9  # (8, 64) -> a gradient of order 1e-9
            return scaled_grad(loss, [x], scale)[0]

    want = grad(torch.float32, 1.0)
    unscaled, scaled = grad(torch.float16, 1.0), grad(torch.float16, 2.0**16)
    assert unscaled.dtype == scaled.dtype == torch.float32
    assert (unscaled == 0).float().mean() > 0.5  # underflow: the problem the scale solves
    assert (scaled == 0).float().mean() == 0
    assert cosine(scaled.flatten(), want.flatten()) > 0.999


@pytest.mark.parametrize("precision,scale", [("fp32", 1.0), ("fp16", 2.0**16)])
def test_trainer_passes_the_grad_scalers_scale(precision, scale, tiny_encoder, tmp_path, monkeypatch):
    from mtadv.adversarial.smart import SmartRegularizer
    from mtadv.build import build_trainer

    scales: list[float] = []
    original = SmartRegularizer.loss

    def spy(self, ctx):
        scales.append(ctx.grad_scale)
        return original(self, ctx)

    monkeypatch.setattr(SmartRegularizer, "loss", spy)
    train = {"max_steps": 1, "precision": precision, "device": "cpu"}
    trainer = build_trainer(_tiny_run_config(tiny_encoder, tmp_path / "run", train, name="smart"))
    trainer.train()
    assert scales == [scale]  # GradScaler's initial scale under fp16; 1.0 without it


def _reference_direction(model, tasks, batch, d0: torch.Tensor) -> torch.Tensor:
    """The power iteration in float64 (model, loss and arithmetic), at a finite difference of 1e-6 of ‖x‖."""
    import copy

    from mtadv.adversarial.vat import power_iteration

    ctx = make_ctx(copy.deepcopy(model).double(), tasks, "rte", batch)
    d = power_iteration(
        ctx.forward, ctx.embeds, ctx.logits.detach(), ctx.mask, ctx.divergence, d0.double(),
        xi=1e-6, steps=1, norm="l2", level="example",
    )  # fmt: skip
    return d.float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_vat_default_xi_finds_the_float64_direction(dtype, tiny_encoder, tasks, tokenizer):
    """VAT's default ξ and its fp32 power iteration give the float64 direction on every example, under
    fp32 and under bf16 / fp16 autocast (the step's clean output is then half precision)."""
    from mtadv.adversarial.perturb import gaussian_noise
    from mtadv.adversarial.vat import power_iteration

    model = make_model(tiny_encoder, tasks).eval()  # no dropout: float64 and fp32 forwards are comparable
    batch = make_batch(tokenizer, "rte")
    torch.manual_seed(1)
    d0 = gaussian_noise(model.embed(batch).detach(), 1.0, make_ctx(model, tasks, "rte", batch).mask)
    want = _reference_direction(model, tasks, batch, d0)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        ctx = make_ctx(model, tasks, "rte", batch)
        d = power_iteration(
            ctx.forward, ctx.embeds, ctx.logits.detach(), ctx.mask, ctx.divergence, d0,
            xi=AdvConfig(adv="vat").vat_xi, steps=1, norm="l2", level="example",
            grad_scale=2.0**16 if dtype == torch.float16 else 1.0,
        )  # fmt: skip
    cos = cosine(d.flatten(1), want.flatten(1))  # (B,)
    assert torch.all(want.flatten(1).norm(dim=1) > 0.99)  # the reference found a direction everywhere
    assert torch.all(cos >= 0.99), cos


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_vat_under_autocast_perturbs_every_example(dtype, tiny_encoder, tasks, tokenizer):
    model = make_model(tiny_encoder, tasks)
    reg = ADV_METHODS.get("vat")(adv_config("vat", **ADV_METHODS.get("vat").defaults))
    with torch.autocast("cpu", dtype=dtype):
        ctx = make_ctx(model, tasks, "rte", make_batch(tokenizer, "rte"))
        loss, _ = reg.loss(ctx)
    assert torch.isfinite(loss) and loss > 0
    assert torch.allclose(norm_of(reg.last_delta, "l2", "example").flatten(), torch.tensor(reg.cfg.adv_eps))
