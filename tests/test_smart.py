"""SMART's R_s and the momentum Bregman (EMA) teacher on a tiny random encoder.

Invariants: the perturbation stays inside the ε-ball; R_s is exactly 0 without a perturbation
when dropout is replayed (and not otherwise); divergences are right; gradients reach the
encoder through both branches; the EMA follows its formula and survives a checkpoint; a NaN in
the ascent never reaches the weights; warm-up, gradient accumulation and bf16 autocast work.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from mtadv.adversarial import build_regularizers
from mtadv.adversarial.base import StepContext
from mtadv.adversarial.perturb import RngState, norm_of, token_mask
from mtadv.adversarial.smart import SmartRegularizer, virtual_adversarial_perturbation
from mtadv.adversarial.teacher import BregmanTeacher, warmup_beta
from mtadv.build import build_trainer
from mtadv.checkpoint import TEACHER_DIR, load_checkpoint
from mtadv.config import AdvConfig, RunConfig, TeacherConfig, build_parser, config_from_args
from mtadv.losses import DIVERGENCES, TASK_LOSSES
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs

GLUE_YAML = Path(__file__).resolve().parent.parent / "task_defs" / "glue.yml"
TEACHER_ADV = AdvConfig(adv="bregman")  # a task's settings; the tests give μ per task (mu_by_task)
PAIRS = [
    ("the cat sat on the mat", "a cat was sitting"),
    ("he said it would rain today in the city", "rain"),
    ("stocks fell", "the market went down sharply on monday"),
]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tasks():
    return load_task_defs(GLUE_YAML)


@pytest.fixture()
def model(tiny_encoder, tasks):
    torch.manual_seed(0)
    m = MultiTaskModel(AutoModel.from_pretrained(tiny_encoder), {t: tasks[t] for t in ("mrpc", "stsb")})
    return m.train()  # dropout on: replay matters


@pytest.fixture()
def batch(tiny_encoder):
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    enc = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any(), "the batch must contain padding"
    return dict(enc)


def make_ctx(model, task, batch) -> StepContext:
    labels = torch.tensor([0, 1, 1]) if task.type == "classification" else torch.tensor([0.5, 3.0, 4.5])
    batch = {**batch, "labels": labels}
    rng = RngState.capture(torch.device("cpu"))
    embeds = model.embed(batch)  # (B, T, H)
    logits = model(batch, task=task.name, inputs_embeds=embeds)
    return StepContext(model, task, batch, embeds, logits, TASK_LOSSES.get(task.loss)(logits, labels), rng)


def smart_cfg(**kw) -> AdvConfig:
    return dataclasses.replace(AdvConfig(adv="smart"), **kw)


# ------------------------------------------------------------------ R_s
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("level", ["token", "example"])
def test_perturbation_never_leaves_the_ball(model, tasks, batch, norm, level):
    ctx = make_ctx(model, tasks["mrpc"], batch)
    eps = 1e-2
    # σ and η far larger than ε: both the noise and every ascent step must be projected back
    res = virtual_adversarial_perturbation(
        ctx.forward, ctx.embeds, ctx.logits, ctx.mask, ctx.divergence,
        sigma=1.0, step_size=1.0, eps=eps, steps=3, norm=norm, level=level,
    )  # fmt: skip
    assert not res.skipped
    norms = norm_of(res.delta, norm, level)
    assert norms.max().item() <= eps * (1 + 1e-5)
    assert norms.max().item() >= 0.5 * eps  # it did move: the test is not vacuous
    assert (res.delta * (1 - token_mask(batch, res.delta))).abs().max() == 0  # padding untouched


def test_rs_exactly_zero_without_perturbation_when_dropout_is_replayed(model, tasks, batch):
    ctx = make_ctx(model, tasks["mrpc"], batch)
    loss, logs = SmartRegularizer(smart_cfg(adv_init_mag=0.0, adv_steps=0, adv_replay_dropout=True)).loss(ctx)
    assert loss.item() == 0.0 and logs["adv_loss"] == 0.0


def test_rs_positive_without_replay_dropout_noise_alone(model, tasks, batch):
    ctx = make_ctx(model, tasks["mrpc"], batch)
    loss, _ = SmartRegularizer(smart_cfg(adv_init_mag=0.0, adv_steps=0, adv_replay_dropout=False)).loss(ctx)
    assert loss.item() > 0.0  # the divergence then measures dropout noise


def test_symmetric_kl_is_symmetric_and_zero_at_equality():
    torch.manual_seed(0)
    p, q = torch.randn(5, 3), torch.randn(5, 3)
    skl = DIVERGENCES.get("sym_kl")
    assert torch.allclose(skl(p, q), skl(q, p))
    assert skl(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert skl(p, q).item() > 0
    kl = DIVERGENCES.get("kl")
    assert torch.allclose(skl(p, q), kl(p, q) + kl(q, p))


def mt_dnn_sym_kl(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MT-DNN's SymKlCriterion.forward (mt_dnn/loss.py), which its SMART perturbation calls as
    adv_lc(logits, adv_logits): each KL term's target distribution is detached."""
    F = torch.nn.functional
    return F.kl_div(F.log_softmax(input, -1), F.softmax(target.detach(), -1), reduction="batchmean") + F.kl_div(
        F.log_softmax(target, -1), F.softmax(input.detach(), -1), reduction="batchmean"
    )


