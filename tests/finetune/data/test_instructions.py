import json

import pandas as pd
import pytest

from finetune.data.demo_text import write_demo_instructions
from finetune.data.instructions import load_instruction_data, read_instruction_file, render_example, split_frame
from finetune.data.types import DataFormatError
from finetune.params import DemoInstructions, InstructionDataParams, InstructionFile, TinyGpt2Model


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_three_layouts_normalise_to_the_same_turns(tmp_path):
    rows = [
        json.dumps({"prompt": "add 2 and 3", "response": "5"}),
        "",
        json.dumps({"prompt": "add 1 and 1", "completion": "2"}),
        json.dumps({"instruction": "add", "input": "4 and 4", "output": "8"}),
        json.dumps({"instruction": "say hi", "input": "", "output": "hi"}),
        json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q1"},
                                 {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                                 {"role": "assistant", "content": "a2"}]}),
    ]
    frame = read_instruction_file(_write(tmp_path / "d.jsonl", rows))
    assert frame["id"].tolist() == ["d-1", "d-3", "d-4", "d-5", "d-6"]  # blank line 2 skipped, ids keep line numbers
    assert frame["prompt"].tolist() == ["add 2 and 3", "add 1 and 1", "add\n\n4 and 4", "say hi", "q2"]
    assert frame["response"].tolist() == ["5", "2", "8", "hi", "a2"]
    assert len(json.loads(frame["messages"].iloc[4])) == 5


def test_json_array_reports_the_line_of_the_bad_record(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text('[\n  {"instruction": "a", "input": "", "output": "b"},\n  {"instruction": "c",\n'
                    '   "input": "", "output": ""}\n]\n')
    with pytest.raises(DataFormatError, match=r"alpaca\.json:3: Alpaca record has no 'output'$"):
        read_instruction_file(path)
    path.write_text('[{"prompt": "a", "response": "b"},\n {"prompt": "c", "response": "d"}]')
    assert read_instruction_file(path)["id"].tolist() == ["alpaca-1", "alpaca-2"]


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"d\.jsonl:2: invalid JSON"),
    ('["a", "b"]', r"d\.jsonl:2: expected a JSON object, got list"),
    ('{"question": "x"}', r"d\.jsonl:2: unknown record layout with keys \['question'\]"),
    ('{"prompt": "x", "response": 3}', r"d\.jsonl:2: 'prompt' and 'response' must both be strings"),
    ('{"messages": [{"role": "user", "content": "x"}]}', r"d\.jsonl:2: the last message must be a non-empty assistant"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', r"d\.jsonl:2: messages\[0\] needs a role"),
    ('{"instruction": "x", "input": 5, "output": "y"}', r"d\.jsonl:2: Alpaca field 'input' must be a string"),
])
def test_malformed_records_fail_with_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "d.jsonl", [json.dumps({"prompt": "ok", "response": "ok"}), line])
    with pytest.raises(DataFormatError, match=message) as info:
        read_instruction_file(path)
    assert "\n" not in str(info.value)


def test_invalid_utf8_and_empty_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff", "response": "b"}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_instruction_file(bad)
    with pytest.raises(DataFormatError, match=r"empty\.jsonl:1: no records"):
        read_instruction_file(_write(tmp_path / "empty.jsonl", [""]))


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    params = InstructionDataParams(source=DemoInstructions(output_dir=tmp_path, num_examples=50),
                                   validation_fraction=0.1, test_fraction=0.2, split_seed=3)
    train, val, test = load_instruction_data(params)
    assert (len(train), len(val), len(test)) == (35, 5, 10)  # 50 × 0.1 = 5, 50 × 0.2 = 10, the rest trains
    ids = [set(f["id"]) for f in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]) and len(set.union(*ids)) == 50
    again = load_instruction_data(params)
    assert again[2]["id"].tolist() == test["id"].tolist()
    other = load_instruction_data(params.model_copy(update={"split_seed": 4}))
    assert other[2]["id"].tolist() != test["id"].tolist()
    with pytest.raises(ValueError, match="too few"):
        split_frame(train.iloc[:2], 0.4, 0.4, 0)


