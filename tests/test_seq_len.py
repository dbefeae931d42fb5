"""--max_seq_len beyond the encoder's position table fails before anything is written."""

from __future__ import annotations

import pytest
from transformers import BertConfig, RobertaConfig

from mtadv.build import check_seq_len, position_limit
from mtadv.cli import run_train
from mtadv.errors import ConfigError


def test_position_limit_of_absolute_and_offset_encoders():
    assert position_limit(BertConfig(max_position_embeddings=160)) == 160
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512


def test_too_long_max_seq_len_names_the_flag_and_the_fix():
    with pytest.raises(ConfigError) as info:
        check_seq_len(513, BertConfig(max_position_embeddings=512), "some/encoder")
    msg = str(info.value)
    assert "--max_seq_len" in msg and "some/encoder" in msg and "--max_seq_len 512 or less" in msg
    check_seq_len(512, BertConfig(max_position_embeddings=512), "some/encoder")  # the limit itself is fine


def test_cli_refuses_before_writing_the_output_dir(tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--tasks", "rte", "--init_checkpoint", str(tiny_encoder), "--output_dir", str(out)]
    argv += ["--max_seq_len", "200", "--max_steps", "1", "--device", "cpu"]  # tiny encoder: 160 positions
    assert run_train(argv) == 2
    assert "--max_seq_len 160 or less" in capsys.readouterr().err
    assert not out.exists()