@pytest.mark.parametrize("gap", [1e-3, 1.0])
def test_rs_gradient_follows_the_reference_criterion(gap):
    """R_s = ℓ_s(f(x + δ), f(x)): its value and its gradients w.r.t. the adversarial and the clean logits are
    those of MT-DNN's criterion (at small gaps, differentiating both terms through both arguments doubles them)."""
    torch.manual_seed(0)
    clean = torch.randn(6, 3, requires_grad=True)
    adv = (clean.detach() + gap * torch.randn(6, 3)).requires_grad_(True)
    ours = DIVERGENCES.get("sym_kl")(adv, clean)
    ours_adv, ours_clean = torch.autograd.grad(ours, [adv, clean])
    ref = mt_dnn_sym_kl(clean, adv)
    ref_adv, ref_clean = torch.autograd.grad(ref, [adv, clean])
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_adv, ref_adv)
    torch.testing.assert_close(ours_clean, ref_clean)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ascent_under_autocast_matches_fp32(model, tasks, batch, dtype, monkeypatch):
    """SMART's ascent gradient at ε = 1e-3 (σ = 1e-5) under fp16 (GradScaler scale 2^16) and bf16 autocast:
    no underflowed coordinates and the fp32 direction (a half-precision ascent loses most of both)."""
    import mtadv.adversarial.smart as smart

    grads: list[torch.Tensor] = []
    real = smart.scaled_grad

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        grads.append(out[0].detach().clone())
        return out

    monkeypatch.setattr(smart, "scaled_grad", spy)
    cfg = smart_cfg(adv_init_mag=1e-5, adv_lr=1e-3, adv_eps=1e-3, adv_steps=1, adv_norm="linf")

    def ascent_grad(autocast_dtype, scale: float) -> torch.Tensor:
        grads.clear()
        torch.manual_seed(5)
        with torch.autocast("cpu", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            ctx = make_ctx(model, tasks["mrpc"], batch)
            ctx.grad_scale = scale
            SmartRegularizer(cfg).loss(ctx)
        return grads[0]

    want = ascent_grad(None, 1.0)
    got = ascent_grad(dtype, 2.0**16 if dtype == torch.float16 else 1.0)
    real_tokens = token_mask(batch, want).expand_as(want).bool()
    g, w = got[real_tokens].double(), want[real_tokens].double()
    assert (g == 0).double().mean() <= 0.02
    assert (g * w).sum() / (g.norm() * w.norm()) >= 0.95


def test_regression_divergence_on_matching_shapes(model, tasks, batch):
    mse = DIVERGENCES.get("mse")
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 5.0])
    assert mse(a, b).item() == pytest.approx(4.0 / 3)  # not the (B, B) broadcast of (B,) vs (B, 1)
    with pytest.raises(ValueError, match="shapes"):
        mse(a, b.unsqueeze(1))
    ctx = make_ctx(model, tasks["stsb"], batch)
    assert ctx.logits.shape == (3,)
    loss, logs = SmartRegularizer(smart_cfg(adv_eps=1e-1, adv_init_mag=1e-2)).loss(ctx)
    assert loss.dim() == 0 and math.isfinite(loss.item()) and logs["adv_loss"] > 0


