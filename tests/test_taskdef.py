"""Task-definition validation: one test per error class, each naming file, task and field.

Every error must stop the run before training and before anything is written to --output_dir;
the CLI tests at the bottom check the exit code (2) and an output directory that never appears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mtadv.build import build_model, read_task_data
from mtadv.checkpoint import save_checkpoint
from mtadv.cli import run_train
from mtadv.config import RunConfig, TrainConfig
from mtadv.errors import ConfigError
from mtadv.model import MultiTaskModel
from mtadv.taskdef import TASK_TYPES, load_task_defs, select_tasks

TRAIN_TSV = "sentence\tlabel\na fine film .\tpos\na dull film .\tneg\nbright and warm .\tpos\n"


@dataclass
class Setup:
    """A task-definition file, its data directory and any extra CLI flags."""

    task_def: Path
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)


def toy_spec(**overrides) -> dict:
    """A valid two-label task reading toy/train.tsv and toy/dev.tsv."""
    cols = {"text_a": "sentence", "label": "label"}
    spec = {
        "type": "classification",
        "labels": ["neg", "pos"],
        "metrics": ["accuracy"],
        "splits": {
            "train": {"path": "toy/train.tsv", "columns": cols},
            "dev": {"path": "toy/dev.tsv", "columns": cols},
        },
    }
    spec.update(overrides)
    return spec


def make_setup(tmp_path: Path, tasks: dict | None = None, train_tsv: str = TRAIN_TSV, yaml_text: str | None = None):
    data = tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    (data / "toy" / "train.tsv").write_text(train_tsv, encoding="utf-8")
    (data / "toy" / "dev.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    task_def = tmp_path / "tasks.yml"
    text = yaml_text if yaml_text is not None else yaml.safe_dump({"tasks": tasks or {"toy": toy_spec()}})
    task_def.write_text(text, encoding="utf-8")
    return Setup(task_def, data)


def validate(s: Setup) -> None:
    """What build_trainer checks before the model: definitions, then every train/dev file."""
    tasks = select_tasks(load_task_defs(s.task_def), None, str(s.task_def))
    read_task_data(tasks, str(s.data_dir), 0, 0)


def error_of(s: Setup) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate(s)
    return info.value


def assert_names(e: ConfigError, file: Path | str, task: str | None, fld: str) -> None:
    msg = str(e)
    assert str(file) in msg and str(file) in e.file
    if task is not None:
        assert f"task {task!r}" in msg and e.task == task
    assert fld in msg and fld in e.field


# ---------------------------------------------------------------- the error cases, one builder each


def case_malformed_yaml(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, yaml_text="tasks:\n  toy:\n    type: [classification\n")


def case_unknown_key(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, {"toy": toy_spec(lables=["neg", "pos"])})


def case_unknown_type(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, {"toy": toy_spec(type="clasification")})


def case_unknown_loss(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, {"toy": toy_spec(loss="hinge")})


def case_unknown_metric(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, {"toy": toy_spec(metrics=["accuracy", "bleu"])})


def case_missing_file(tmp_path: Path, _enc: Path) -> Setup:
    s = make_setup(tmp_path)
    (s.data_dir / "toy" / "dev.tsv").unlink()
    return s


def case_wrong_column_count(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, train_tsv=TRAIN_TSV + "one\ttoo\tmany\n")


def case_label_outside_list(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, train_tsv=TRAIN_TSV + "so-so .\tneutral\n")


def case_empty_split(tmp_path: Path, _enc: Path) -> Setup:
    return make_setup(tmp_path, train_tsv="sentence\tlabel\n")


def case_shared_head_width(tmp_path: Path, _enc: Path) -> Setup:
    three = toy_spec(labels=["neg", "neu", "pos"], head="toy")
    return make_setup(tmp_path, {"toy": toy_spec(), "toy3": three})


def case_checkpoint_head_width(tmp_path: Path, encoder: Path) -> Setup:
    """An mtadv checkpoint whose 'toy' head has 3 outputs, continued with a 2-label 'toy' task."""
    s = make_setup(tmp_path)
    checkpoint_with_toy_head(tmp_path / "ckpt", encoder, n_labels=3, task_def=s.task_def)
    s.extra_args = ["--init_checkpoint", str(tmp_path / "ckpt")]
    return s


def checkpoint_with_toy_head(directory: Path, encoder: Path, n_labels: int, task_def: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    labels = [f"l{i}" for i in range(n_labels)]
    task = load_task_defs_from_spec(directory.parent / "wide.yml", {"toy": toy_spec(labels=labels)})["toy"]
    model = MultiTaskModel(AutoModel.from_pretrained(encoder), {"toy": task})
    save_checkpoint(directory, model, AutoTokenizer.from_pretrained(encoder), task_def.read_text(), {})


def load_task_defs_from_spec(path: Path, tasks: dict):
    path.write_text(yaml.safe_dump({"tasks": tasks}))
    return load_task_defs(path)


CASES: dict[str, Callable[[Path, Path], Setup]] = {
    name.removeprefix("case_"): fn for name, fn in dict(globals()).items() if name.startswith("case_")
}


# ---------------------------------------------------------------- unit level: the message


def test_malformed_yaml(tmp_path):
    e = error_of(case_malformed_yaml(tmp_path, None))
    assert str(tmp_path / "tasks.yml") in str(e) and "malformed YAML" in str(e)
    assert "line 3" in str(e)  # the YAML parser's position: where to look


def test_unknown_key(tmp_path):
    e = error_of(case_unknown_key(tmp_path, None))
    assert_names(e, tmp_path / "tasks.yml", "toy", "lables")
    assert "known keys" in str(e) and "'labels'" in str(e)


def test_unknown_key_in_split(tmp_path):
    spec = toy_spec()
    spec["splits"]["train"]["delimiter"] = "\t"
    e = error_of(make_setup(tmp_path, {"toy": spec}))
    assert_names(e, tmp_path / "tasks.yml", "toy", "splits.train.delimiter")


def test_unknown_task_type(tmp_path):
    e = error_of(case_unknown_type(tmp_path, None))
    assert_names(e, tmp_path / "tasks.yml", "toy", "type")
    assert "'clasification'" in str(e) and all(t in str(e) for t in TASK_TYPES.names())


def test_unknown_loss(tmp_path):
    e = error_of(case_unknown_loss(tmp_path, None))
    assert_names(e, tmp_path / "tasks.yml", "toy", "loss")
    assert "'hinge'" in str(e) and "ce" in str(e)


def test_unknown_metric(tmp_path):
    e = error_of(case_unknown_metric(tmp_path, None))
    assert_names(e, tmp_path / "tasks.yml", "toy", "metrics")
    assert "'bleu'" in str(e) and "accuracy" in str(e)


def test_missing_file(tmp_path):
    e = error_of(case_missing_file(tmp_path, None))
    assert_names(e, tmp_path / "data" / "toy" / "dev.tsv", "toy", "splits.dev.path")
    assert "--data_dir" in str(e)


def test_wrong_column_count(tmp_path):
    e = error_of(case_wrong_column_count(tmp_path, None))
    assert_names(e, f"{tmp_path / 'data' / 'toy' / 'train.tsv'}:5", "toy", "splits.train.columns")
    assert "3 columns, expected 2" in str(e)


def test_wrong_column_count_headerless(tmp_path):
    spec = toy_spec()
    spec["splits"]["train"] = {"path": "toy/train.tsv", "header": False, "num_columns": 2, "columns": {"text_a": 0}}
    e = error_of(make_setup(tmp_path, {"toy": spec}, train_tsv="a\tb\nc\td\te\n"))
    assert_names(e, f"{tmp_path / 'data' / 'toy' / 'train.tsv'}:2", "toy", "splits.train.columns")
    assert "num_columns" in str(e)


def test_label_outside_label_list(tmp_path):
    e = error_of(case_label_outside_list(tmp_path, None))
    assert_names(e, f"{tmp_path / 'data' / 'toy' / 'train.tsv'}:5", "toy", "splits.train.label")
    assert "'neutral'" in str(e) and "['neg', 'pos']" in str(e)


def test_empty_split(tmp_path):
    e = error_of(case_empty_split(tmp_path, None))
    assert_names(e, tmp_path / "data" / "toy" / "train.tsv", "toy", "splits.train")
    assert "empty" in str(e)


def test_shared_head_with_different_label_counts(tmp_path):
    e = error_of(case_shared_head_width(tmp_path, None))
    assert_names(e, tmp_path / "tasks.yml", "toy3", "head")
    assert "'toy'" in str(e) and "2 outputs" in str(e) and "has 3" in str(e)


def test_checkpoint_head_width_disagrees_with_labels(tmp_path, tiny_encoder):
    s = case_checkpoint_head_width(tmp_path, tiny_encoder)
    tasks = load_task_defs(s.task_def)
    cfg = RunConfig(train=TrainConfig(init_checkpoint=str(tmp_path / "ckpt")))
    with pytest.raises(ConfigError) as info:
        build_model(cfg, tasks)
    assert_names(info.value, tmp_path / "ckpt" / "heads.safetensors", "toy", "labels")
    assert "shape (3" in str(info.value) and "needs (2" in str(info.value)


def test_checkpoint_heads_of_matching_width_are_loaded(tmp_path, tiny_encoder):
    """The counterpart of the error above: continuing from a checkpoint keeps its heads."""
    from safetensors.torch import load_file

    s = make_setup(tmp_path)
    checkpoint_with_toy_head(tmp_path / "ckpt", tiny_encoder, n_labels=2, task_def=s.task_def)
    cfg = RunConfig(train=TrainConfig(init_checkpoint=str(tmp_path / "ckpt")))
    model, _ = build_model(cfg, load_task_defs(s.task_def))
    saved = load_file(tmp_path / "ckpt" / "heads.safetensors")
    for key, value in model.heads.state_dict().items():
        assert (value == saved[key]).all(), key


def test_unknown_task_on_the_command_line(tmp_path):
    s = make_setup(tmp_path)
    with pytest.raises(ConfigError) as info:
        select_tasks(load_task_defs(s.task_def), "toy,nope", str(s.task_def))
    assert_names(info.value, s.task_def, None, "--tasks")
    assert "'nope'" in str(info.value)


def test_valid_setup_passes(tmp_path):
    """The base of every case above is valid: each error comes from its one change."""
    validate(make_setup(tmp_path))


# ---------------------------------------------------------------- CLI level: exit code, nothing written


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_stops_before_writing_anything(case, tmp_path, tiny_encoder, capsys):
    s = CASES[case](tmp_path, tiny_encoder)
    out = tmp_path / "run"
    args = ["--task_def", str(s.task_def), "--data_dir", str(s.data_dir), "--output_dir", str(out)]
    args += ["--init_checkpoint", str(tiny_encoder), "--max_steps", "1", *s.extra_args]
    assert run_train(args) == 2
    assert not out.exists(), f"{case}: wrote {sorted(p.name for p in out.iterdir())}"
    err = capsys.readouterr().err
    assert "\nerror: " in f"\n{err}" and "Traceback" not in err  # one message, no traceback


@pytest.mark.parametrize(
    "flag,value", [("--metric_for_best", "f1"), ("--metric_for_best", "toy/test/accuracy"), ("--lr_scheduler", "foo")]
)
def test_cli_rejects_bad_flags_before_writing_anything(flag, value, tmp_path, tiny_encoder, capsys):
    s = make_setup(tmp_path)
    out = tmp_path / "run"
    args = ["--task_def", str(s.task_def), "--data_dir", str(s.data_dir), "--output_dir", str(out)]
    assert run_train([*args, "--init_checkpoint", str(tiny_encoder), flag, value]) == 2
    assert not out.exists()
    assert flag in capsys.readouterr().err


# ---------------------------------------------------------------- glue.yml itself

GLUE_LABELS = {
    "cola": ["0", "1"],
    "sst": ["0", "1"],
    "mrpc": ["0", "1"],
    "stsb": None,
    "qqp": ["0", "1"],
    "mnli": ["contradiction", "entailment", "neutral"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["0", "1"],
    "ax": ["contradiction", "entailment", "neutral"],
}
GLUE_SUBMISSIONS = {
    "cola": {"test": "CoLA.tsv"},
    "sst": {"test": "SST-2.tsv"},
    "mrpc": {"test": "MRPC.tsv"},
    "stsb": {"test": "STS-B.tsv"},
    "qqp": {"test": "QQP.tsv"},
    "mnli": {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
    "qnli": {"test": "QNLI.tsv"},
    "rte": {"test": "RTE.tsv"},
    "wnli": {"test": "WNLI.tsv"},
    "ax": {"test": "AX.tsv"},
}
PRIMARY_METRIC = {"cola": "mcc", "mrpc": "f1", "qqp": "f1", "stsb": "pearson", "ax": "mcc"}


def test_glue_yml_describes_all_ten_tasks(glue_sample):
    from conftest import GLUE_YAML

    tasks = load_task_defs(GLUE_YAML)
    assert set(tasks) == set(GLUE_LABELS)
    for name, task in tasks.items():
        assert list(task.labels or []) == (GLUE_LABELS[name] or []), name
        assert task.submission == GLUE_SUBMISSIONS[name], name
        assert task.primary_metric == PRIMARY_METRIC.get(name, "accuracy"), name
        regression = task.type == "regression"
        assert (task.loss, task.adv_loss) == (("mse", "mse") if regression else ("ce", "sym_kl")), name
        for split in task.splits.values():  # the original glue_data/<Task>/<split>.tsv layout exists
            assert (glue_sample / split.path).is_file(), (name, split.path)
    assert tasks["ax"].head == "mnli" and "train" not in tasks["ax"].splits
    assert [s.name for s in tasks["mnli"].dev_splits()] == ["dev_matched", "dev_mismatched"]
    assert [s.name for s in tasks["mnli"].test_splits()] == ["test_matched", "test_mismatched"]
    assert tasks["stsb"].label_range == (0.0, 5.0)
    assert set(select_tasks(tasks, None, str(GLUE_YAML))) == set(GLUE_LABELS) - {"ax"}  # default: has train


def test_glue_yml_reads_every_split_of_the_sample(glue_sample):
    """Every declared split of every GLUE task reads cleanly from the sample (real formats)."""
    from conftest import GLUE_YAML

    from mtadv.data_utils.readers import read_split

    for name, task in load_task_defs(GLUE_YAML).items():
        for split in task.splits.values():
            ds = read_split(task, split.name, str(glue_sample))
            assert len(ds) > 0 and ("label" in ds.column_names) == (not split.is_test), (name, split.name)
