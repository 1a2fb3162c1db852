"""stage_sft_inputs through ``.entrypoint()``: the base model and both tokenized splits in one directory."""

import json
from pathlib import Path

from datasets import Dataset

from finetune.data.tokenized import read_tokenized, write_tokenized
from finetune.models.directory import ModelDirectory
from steps.train.stage_sft_inputs import stage_sft_inputs


def test_everything_the_launched_step_reads_is_in_the_directory(tmp_path):
    base = tmp_path / "base"
    (base / "nested").mkdir(parents=True)
    (base / "config.json").write_text('{"model_type": "gpt2"}')
    (base / "nested" / "tokenizer.json").write_text("{}")
    train = write_tokenized(Dataset.from_dict({"input_ids": [[1, 2], [3]], "labels": [[-100, 2], [3]]}),
                            {"split": "train", "rows": 2}, tmp_path / "train")
    validation = write_tokenized(Dataset.from_dict({"input_ids": [[4]], "labels": [[4]]}),
                                 {"split": "validation", "rows": 1}, tmp_path / "validation")

    staged = Path(stage_sft_inputs.entrypoint(ModelDirectory(base, "causal_lm", "tiny gpt2", 4321), train, validation))
    assert (staged / "base_model" / "config.json").read_text() == '{"model_type": "gpt2"}'
    assert (staged / "base_model" / "nested" / "tokenizer.json").is_file()
    assert json.loads((staged / "base_model.json").read_text()) == {"base_model": "tiny gpt2", "num_parameters": 4321}
    for name, original in (("train", train), ("validation", validation)):
        copied = read_tokenized(staged / name)
        assert copied.stats == original.stats and copied.load()["input_ids"][:] == original.load()["input_ids"][:]
    assert staged != base and (base / "config.json").is_file()  # a copy: the base directory is untouched