def test_gradients_reach_the_encoder_through_both_branches(model, tasks, batch):
    """∇R_s = (part through the clean output) + (part through the adversarial output), both nonzero."""
    ctx = make_ctx(model, tasks["mrpc"], batch)
    reg = SmartRegularizer(smart_cfg(adv_eps=1e-1, adv_init_mag=1e-2))
    reg.loss(ctx)
    delta = reg.last_delta  # (B, T, H), detached

    def grads(detach_clean: bool, detach_adv: bool) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        embeds = model.embed(ctx.batch)
        with ctx.rng.replay():
            clean = model(ctx.batch, task="mrpc", inputs_embeds=embeds)
        adv = ctx.forward(embeds + delta)  # same dropout masks as the clean forward
        div = ctx.divergence(adv.detach() if detach_adv else adv, clean.detach() if detach_clean else clean)
        div.backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.encoder.parameters()]

    full, adv_only, clean_only = grads(False, False), grads(True, False), grads(False, True)
    assert sum(g.abs().sum() for g in adv_only) > 0
    assert sum(g.abs().sum() for g in clean_only) > 0
    for f, a, c in zip(full, adv_only, clean_only):
        torch.testing.assert_close(f, a + c, rtol=1e-4, atol=1e-9)


def test_nan_in_ascent_gradient_is_skipped_and_counted(model, tasks, batch, monkeypatch):
    real_grad = torch.autograd.grad

    def nan_grad(*a, **kw):
        return tuple(torch.full_like(g, float("nan")) for g in real_grad(*a, **kw))

    monkeypatch.setattr(torch.autograd, "grad", nan_grad)
    ctx = make_ctx(model, tasks["mrpc"], batch)
    reg = SmartRegularizer(smart_cfg())
    loss, logs = reg.loss(ctx)
    assert loss.item() == 0.0 and logs == {"adv_skipped_total": 1.0}
    reg.loss(ctx)
    assert reg.skipped == 2 and reg.state_dict() == {"skipped": 2}


# ------------------------------------------------------------------ the teacher
def test_ema_matches_the_formula(model, tasks, batch):
    beta = 0.9
    teacher = BregmanTeacher(TEACHER_ADV, TeacherConfig(bregman_beta=beta, bregman_beta_warmup=False), {"mrpc": 1.0})
    teacher.loss(make_ctx(model, tasks["mrpc"], batch))  # creates θ̃ = θ
    expected = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)  # an "optimizer step"
        teacher.on_optimizer_step(model)
        expected = [beta * e + (1 - beta) * p.detach() for e, p in zip(expected, model.parameters())]
    for e, t in zip(expected, teacher.teacher.parameters()):
        torch.testing.assert_close(t, e)
    assert not any(p.requires_grad for p in teacher.teacher.parameters())


def test_ema_warmup_beta():
    assert warmup_beta(0.99, 0) == pytest.approx(0.1)
    assert warmup_beta(0.99, 10) == pytest.approx(11 / 20)
    assert warmup_beta(0.99, 10_000) == 0.99


@pytest.mark.parametrize("replay", [False, True])
def test_teacher_term_is_zero_at_creation_without_dropout_and_has_no_teacher_grad(model, tasks, batch, replay):
    model.eval()  # no dropout in the student's forward: a replaying teacher must not add any either
    teacher = BregmanTeacher(TEACHER_ADV, TeacherConfig(bregman_replay_dropout=replay), {"mrpc": 2.0})
    loss, logs = teacher.loss(make_ctx(model, tasks["mrpc"], batch))
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and logs["bregman_mu"] == 2.0


@pytest.mark.parametrize("task", ["mrpc", "stsb"])
def test_teacher_term_with_dropout_is_zero_at_creation_only_when_masks_are_replayed(model, tasks, batch, task):
    """θ̃ = θ with dropout on (the trainer's case): an eval-mode teacher leaves the student's dropout noise
    in the term; a teacher that replays the clean forward's masks gives exactly 0, and stays in eval mode."""
    ctx = make_ctx(model, tasks[task], batch)  # model in train mode: the clean forward had dropout
    noisy, _ = BregmanTeacher(TEACHER_ADV, TeacherConfig(bregman_replay_dropout=False), {task: 1.0}).loss(ctx)
    replaying = BregmanTeacher(TEACHER_ADV, TeacherConfig(bregman_replay_dropout=True), {task: 1.0})
    replayed, _ = replaying.loss(ctx)
    assert noisy.item() > 1e-6
    assert replayed.item() == pytest.approx(0.0, abs=1e-10)
    assert not replaying.teacher.training
    replayed.backward()  # a zero term still carries the student's graph and nothing else
    assert all(p.grad is None for p in replaying.teacher.parameters())


