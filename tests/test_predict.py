"""predict.py: exact GLUE leaderboard files, validation before writing, dev metrics = training's.

Fixtures: tests/fixtures/glue_test_cut holds lines cut from the real GLUE test files (see its
README); checkpoints are built from the tiny random encoder, so the heads are untrained but the
file formats, orders and index values are exactly what a real run produces.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GLUE_YAML, build_tiny_encoder

from mtadv.checkpoint import TEACHER_DIR, load_checkpoint, load_encoder, save_checkpoint
from mtadv.config import RunConfig
from mtadv.data_utils.submission import (
    SubmissionFile,
    build_submission,
    format_prediction,
    publish,
    validate_submission,
)
from mtadv.errors import ConfigError
from mtadv.model import MultiTaskModel
from mtadv.taskdef import load_task_defs
from predict import main as predict_main
from train import main as train_main

CUT = Path(__file__).parent / "fixtures" / "glue_test_cut"
GLUE_FILES = {
    "CoLA.tsv": ("CoLA/test.tsv", "index", ["0", "1"]),
    "SST-2.tsv": ("SST-2/test.tsv", "index", ["0", "1"]),
    "MRPC.tsv": ("MRPC/test.tsv", "index", ["0", "1"]),
    "STS-B.tsv": ("STS-B/test.tsv", "index", None),
    "QQP.tsv": ("QQP/test.tsv", "id", ["0", "1"]),
    "MNLI-m.tsv": ("MNLI/test_matched.tsv", "index", ["entailment", "neutral", "contradiction"]),
    "MNLI-mm.tsv": ("MNLI/test_mismatched.tsv", "index", ["entailment", "neutral", "contradiction"]),
    "QNLI.tsv": ("QNLI/test.tsv", "index", ["entailment", "not_entailment"]),
    "RTE.tsv": ("RTE/test.tsv", "index", ["entailment", "not_entailment"]),
    "WNLI.tsv": ("WNLI/test.tsv", "index", ["0", "1"]),
    "AX.tsv": ("diagnostic/AX.tsv", "index", ["entailment", "neutral", "contradiction"]),
}
STSB_VALUE = re.compile(r"^\d\.\d{3}$")


def make_checkpoint(directory: Path, encoder_dir: Path, tasks: list[str], data_dir: Path = CUT) -> Path:
    """A checkpoint with (untrained) heads for `tasks`, GLUE task definitions and a run config."""
    task_defs = load_task_defs(GLUE_YAML)
    encoder, tokenizer = load_encoder(str(encoder_dir))
    torch.manual_seed(0)
    model = MultiTaskModel(encoder, {t: task_defs[t] for t in tasks})
    cfg = RunConfig()
    cfg.train.data_dir, cfg.train.eval_batch_size = str(data_dir), 4  # several batches per split
    save_checkpoint(directory, model, tokenizer, GLUE_YAML.read_text(), cfg.to_dict())
    return directory


ALL_GLUE = ["cola", "sst", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]


@pytest.fixture(scope="module")
def glue_checkpoint(tmp_path_factory, tiny_encoder) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", tiny_encoder, ALL_GLUE)


@pytest.fixture(scope="module")
def submission(tmp_path_factory, glue_checkpoint) -> Path:
    out = tmp_path_factory.mktemp("submission")
    assert predict_main(["--checkpoint", str(glue_checkpoint), "--output_dir", str(out), "--progress", "false"]) == 0
    return out


def read_tsv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- the files and their format


def test_every_glue_leaderboard_file_is_written_with_its_name(submission):
    written = {p.name for p in submission.glob("*.tsv")}
    assert written == set(GLUE_FILES)
    with zipfile.ZipFile(submission / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(GLUE_FILES)  # at the zip's root, no folders
        for name in GLUE_FILES:
            assert zf.read(name) == (submission / name).read_bytes()


@pytest.mark.parametrize("name", sorted(GLUE_FILES))
def test_file_format_rows_and_index_values_follow_the_test_file(submission, name):
    source, id_column, vocabulary = GLUE_FILES[name]
    test_rows = read_tsv(CUT / source)
    expected_ids = [row[test_rows[0].index(id_column)] for row in test_rows[1:]]
    text = (submission / name).read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == "index\tprediction" and text.endswith("\n") and not text.endswith("\n\n")
    rows = [line.split("\t") for line in lines[1:-1]]
    assert [r[0] for r in rows] == expected_ids  # the file's own index values, in file order
    assert all(len(r) == 2 for r in rows)
    for _, prediction in rows:
        if vocabulary is None:
            assert STSB_VALUE.match(prediction) and 0.0 <= float(prediction) <= 5.0
        else:
            assert prediction in vocabulary


def test_index_values_are_not_row_numbers(submission):
    """The cuts start mid-file: CoLA's first index is 100 and QQP's id column is `id`."""
    assert (submission / "CoLA.tsv").read_text().split("\n")[1].startswith("100\t")
    assert (submission / "AX.tsv").read_text().split("\n")[1].startswith("686\t")
    assert (submission / "QQP.tsv").read_text().split("\n")[1].startswith("0\t")


def test_leaderboard_label_is_the_argmax_of_the_saved_probabilities(submission):
    for name, task, split in [("CoLA.tsv", "cola", "test"), ("MNLI-mm.tsv", "mnli", "test_mismatched")]:
        records = read_jsonl(submission / f"{task}.{split}.jsonl")
        rows = [line.split("\t") for line in (submission / name).read_text().splitlines()[1:]]
        assert [r[0] for r in rows] == [rec["id"] for rec in records]
        for (_, label), rec in zip(rows, records):
            probs = rec["probabilities"]
            assert label == max(probs, key=probs.get) == rec["predicted"]
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_ax_is_predicted_through_the_mnli_head(submission, glue_checkpoint):
    """AX probabilities equal the MNLI head's on the same sentence pairs, computed directly."""
    model, tokenizer, _, _ = load_checkpoint(str(glue_checkpoint))
    ax_rows = read_tsv(CUT / "diagnostic/AX.tsv")[1:]
    batch = tokenizer([r[1] for r in ax_rows], [r[2] for r in ax_rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(dict(batch), task="mnli").softmax(-1).numpy()
    records = read_jsonl(submission / "ax.test.jsonl")
    got = np.array([[rec["probabilities"][k] for k in ("contradiction", "entailment", "neutral")] for rec in records])
    np.testing.assert_allclose(got, probs, atol=1e-5)
    assert model.task_to_head["ax"] == "mnli"


def test_cola_dev_without_header_and_mrpc_dev_with_bom(tmp_path, glue_checkpoint):
    out = tmp_path / "dev"
    argv = ["--checkpoint", str(glue_checkpoint), "--split", "dev", "--tasks", "cola,mrpc"]
    assert predict_main([*argv, "--output_dir", str(out), "--progress", "false"]) == 0
    cola = read_jsonl(out / "cola.dev.jsonl")
    cola_file = read_tsv(CUT / "CoLA/dev.tsv")  # headerless: all 6 lines are examples
    assert [r["gold"] for r in cola] == [row[1] for row in cola_file]
    assert [r["id"] for r in cola] == [str(i) for i in range(len(cola_file))]
    mrpc_file = read_tsv(CUT / "MRPC/dev.tsv")  # header `\ufeffQuality` read as `Quality`
    assert [r["gold"] for r in read_jsonl(out / "mrpc.dev.jsonl")] == [row[0] for row in mrpc_file[1:]]
    metrics = json.loads((out / "metrics.json").read_text())["results"]
    assert set(metrics) == {"cola", "mrpc"} and set(metrics["mrpc"]["dev"]) == {"f1", "accuracy", "top_class_share"}
    assert not list(out.glob("*.tsv")) and not (out / "submission.zip").exists()


def test_task_selection_writes_only_those_tasks(tmp_path, glue_checkpoint):
    out = tmp_path / "out"
    argv = ["--checkpoint", str(glue_checkpoint), "--tasks", "mnli,ax", "--output_dir", str(out), "--progress", "0"]
    assert predict_main(argv) == 0
    assert {p.name for p in out.glob("*.tsv")} == {"MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"}


# ---------------------------------------------------------------- STS-B scores


def test_stsb_scores_are_clipped_and_written_with_three_decimals():
    stsb = load_task_defs(GLUE_YAML)["stsb"]
    assert [format_prediction(stsb, np.float32(v)) for v in (-0.4, 2.34567, 5.8)] == ["0.000", "2.346", "5.000"]


# ---------------------------------------------------------------- validation, nothing written


def _sub(task: str, ids: list[str], rows: list[tuple[str, str]]) -> SubmissionFile:
    return SubmissionFile("X.tsv", load_task_defs(GLUE_YAML)[task], "X/test.tsv", ids, rows)


@pytest.mark.parametrize(
    "sub, reason",
    [
        (_sub("rte", ["7", "8"], [("7", "entailment")]), "1 rows, but the test file has 2"),
        (_sub("rte", ["7", "8"], [("7", "entailment"), ("7", "entailment")]), "index '7' appears 2 times"),
        (_sub("rte", ["7", "8"], [("7", "entailment"), ("9", "entailment")]), "index '8' of the test file has no"),
        (_sub("rte", ["7"], [("7", "neutral")]), "label 'neutral' is not one of"),
        (_sub("stsb", ["7"], [("7", "5.100")]), "outside label_range"),
        (_sub("stsb", ["7"], [("7", "2.5")]), "3 decimals"),
        (_sub("stsb", ["7"], [("7", "nan")]), "not finite"),
        (_sub("rte", ["7", "7"], [("7", "entailment"), ("7", "entailment")]), "test file itself repeats"),
    ],
)
def test_validation_names_the_file_and_the_reason(sub, reason):
    with pytest.raises(ConfigError) as e:
        validate_submission(sub)
    assert "X.tsv" in str(e.value) and reason in str(e.value) and "nothing was written" in str(e.value)


def test_a_valid_submission_passes_validation():
    rte = load_task_defs(GLUE_YAML)["rte"]
    sub = build_submission(rte, "RTE.tsv", "RTE/test.tsv", ["5", "9"], np.array([1, 0]), np.eye(2)[[1, 0]])
    validate_submission(sub)
    assert sub.text() == "index\tprediction\n5\tentailment\n9\tnot_entailment\n"


def _copy_cut(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(CUT, data)
    return data


def _fails_writing_nothing(capsys, argv: list[str], out: Path, *fragments: str) -> None:
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert predict_main([*argv, "--output_dir", str(out), "--progress", "false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(f in err for f in fragments), err
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before


def test_duplicate_index_in_a_test_file_fails_before_anything_is_written(tmp_path, capsys, glue_checkpoint):
    data = _copy_cut(tmp_path)
    rte = data / "RTE/test.tsv"
    lines = rte.read_text().splitlines(keepends=True)
    rte.write_text("".join(lines[:2] + [lines[1]] + lines[3:]))  # index 2000 twice, 2001 gone
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    argv = ["--checkpoint", str(glue_checkpoint), "--data_dir", str(data)]
    _fails_writing_nothing(capsys, argv, out, "RTE.tsv", "repeats index '2000'", str(rte))
    assert (out / "keep.txt").read_text() == "user file"


def test_missing_test_file_fails_naming_it(tmp_path, capsys, glue_checkpoint):
    data = _copy_cut(tmp_path)
    (data / "WNLI/test.tsv").unlink()
    argv = ["--checkpoint", str(glue_checkpoint), "--data_dir", str(data)]
    _fails_writing_nothing(capsys, argv, tmp_path / "out", "WNLI/test.tsv", "splits.test.path", "--data_dir")
    argv = ["--checkpoint", str(glue_checkpoint), "--data_dir", str(data), "--output_dir", str(tmp_path / "out")]
    predict_main(argv)
    hint = capsys.readouterr().err.split("pass --tasks ")[1].split()[0]
    assert set(hint.split(",")) == {"cola", "sst", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "ax"}


def test_task_without_a_head_fails(tmp_path, capsys, tiny_encoder):
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_encoder, ["rte"])
    argv = ["--checkpoint", str(ckpt), "--tasks", "rte,ax"]
    _fails_writing_nothing(capsys, argv, tmp_path / "out", "no head for task 'ax'", "'mnli'", "--tasks")


def test_default_tasks_are_the_checkpoint_heads_and_ax_needs_mnli(tmp_path, tiny_encoder):
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_encoder, ["rte", "stsb"])
    out = tmp_path / "out"
    assert predict_main(["--checkpoint", str(ckpt), "--output_dir", str(out), "--progress", "false"]) == 0
    assert {p.name for p in out.iterdir()} == {
        "RTE.tsv",
        "STS-B.tsv",
        "submission.zip",
        "rte.test.jsonl",
        "stsb.test.jsonl",
    }


def test_not_a_checkpoint_and_unknown_device_fail(tmp_path, capsys, glue_checkpoint):
    _fails_writing_nothing(capsys, ["--checkpoint", str(tmp_path)], tmp_path / "out", "not an mtadv checkpoint")
    if not torch.cuda.is_available():
        argv = ["--checkpoint", str(glue_checkpoint), "--device", "cuda"]
        _fails_writing_nothing(capsys, argv, tmp_path / "out", "CUDA is not available")


# ---------------------------------------------------------------- teacher and task without leaderboard entry


def test_use_teacher_without_a_teacher_fails_clearly(tmp_path, capsys, glue_checkpoint):
    argv = ["--checkpoint", str(glue_checkpoint), "--use_teacher"]
    _fails_writing_nothing(capsys, argv, tmp_path / "out", "--use_teacher", "teacher/", "Drop --use_teacher")


def test_use_teacher_predicts_with_the_teacher_checkpoint(tmp_path, tiny_encoder):
    student = make_checkpoint(tmp_path / "ckpt", tiny_encoder, ["rte"])
    other = build_tiny_encoder(tmp_path / "other-encoder", seed=1)
    make_checkpoint(student / TEACHER_DIR, other, ["rte"])
    runs = {}
    for name, argv in [("student", []), ("teacher", ["--use_teacher"])]:
        out = tmp_path / name
        assert predict_main(["--checkpoint", str(student), *argv, "--output_dir", str(out), "--progress", "0"]) == 0
        runs[name] = [r["probabilities"] for r in read_jsonl(out / "rte.test.jsonl")]
    direct = tmp_path / "direct"
    argv = ["--checkpoint", str(student / TEACHER_DIR), "--output_dir", str(direct), "--progress", "0"]
    assert predict_main(argv) == 0
    assert runs["teacher"] == [r["probabilities"] for r in read_jsonl(direct / "rte.test.jsonl")]
    assert runs["teacher"] != runs["student"]


def test_task_without_leaderboard_entry_gets_jsonl_only(tmp_path, tiny_encoder):
    yaml_text = GLUE_YAML.read_text().replace("    submission:\n      test: RTE.tsv\n", "")
    assert "RTE.tsv" not in yaml_text
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_encoder, ["rte"])
    (ckpt / "task_defs.yml").write_text(yaml_text)
    out = tmp_path / "out"
    assert predict_main(["--checkpoint", str(ckpt), "--output_dir", str(out), "--progress", "false"]) == 0
    assert {p.name for p in out.iterdir()} == {"rte.test.jsonl"}
    assert [r["id"] for r in read_jsonl(out / "rte.test.jsonl")] == ["2000", "2001", "2002", "2003", "2004"]


def test_publish_moves_every_file_in_and_leaves_no_temp_folder(tmp_path):
    out = tmp_path / "out"
    publish({"a.tsv": b"x\n", "b.zip": b"y"}, str(out))
    assert sorted(p.name for p in out.iterdir()) == ["a.tsv", "b.zip"]


# ---------------------------------------------------------------- round trip through training


def _train(tmp_path: Path, tiny_encoder: Path, tasks: str, extra: list[str] | None = None) -> Path:
    run = tmp_path / "run"
    argv = ["--init_checkpoint", str(tiny_encoder), "--tasks", tasks, "--output_dir", str(run)]
    argv += ["--max_steps", "6", "--eval_steps", "2", "--max_train_samples", "48", "--max_eval_samples", "30"]
    argv += ["--batch_size", "8", "--eval_batch_size", "7", "--log_steps", "100", *(extra or [])]
    assert train_main(argv) == 0
    return run


@pytest.mark.integration
def test_dev_metrics_equal_results_json_exactly(tmp_path, tiny_encoder):
    run = _train(tmp_path, tiny_encoder, "rte,stsb,cola,mrpc")
    out = tmp_path / "dev"
    argv = ["--checkpoint", str(run / "best"), "--split", "dev", "--output_dir", str(out), "--progress", "false"]
    assert predict_main(argv) == 0
    reported = json.loads((run / "results.json").read_text())["results"]
    predicted = json.loads((out / "metrics.json").read_text())
    assert predicted["results"] == reported  # exact, float for float
    assert set(reported) == {"rte", "stsb", "cola", "mrpc"}
    assert predicted["examples"]["rte/dev"] == 30  # the run's --max_eval_samples, as training evaluated
    records = read_jsonl(out / "stsb.dev.jsonl")
    assert len(records) == 30 and all(isinstance(r["gold"], float) and "score" in r for r in records)


@pytest.mark.integration
def test_stsb_predictions_are_real_floats_within_range(tmp_path, tiny_encoder):
    run = _train(tmp_path, tiny_encoder, "stsb", ["--learning_rate", "1e-3"])
    out = tmp_path / "test"
    argv = ["--checkpoint", str(run / "best"), "--output_dir", str(out), "--progress", "false"]
    assert predict_main([*argv, "--data_dir", str(CUT.parent.parent.parent / "data" / "glue_sample")]) == 0
    rows = [line.split("\t") for line in (out / "STS-B.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 40
    values = [float(v) for _, v in rows]
    assert all(STSB_VALUE.match(v) for _, v in rows) and all(0.0 <= v <= 5.0 for v in values)
    assert len(set(values)) > 1 and max(values) > 0.0  # not the reference's constant 0


# ---------------------------------------------------------------- the leaderboard-style validator


def _validator():
    path = Path(__file__).parent.parent / "benchmarks" / "validate_submission.py"
    spec = importlib.util.spec_from_file_location("validate_submission", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_independent_validator_accepts_the_submission(submission, capsys):
    assert _validator().main(["--zip", str(submission / "submission.zip"), "--glue_dir", str(CUT)]) == 0
    assert "PASS: 11 leaderboard files" in capsys.readouterr().out


def test_independent_validator_rejects_a_tampered_zip(submission, tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(submission / "submission.zip") as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name).decode()
            if name == "RTE.tsv":
                data = data.replace("2003\t", "2002\t")
            if name != "WNLI.tsv":
                dst.writestr(name if name != "AX.tsv" else "sub/AX.tsv", data)
    assert _validator().main(["--zip", str(bad), "--glue_dir", str(CUT)]) == 1
    out = capsys.readouterr().out
    assert "repeated indices: ['2002']" in out and "WNLI.tsv" in out and "'sub/AX.tsv'" in out


@pytest.mark.integration
def test_teacher_dev_metrics_equal_the_teacher_results_training_reported(tmp_path, tiny_encoder):
    """A run with the EMA teacher saves best/teacher/; --use_teacher reproduces results.json's teacher metrics."""
    run = _train(tmp_path, tiny_encoder, "rte,stsb", ["--bregman_mu", "1", "--eval_with_teacher"])
    reported = json.loads((run / "results.json").read_text())
    outs = {}
    for name, extra in [("student", []), ("teacher", ["--use_teacher"])]:
        out = tmp_path / name
        argv = ["--checkpoint", str(run / "best"), "--split", "dev", "--output_dir", str(out), "--progress", "0"]
        assert predict_main([*argv, *extra]) == 0
        outs[name] = json.loads((out / "metrics.json").read_text())["results"]
    assert outs["student"] == reported["results"]
    assert outs["teacher"] == reported["teacher"]["results"]
    assert outs["teacher"] != outs["student"]  # really another model
