"""Robustness attacks (mtadv.attacks), parametrized over the registry where the invariant is shared:
strength 0 gives exactly the clean metrics, results are deterministic, weights are never changed;
plus `pgd`'s ordering (never above clean, not rising with the radius) and `typo`'s edits."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from conftest import GLUE_SAMPLE, GLUE_YAML
from transformers import AutoModel, AutoTokenizer

from mtadv.attacks import ATTACKS, AttackConfig, build_attack
from mtadv.attacks.evaluate import attacked_predictions, evaluate_under_attack, success_rate
from mtadv.attacks.typo import EDITS, NEIGHBOURS, TypoAttack
from mtadv.data_utils.readers import read_split
from mtadv.data_utils.tokenize import tokenize_split
from mtadv.evaluate import Predictions
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs
from mtadv.tasks import EvalRequest, pipeline_for

TASKS = ("rte", "stsb")
ZERO = {"pgd": {"attack_eps": 0.0}, "typo": {"attack_rate": 0.0}}  # each attack's strength 0


@pytest.fixture(scope="module")
def setup(tiny_encoder, tmp_path_factory):
    tasks = {k: v for k, v in load_task_defs(GLUE_YAML).items() if k in TASKS}
    torch.manual_seed(0)
    model = MultiTaskModel(AutoModel.from_pretrained(tiny_encoder), tasks).eval()
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    cache = str(tmp_path_factory.mktemp("tok"))
    splits = {}
    for name, task in tasks.items():
        raw = read_split(task, "dev", str(GLUE_SAMPLE)).select(range(24))
        splits[name] = tokenize_split(raw, tok, 64, cache, (name, "dev"))
    req = EvalRequest(tok, 8, torch.device("cpu"))
    return model, tasks, splits, req, cache


def make(attack: str, **cfg):
    return build_attack(attack, AttackConfig(**cfg))


def run(setup, task: str, attack: str, **cfg) -> dict[str, float]:
    model, tasks, splits, req, cache = setup
    return evaluate_under_attack(model, tasks[task], splits[task], req, make(attack, **cfg), 64, cache)


def clean_metrics(setup, task: str) -> dict[str, float]:
    model, tasks, splits, req, _ = setup
    return pipeline_for(tasks[task]).evaluate(model, tasks[task], splits[task], req)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", ATTACKS.names())
def test_zero_strength_gives_exactly_the_clean_metrics(name, task, setup):
    got = run(setup, task, attack=name, **ZERO[name])
    assert {k: v for k, v in got.items() if k != "attack_success_rate"} == clean_metrics(setup, task)
    assert got.get("attack_success_rate", 0.0) == 0.0


@pytest.mark.parametrize("name", ATTACKS.names())
def test_deterministic_for_a_seed(name, setup):
    cfg = dict(attack=name, attack_eps=0.5, attack_rate=0.5, attack_seed=3)
    assert run(setup, "rte", **cfg) == run(setup, "rte", **cfg)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_never_changes_weights_nor_leaves_gradients(name, setup):
    model = setup[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(setup, "stsb", attack=name, attack_eps=0.5, attack_rate=0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # restored after the attack


def test_unknown_attack_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: pgd, typo"):
        build_attack("nope")


@pytest.mark.parametrize("space", ["word", "embedding"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_is_never_above_clean_and_does_not_rise_with_the_radius(space, norm, setup):
    clean = clean_metrics(setup, "rte")["accuracy"]
    accs = [
        run(setup, "rte", attack="pgd", attack_eps=eps, attack_space=space, attack_norm=norm)["accuracy"]
        for eps in (0.0, 0.1, 0.5, 2.0)
    ]
    assert accs[0] == clean
    assert all(a <= clean for a in accs)
    assert accs == sorted(accs, reverse=True)
    assert accs[-1] < clean  # a large radius does break this random model


def test_pgd_on_regression_never_lowers_the_error(setup):
    """For scores the worst iterate is the one farthest from the label."""
    model, tasks, splits, req, _ = setup
    from mtadv.tasks.labeled import predict as labeled_predict

    split, task = splits["stsb"], tasks["stsb"]
    attack = make("pgd", attack_eps=0.5)
    clean = labeled_predict(model, task, split, req)
    attacked = labeled_predict(model, task, split, req, forward=lambda b: attack.perturbed_outputs(model, b, task))
    assert ((attacked.outputs - attacked.labels) ** 2 >= (clean.outputs - clean.labels) ** 2 - 1e-6).all()


@pytest.mark.parametrize("space", ["word", "embedding"])
def test_pgd_runs_k_plus_one_forwards_and_its_first_step_is_the_clean_gradient(space, setup):
    """K steps cost K + 1 encoder forwards per batch: the clean forward is the δ_0 = 0 iterate. One
    step from δ_0 is ε·sign(∇ at the clean input), so it must equal a hand-made one-step attack."""
    model, tasks, _, _, _ = setup
    task, batch = tasks["rte"], pair_batch(setup)
    calls = []
    handle = model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        make("pgd", attack_eps=0.5, attack_steps=3, attack_space=space).perturbed_outputs(model, batch, task)
    finally:
        handle.remove()
    assert len(calls) == 3 + 1

    from mtadv.adversarial.spaces import get_space
    from mtadv.losses import TASK_LOSSES

    eps, sp = 0.5, get_space(space)
    with torch.enable_grad():
        embeds, _, scale = sp.clean_forward(model, model, batch, task.name)
        x = embeds.detach().requires_grad_(True)
        loss = TASK_LOSSES.get(task.loss)(sp.forward(model, batch, task.name, x, scale), batch["labels"])
        (grad,) = torch.autograd.grad(loss, [x])
    mask = batch["attention_mask"].unsqueeze(-1).float()
    with torch.no_grad():
        by_hand = sp.forward(model, batch, task.name, x + eps * grad.sign() * mask, scale)
        clean = sp.forward(model, batch, task.name, x, scale)
    one_step = make("pgd", attack_eps=eps, attack_steps=1, attack_lr=eps, attack_space=space)
    got = one_step.perturbed_outputs(model, batch, task)
    wrong = (by_hand.argmax(-1) != batch["labels"]) & (clean.argmax(-1) == batch["labels"])
    assert wrong.any()  # the hand-made step breaks some example, so the comparison is not empty
    torch.testing.assert_close(got[wrong], by_hand[wrong])  # the iterate it kept where it broke one


def pair_batch(setup) -> dict:
    """One padded batch of the rte dev sample with its labels."""
    model, tasks, splits, req, _ = setup
    rows = splits["rte"].raw.select(range(8))
    batch = dict(
        req.tokenizer(
            list(rows["text_a"]),
            list(rows["text_b"]),
            padding=True,
            truncation=True,
            max_length=64,
            return_tensors="pt",
        )
    )
    return {**batch, "labels": torch.tensor(rows["label"])}


def test_success_rate_counts_flips_of_correct_examples():
    labels = torch.tensor([0, 1, 1, 0]).numpy()
    clean = Predictions(labels, torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]).numpy(), labels)
    attacked = Predictions(labels, torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]).numpy(), labels)
    assert success_rate(clean, attacked) == 50.0  # two were right, one of them flipped


def test_typo_edits_the_rate_of_words_with_one_edit_each():
    attack = TypoAttack(AttackConfig(attack_rate=0.3))
    words = [f"w{'abcdefgh'[i % 8]}ord{'xyz'[i % 3]}" for i in range(2000)]
    out = attack.perturb_text(" ".join(words), random.Random(0)).split(" ")
    changed = sum(a != b for a, b in zip(words, out))
    assert len(out) == len(words) and 0.25 < changed / len(words) < 0.35
    assert all(abs(len(a) - len(b)) <= 1 for a, b in zip(words, out))


@pytest.mark.parametrize("edit", EDITS, ids=lambda e: e.__name__)
def test_each_typo_edit_changes_one_position(edit):
    rng = random.Random(1)
    for word in ("ab", "keyboard", "Mississippi"):
        new = edit(word, rng)
        assert new != word or edit.__name__ in ("swap", "insert", "substitute")  # swap of equal letters
        assert abs(len(new) - len(word)) <= 1


def test_keyboard_neighbours_are_adjacent_keys():
    assert set(NEIGHBOURS["s"]) == set("qweadzxc")
    assert set(NEIGHBOURS["q"]) == set("was")


# ------------------------------------------------------------------ in a training run


@pytest.mark.integration
def test_eval_attack_records_robust_scores_per_task_and_attack(tiny_encoder, tmp_path, capsys):
    from training_runs import history, run_train, train_args

    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "2", "--eval_attack", "pgd, typo", "--attack_rate", "0.3")
    assert run_train(argv) == 0
    res = __import__("json").loads((out / "results.json").read_text())
    robust = res["robust"]["results"]
    assert set(robust) == {"rte", "stsb"} and set(robust["rte"]["dev"]) == {"pgd", "typo"}
    assert "attack_success_rate" in robust["rte"]["dev"]["pgd"] and "pearson" in robust["stsb"]["dev"]["typo"]
    assert robust["rte"]["dev"]["pgd"]["accuracy"] <= res["results"]["rte"]["dev"]["accuracy"]
    assert res["robust"]["settings"]["attack_rate"] == 0.3
    evals = [h for h in history(out) if h["kind"] == "eval"]
    assert any("robust/rte/dev/pgd/accuracy" in h for h in evals)
    assert "dev/pgd" in capsys.readouterr().out  # the end-of-run table


def test_unknown_eval_attack_is_refused_before_anything_is_written(tiny_encoder, tmp_path, capsys):
    from training_runs import run_train, train_args

    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--eval_attack", "pgd,fgsm")) == 2
    assert "unknown attack(s) ['fgsm']; known: pgd, typo" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.integration
def test_predict_attack_writes_metrics_in_the_clean_layout(tiny_encoder, tmp_path):
    """predict.py --attack: metrics.json as for a clean --split dev, attacked metrics + attack_success_rate;
    a zero radius reproduces the clean file's metrics exactly; --attack without --split dev is refused."""
    import json

    from training_runs import run_train, train_args

    from predict import main as predict_main

    run = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, run, "--max_steps", "2")) == 0
    base = ["--checkpoint", str(run / "best"), "--split", "dev", "--progress", "false"]
    assert predict_main([*base, "--output_dir", str(tmp_path / "clean")]) == 0
    assert predict_main([*base, "--output_dir", str(tmp_path / "zero"), "--attack", "pgd", "--attack_eps", "0"]) == 0
    assert predict_main([*base, "--output_dir", str(tmp_path / "pgd"), "--attack", "pgd", "--attack_eps", "2"]) == 0
    clean, zero, pgd = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("clean", "zero", "pgd"))
    assert zero["results"]["rte"]["dev"] == {**clean["results"]["rte"]["dev"], "attack_success_rate": 0.0}
    assert zero["results"]["stsb"] == clean["results"]["stsb"]
    assert pgd["results"]["rte"]["dev"]["accuracy"] <= clean["results"]["rte"]["dev"]["accuracy"]
    assert pgd["attack"]["name"] == "pgd" and pgd["attack"]["attack_eps"] == 2.0
    assert "attack_rate" not in pgd["attack"] and "attack_seed" not in pgd["attack"]  # typo's settings
    assert set(pgd) == set(clean) | {"attack"}
    assert predict_main([*base[:2], "--output_dir", str(tmp_path / "t"), "--attack", "typo"]) == 2
    assert not (tmp_path / "t").exists()