@pytest.mark.parametrize("layout", ["prompt_response", "alpaca", "messages"])
def test_demo_layouts_go_through_the_real_loader(tmp_path, layout):
    path = write_demo_instructions(tmp_path, layout, num_examples=20, seed=1)
    frame = read_instruction_file(path)
    reference = read_instruction_file(write_demo_instructions(tmp_path / "pr", "prompt_response", 20, 1))
    assert frame["response"].tolist() == reference["response"].tolist()
    if layout == "alpaca":  # the reversal task's words move to Alpaca's "input" and come back after a blank line
        assert {p.replace("\n\n", ": ") for p in frame["prompt"]} == set(reference["prompt"])
    else:
        assert frame["prompt"].tolist() == reference["prompt"].tolist()


def test_render_with_text_template_and_chat_template(tmp_path):
    from finetune.models.causal import build_tiny_causal_lm, load_causal_lm

    _, tok = load_causal_lm(build_tiny_causal_lm(TinyGpt2Model(), tmp_path / "m", ["hello world"] * 5))
    turns = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert render_example(turns, "Q: {prompt}\nA: ", tok) == ("Q: 2+2?\nA: ", "4<|endoftext|>")
    prompt, completion = render_example([{"role": "system", "content": "brief"}] + turns, "chat", tok)
    assert prompt == "<|system|>\nbrief<|endoftext|>\n<|user|>\n2+2?<|endoftext|>\n<|assistant|>\n"
    assert completion == "4<|endoftext|>"  # the template's trailing newline after EOS is dropped
    with pytest.raises(ValueError, match="3 turns.*template: chat"):
        render_example([{"role": "system", "content": "brief"}] + turns, "Q: {prompt}", tok)


def test_params_reject_template_without_placeholder(tmp_path):
    with pytest.raises(ValueError, match="template: needs a '{prompt}' placeholder"):
        InstructionDataParams(source=InstructionFile(path=tmp_path / "x.jsonl"), template="no placeholder")


def test_hub_instructions_loader_reads_a_dataset_directory(tmp_path):
    """The hub path through ``datasets.load_dataset`` (a local dataset folder stands in for a hub repo offline)."""
    from finetune.params import HubInstructions

    folder = tmp_path / "alpaca"
    folder.mkdir()
    rows = [{"instruction": f"say {i}", "input": "", "output": str(i)} for i in range(10)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    params = InstructionDataParams(source=HubInstructions(dataset=str(folder), revision="main"),
                                   validation_fraction=0.1, test_fraction=0.1)
    train, val, test = load_instruction_data(params)
    assert len(train) == 8 and sorted(pd.concat([train, val, test])["response"]) == sorted(str(i) for i in range(10))


def test_seed_tasks_give_one_example_per_instance_and_extra_files_are_appended(tmp_path):
    """Self-instruct seed tasks (``instruction`` + ``instances``) as ../shared/evaldata/alpaca/seed_tasks.jsonl ships
    them: a task with two instances is two examples (ids ``-<line>.<k>``), one with one instance keeps ``-<line>``."""
    seeds = _write(tmp_path / "seed.jsonl", [
        json.dumps({"id": "seed_task_0", "instruction": "double it", "instances": [{"input": "2", "output": "4"},
                                                                                  {"input": "5", "output": "10"}]}),
        json.dumps({"id": "seed_task_1", "instruction": "greet", "instances": [{"input": "", "output": "hello"}]}),
    ])
    frame = read_instruction_file(seeds)
    assert frame["id"].tolist() == ["seed-1.0", "seed-1.1", "seed-2"]
    assert frame["prompt"].tolist() == ["double it\n\n2", "double it\n\n5", "greet"]
    assert frame["response"].tolist() == ["4", "10", "hello"]
    alpaca = _write(tmp_path / "alpaca.jsonl", [json.dumps({"instruction": "say hi", "input": "", "output": "hi"})])
    params = InstructionDataParams(source=InstructionFile(path=alpaca, extra_paths=(seeds,)), validation_fraction=0.0,
                                   test_fraction=0.0)
    train, _, _ = load_instruction_data(params)
    assert sorted(train["id"]) == ["alpaca-1", "seed-1.0", "seed-1.1", "seed-2"]
    bad = _write(tmp_path / "bad.jsonl", [json.dumps({"instruction": "x", "instances": []})])
    with pytest.raises(DataFormatError, match=r"bad.jsonl:1: 'instances' must be a non-empty list"):
        read_instruction_file(bad)
