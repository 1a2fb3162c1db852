"""stage_sft_inputs through ``.entrypoint()``: the base model and both example tables in one directory."""

import json
from pathlib import Path

import pandas as pd

from finetune.models.directory import ModelDirectory
from steps.train.stage_sft_inputs import stage_sft_inputs


def test_everything_the_launched_step_reads_is_in_the_directory(tmp_path):
    base = tmp_path / "base"
    (base / "nested").mkdir(parents=True)
    (base / "config.json").write_text('{"model_type": "gpt2"}')
    (base / "nested" / "tokenizer.json").write_text("{}")
    train = pd.DataFrame({"id": ["a", "b"], "prompt": ["p1", "p2"], "response": ["r1", "r2"], "messages": ["", ""]})
    validation = train.iloc[1:]  # a slice keeps its index (1); the staged table must not care

    staged = Path(stage_sft_inputs.entrypoint(ModelDirectory(base, "causal_lm", "tiny gpt2", 4321), train, validation))
    assert (staged / "base_model" / "config.json").read_text() == '{"model_type": "gpt2"}'
    assert (staged / "base_model" / "nested" / "tokenizer.json").is_file()
    assert json.loads((staged / "base_model.json").read_text()) == {"base_model": "tiny gpt2", "num_parameters": 4321}
    pd.testing.assert_frame_equal(pd.read_parquet(staged / "train.parquet"), train)
    pd.testing.assert_frame_equal(pd.read_parquet(staged / "validation.parquet"), validation.reset_index(drop=True))
    assert staged != base and (base / "config.json").is_file()  # a copy: the base directory is untouched