def test_teacher_state_round_trips(model, tasks, batch, tiny_encoder):
    teacher = BregmanTeacher(TEACHER_ADV, TeacherConfig(bregman_beta=0.5), {"mrpc": 1.0})
    teacher.loss(make_ctx(model, tasks["mrpc"], batch))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    teacher.on_optimizer_step(model)
    state = teacher.state_dict()
    other = BregmanTeacher(TEACHER_ADV, TeacherConfig(bregman_beta=0.5), {"mrpc": 1.0})
    other.load_state_dict(state)
    other.on_optimizer_step(model)  # materializes θ̃ from the state, then averages once more
    teacher.on_optimizer_step(model)
    for a, b in zip(teacher.teacher.state_dict().values(), other.teacher.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_one_teacher_shared_by_tasks_with_per_task_mu(tasks):
    cfg = RunConfig(adv=AdvConfig(adv="smart", bregman_mu=1.0))
    chosen = {"mrpc": tasks["mrpc"], "stsb": dataclasses.replace(tasks["stsb"], adv={"bregman_mu": 3.0})}
    regs = build_regularizers(cfg, chosen)
    (t1,) = [r for r in regs["mrpc"] if isinstance(r, BregmanTeacher)]
    (t2,) = [r for r in regs["stsb"] if isinstance(r, BregmanTeacher)]
    assert t1 is t2 and t1.mu_by_task == {"mrpc": 1.0, "stsb": 3.0}
    assert isinstance(regs["mrpc"][0], SmartRegularizer)
    off = build_regularizers(RunConfig(adv=AdvConfig(adv="smart", bregman_mu=0.0)), chosen)
    assert not any(isinstance(r, BregmanTeacher) for r in off["mrpc"])


def test_the_old_import_path_re_exports_the_teacher():
    from mtadv import teacher
    from mtadv.callbacks import TeacherCallback

    assert teacher.BregmanTeacher is BregmanTeacher and teacher.TeacherCallback is TeacherCallback
    assert teacher.warmup_beta is warmup_beta


def test_adv_bregman_is_the_teacher_alone_at_the_papers_mu(tasks):
    """--adv bregman: no other method, one teacher for all tasks at μ = 1; a task's adv: still picks per task."""
    parse = build_parser("t").parse_args
    chosen = {"mrpc": tasks["mrpc"], "stsb": tasks["stsb"]}
    regs = build_regularizers(config_from_args(parse(["--adv", "bregman"])), chosen)
    (t1,), (t2,) = regs["mrpc"], regs["stsb"]
    assert t1 is t2 and isinstance(t1, BregmanTeacher) and t1.mu_by_task == {"mrpc": 1.0, "stsb": 1.0}
    mixed = {
        "mrpc": dataclasses.replace(tasks["mrpc"], adv={"method": "fgm"}),  # FGM's own μ: 0, no teacher
        "stsb": dataclasses.replace(tasks["stsb"], adv={"bregman_mu": 3.0}),
    }
    regs = build_regularizers(config_from_args(parse(["--adv", "bregman"])), mixed)
    assert [type(r).__name__ for r in regs["mrpc"]] == ["FGM"] and regs["stsb"][0].mu_by_task == {"stsb": 3.0}
    regs = build_regularizers(config_from_args(parse(["--smart"])), {"mrpc": mixed["stsb"]})
    assert [type(r) for r in regs["mrpc"]] == [SmartRegularizer, BregmanTeacher]  # the method, then the teacher
    assert build_regularizers(config_from_args(parse(["--adv", "bregman", "--bregman_mu", "0"])), chosen) == {
        "mrpc": [],
        "stsb": [],
    }


def test_smart_preset_has_the_papers_settings():
    cfg = config_from_args(build_parser("t").parse_args(["--smart"]))
    a, t = cfg.adv, cfg.teacher
    assert (a.adv, a.adv_init_mag, a.adv_lr, a.adv_eps, a.adv_steps, a.adv_norm, a.adv_weight) == (
        "smart", 1e-5, 1e-3, 1e-5, 1, "linf", 1.0
    )  # fmt: skip
    assert (a.bregman_mu, t.bregman_beta) == (1.0, 0.99)
    assert t.bregman_replay_dropout  # not the paper's: chosen from measurements (README, the teacher's term)
    off = config_from_args(build_parser("t").parse_args(["--smart", "--bregman_mu", "0", "--adv_eps", "1e-3"]))
    assert off.adv.bregman_mu == 0.0 and off.adv.adv_eps == 1e-3  # explicit flags win over the preset


# ------------------------------------------------------------------ in the trainer
def trainer_for(tiny_encoder, out: Path, *flags: str):
    argv = ["--tasks", "mrpc,stsb", "--init_checkpoint", str(tiny_encoder), "--output_dir", str(out)]
    argv += ["--max_train_samples", "16", "--max_eval_samples", "8", "--batch_size", "4", "--max_seq_len", "48"]
    argv += ["--device", "cpu", "--log_steps", "1", "--seed", "3", *flags]
    return build_trainer(config_from_args(build_parser("t").parse_args(argv)))


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_teacher_saved_as_its_own_checkpoint_and_evaluated(tiny_encoder, tmp_path):
    trainer = trainer_for(tiny_encoder, tmp_path, "--smart", "--eval_with_teacher", "--max_steps", "3")
    trainer.train()
    teacher = trainer.teacher_model()
    loaded, _, _, _ = load_checkpoint(str(tmp_path / "best" / TEACHER_DIR))
    best_step = json.loads((tmp_path / "results.json").read_text())["best"]["step"]
    assert best_step == 3  # the saved teacher is the final one
    for (k, a), b in zip(teacher.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["teacher"]["results"]) == {"mrpc", "stsb"}
    assert any("dev_teacher/mrpc/dev/accuracy" in h for h in history(tmp_path))


def test_nan_ascent_in_a_training_step_leaves_weights_finite(tiny_encoder, tmp_path, monkeypatch):
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **kw: tuple(g * float("nan") for g in real_grad(*a, **kw)))
    trainer = trainer_for(tiny_encoder, tmp_path, "--smart", "--bregman_mu", "0", "--max_steps", "2")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))  # the task loss still trained
    logs = history(tmp_path)
    skipped = [v for h in logs for k, v in h.items() if k.endswith("adv_skipped_total")]
    assert skipped and max(skipped) >= 1