def test_every_attack_names_the_settings_it_reads():
    """metrics.json holds an attack's own settings only; each one named is an AttackConfig field."""
    fields = {f.name for f in dataclasses.fields(AttackConfig)}
    for name in ATTACKS.names():
        attack = make(name)
        assert attack.settings_used and set(attack.settings_used) <= fields, name
        assert set(attack.settings()) == {"name", *attack.settings_used}, name


# A changed value per AttackConfig field, every one of them away from its default.
OTHER_VALUES = {"attack_eps": 0.5, "attack_steps": 2, "attack_lr": 0.2, "attack_norm": "l2",
                "attack_norm_level": "example", "attack_space": "word", "attack_rate": 0.5, "attack_seed": 7}  # fmt: skip


@pytest.mark.parametrize("name", ATTACKS.names())
def test_a_setting_an_attack_does_not_name_leaves_its_outputs_unchanged(name, setup):
    """What metrics.json leaves out of an attack's settings cannot have changed its scores."""
    model, tasks, splits, req, cache = setup
    base = dict(attack_eps=0.3, attack_rate=0.3, attack_seed=1)
    unnamed = set(OTHER_VALUES) - set(make(name).settings_used)
    assert unnamed and set(OTHER_VALUES) == {f.name for f in dataclasses.fields(AttackConfig)}

    def attacked_outputs(**cfg) -> np.ndarray:  # (N,) STS-B scores: regression keeps the worst iterate, whatever moves
        return attacked_predictions(model, tasks["stsb"], splits["stsb"], req, make(name, **cfg), 64, cache)[1].outputs

    changed = {**base, **{f: OTHER_VALUES[f] for f in unnamed}}
    np.testing.assert_array_equal(attacked_outputs(**changed), attacked_outputs(**base))