def test_warmup_steps_are_respected(tiny_encoder, tmp_path):
    flags = ["--smart", "--adv_warmup_steps", "2", "--bregman_start_step", "3", "--max_steps", "4"]
    trainer_for(tiny_encoder, tmp_path, *flags).train()
    train_logs = {h["step"]: h for h in history(tmp_path) if h["kind"] == "train"}
    # the step logged as s ran with state.step = s - 1
    has = {s: (any("adv_loss" in k for k in h), any("bregman_loss" in k for k in h)) for s, h in train_logs.items()}
    assert has[1] == (False, False) and has[2] == (False, False)
    assert has[3] == (True, False) and has[4] == (True, True)


def test_grad_accumulation_and_bf16_autocast(tiny_encoder, tmp_path):
    flags = ["--smart", "--grad_accum", "2", "--precision", "bf16", "--max_steps", "2"]
    trainer = trainer_for(tiny_encoder, tmp_path, *flags)
    assert trainer.autocast_dtype == torch.bfloat16
    trainer.train()
    train_logs = [h for h in history(tmp_path) if h["kind"] == "train"]
    adv = [v for h in train_logs for k, v in h.items() if k.endswith("/adv_loss")]
    breg = [v for h in train_logs for k, v in h.items() if k.endswith("/bregman_loss")]
    assert adv and breg and all(math.isfinite(v) for v in adv + breg)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_adv_bregman_trains_exactly_as_bregman_mu_without_a_method(tiny_encoder, tmp_path):
    a = trainer_for(tiny_encoder, tmp_path / "a", "--adv", "bregman", "--max_steps", "3")
    a.train()
    b = trainer_for(tiny_encoder, tmp_path / "b", "--bregman_mu", "1", "--max_steps", "3")
    b.train()

    def train_rows(out: Path) -> list[dict]:
        return [{k: v for k, v in h.items() if k.startswith("train/")} for h in history(out)]

    rows = train_rows(tmp_path / "a")
    assert rows == train_rows(tmp_path / "b") and any("train/mrpc/bregman_loss" in r for r in rows)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k
