"""Bad-input matrix, round 2: cases a hostile-user test found failing late or unclearly, each now ONE early line.

Directories given as data files, same-named files in different folders, demo writers pointed at a user's own
folder, truncated safetensors, ``max_length`` beyond the model's positions, and SFT prompts that fill
``max_length``. Real readers and tiny models built from config, as in ``test_bad_inputs.py``; no pipeline runs.
"""

import logging
import shutil
from pathlib import Path

import pytest

from finetune.data.arc import load_arc_jsonl, write_demo_arc
from finetune.data.demo import DEMO_MARKER, write_demo_msmarco
from finetune.data.demo_text import write_demo_corpus, write_demo_instructions
from finetune.data.instructions import fingerprint_instructions, read_instruction_file
from finetune.data.msmarco import load_msmarco_files, read_collection, read_qrels, read_triples, sha256_file
from finetune.data.preferences import read_preferences, write_demo_preferences
from finetune.data.rag_demo import write_demo_rag
from finetune.data.ranking import fingerprint_sources, load_ranking_data
from finetune.data.text import read_text_lines
from finetune.data.types import DataFormatError
from finetune.params import InstructionDataParams, RankingDataParams

COLLECTION = "1\tparis is the capital of france\n2\tberlin is the capital of germany\n3\tthe cat sat\n"
QUERIES = "10\tcapital of france\n11\tcapital of germany\n"
QRELS = "10 0 1 1\n11 0 2 1\n"
TEXTS = [f"the cat number {i} sat on the mat near the river" for i in range(40)]


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


def _files(folder: Path, queries: str = QUERIES, qrels: str = QRELS) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"collection": folder / "collection.tsv", "queries": folder / "queries.tsv", "qrels": folder / "qrels.tsv"}
    for path, text in zip(paths.values(), (COLLECTION, queries, qrels), strict=True):
        path.write_text(text)
    return paths


# ------------------------------------------------------------------------------------- 1. directories as files


@pytest.mark.parametrize(("reader", "expected"), [
    (read_collection, "the collection TSV file"),
    (read_qrels, "the TREC qrels file"),
    (read_triples, "the triples TSV file"),
    (read_instruction_file, "a JSONL or JSON file of prompt/response records"),
    (read_text_lines, "a UTF-8 text file"),
    (load_arc_jsonl, "an ARC-format JSONL file"),
    (read_preferences, "a preference JSONL file"),
    (sha256_file, "a data file"),
], ids=["collection", "qrels", "triples", "instructions", "text", "arc", "preferences", "fingerprint"])
def test_a_directory_given_as_a_data_file_says_it_is_a_directory(tmp_path, reader, expected):
    with pytest.raises(DataFormatError) as caught:
        reader(tmp_path)
    assert _one_line(caught.value) == f"{tmp_path}: is a directory, expected {expected}"


def test_msmarco_files_collection_directory_is_named_by_its_role_when_fingerprinted(tmp_path):
    files = _files(tmp_path / "data")
    folder = tmp_path / "collection_dir"
    folder.mkdir()
    params = RankingDataParams(train={"kind": "msmarco_files", **{**files, "collection": folder}})
    with pytest.raises(DataFormatError) as caught:
        fingerprint_sources(params)  # the cheap step that runs first in every ranking pipeline
    assert _one_line(caught.value) == f"{folder}: is a directory, expected the collection TSV file"
    with pytest.raises(DataFormatError) as caught:
        load_msmarco_files(folder, files["queries"], files["qrels"])
    assert _one_line(caught.value) == f"{folder}: is a directory, expected the collection TSV file"


def test_instruction_file_directory_is_refused_by_the_fingerprint(tmp_path):
    params = InstructionDataParams(source={"kind": "file", "path": tmp_path})
    with pytest.raises(DataFormatError) as caught:
        fingerprint_instructions(params)
    assert _one_line(caught.value) == (
        f"{tmp_path}: is a directory, expected a JSONL or JSON file of prompt/response records")


def test_a_missing_file_is_still_no_such_file(tmp_path):
    with pytest.raises(DataFormatError) as caught:
        read_collection(tmp_path / "nope.tsv")
    assert _one_line(caught.value) == f"{tmp_path / 'nope.tsv'}: no such file"


# ------------------------------------------------------------------------- 2. same base name, different folders


def test_train_and_eval_files_with_the_same_names_in_different_folders_both_load(tmp_path):
    train = _files(tmp_path / "a")
    evaluation = _files(tmp_path / "b", queries="20\tcapital of france?\n21\tthe cat\n", qrels="20 0 1 1\n21 0 3 1\n")
    params = RankingDataParams(train={"kind": "msmarco_files", **train},
                               eval={"kind": "msmarco_files", **evaluation})
    digests = fingerprint_sources(params)
    assert digests["train/queries"] != digests["eval/queries"]
    train_set, eval_set = load_ranking_data(params)
    assert set(train_set.fingerprints) == {str(p) for p in train.values()}
    assert set(eval_set.fingerprints) == {str(p) for p in evaluation.values()}
    assert sorted(eval_set.queries) == ["20", "21"]


def test_one_source_whose_files_share_a_base_name_loads_keyed_by_path(tmp_path):
    """Previously refused ("the files need distinct base names"): fingerprints are now keyed by path."""
    paths = {role: tmp_path / role / "data.tsv" for role in ("collection", "queries", "qrels")}
    for path, text in zip(paths.values(), (COLLECTION, QUERIES, QRELS), strict=True):
        path.parent.mkdir()
        path.write_text(text)
    ranking_set = load_msmarco_files(**paths)
    assert ranking_set.fingerprints == {str(p): sha256_file(p) for p in paths.values()}


# ------------------------------------------------------------------------------ 3. demo writers and user folders

DEMO_WRITERS = {
    "msmarco": lambda out: write_demo_msmarco(out, num_queries=3, passages_per_query=2),
    "rag": lambda out: write_demo_rag(out, num_queries=3, passages_per_query=2),
    "instructions": lambda out: write_demo_instructions(out, num_examples=4),
    "corpus": lambda out: write_demo_corpus(out, num_documents=3),
    "preferences": lambda out: write_demo_preferences(out, num_pairs=4),
    "arc": lambda out: write_demo_arc(out, num_questions=4),
}


@pytest.mark.parametrize("writer", DEMO_WRITERS.values(), ids=DEMO_WRITERS.keys())
def test_demo_writer_refuses_a_folder_of_user_files_and_leaves_them_alone(tmp_path, writer):
    user = tmp_path / "my_data"
    user.mkdir()
    (user / "collection.tsv").write_text("1\tmy own passage\n")
    (user / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError) as caught:
        writer(user)
    assert _one_line(caught.value) == (
        f"{user}: demo output_dir holds files the demo did not write (collection.tsv, 2 in all); point output_dir "
        f"at a new or empty folder so they are not overwritten")
    assert (user / "collection.tsv").read_text() == "1\tmy own passage\n"
    assert sorted(p.name for p in user.iterdir()) == ["collection.tsv", "notes.txt"]


@pytest.mark.parametrize("writer", DEMO_WRITERS.values(), ids=DEMO_WRITERS.keys())
def test_demo_writer_reruns_into_its_own_folder_and_uses_an_empty_one(tmp_path, writer):
    empty = tmp_path / "empty"
    empty.mkdir()
    writer(empty)
    assert (empty / DEMO_MARKER).is_file()
    writer(empty)  # a re-run (the demo configs write .demo_data/... every time) is fine
    for other in DEMO_WRITERS.values():
        other(empty)  # several demo sources sharing one folder are fine too


def test_demo_output_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "collection.tsv"
    path.write_text("1\tmine\n")
    with pytest.raises(NotADirectoryError) as caught:
        write_demo_msmarco(path)
    assert _one_line(caught.value) == (
        f"{path}: demo output_dir is a file; point output_dir at a new or empty folder")


# ------------------------------------------------------------------------------------ 4. truncated safetensors


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    from finetune.models.causal import build_tiny_causal_lm
    from finetune.params import TinyGpt2Model

    return build_tiny_causal_lm(TinyGpt2Model(vocab_size=320), tmp_path_factory.mktemp("gpt2"), TEXTS)


TRUNCATED = "Error while deserializing header: incomplete metadata, file not fully covered"


@pytest.mark.parametrize("loader", ["resolve_causal_model", "load_causal_lm", "resolve_model"])
def test_truncated_safetensors_is_named_by_path(tmp_path, tiny_gpt2_dir, loader):
    from finetune.models.causal import load_causal_lm, resolve_causal_model
    from finetune.models.sources import resolve_model
    from finetune.params import LocalModel

    broken = shutil.copytree(tiny_gpt2_dir, tmp_path / "model")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut off half-way
    call = {
        "resolve_causal_model": lambda: resolve_causal_model(LocalModel(path=broken), tmp_path),
        "load_causal_lm": lambda: load_causal_lm(broken),
        "resolve_model": lambda: resolve_model(LocalModel(path=broken), tmp_path),
    }[loader]
    with pytest.raises(ValueError) as caught:
        call()
    assert _one_line(caught.value) == (
        f"{weights}: not a readable safetensors file ({TRUNCATED}); re-download or re-save the model")


def test_garbage_safetensors_is_named_by_path(tmp_path, tiny_gpt2_dir):
    from finetune.models.causal import load_causal_lm

    broken = shutil.copytree(tiny_gpt2_dir, tmp_path / "model")
    (broken / "model.safetensors").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ValueError) as caught:
        load_causal_lm(broken)
    assert _one_line(caught.value).startswith(f"{broken / 'model.safetensors'}: not a readable safetensors file (")


# ---------------------------------------------------------------------------- 5. max_length beyond positions


def test_sft_max_length_beyond_the_models_positions_fails_before_training(tmp_path):
    from finetune.data.instructions import examples_frame
    from finetune.generation.training import sft_setup
    from finetune.params import SftParams

    frame = examples_frame([(f"e{i}", [{"role": "user", "content": t}, {"role": "assistant", "content": "yes"}])
                            for i, t in enumerate(TEXTS[:8])])
    params = SftParams(model={"kind": "tiny_gpt2", "max_position_embeddings": 64}, method={"name": "full"},
                       training={"max_length": 128, "max_steps": 1, "device": "cpu", "precision": "fp32"})
    with pytest.raises(ValueError) as caught:
        sft_setup(frame, frame.iloc[:0], "{prompt}\n", params, tmp_path)
    model = tmp_path / "base" / "tiny_gpt2"
    assert _one_line(caught.value) == (
        f"training.max_length (128) exceeds the model's 64 positions (max_position_embeddings of {model}); "
        f"lower training.max_length to at most 64")
    assert not (tmp_path / "checkpoints").exists()


def test_bert_and_roberta_position_limits():
    """BERT uses all 512 positions; RoBERTa's 514 embeddings start at pad_token_id + 1 = 2, so 512 are usable."""
    from transformers import BertConfig, RobertaConfig

    from finetune.models.sources import check_max_length

    check_max_length(BertConfig(max_position_embeddings=512), 512, "training.max_length", "bert")
    with pytest.raises(ValueError) as caught:
        check_max_length(BertConfig(max_position_embeddings=512), 1024, "training.max_length", "bert")
    assert _one_line(caught.value) == ("training.max_length (1024) exceeds the model's 512 positions "
                                       "(max_position_embeddings of bert); lower training.max_length to at most 512")
    check_max_length(RobertaConfig(max_position_embeddings=514), 512, "training.max_length", "roberta")
    with pytest.raises(ValueError) as caught:
        check_max_length(RobertaConfig(max_position_embeddings=514), 514, "training.max_length", "roberta")
    assert _one_line(caught.value) == (
        "training.max_length (514) exceeds the model's 512 positions (max_position_embeddings 514 of roberta minus 2 "
        "for its padding offset); lower training.max_length to at most 512")


def test_cross_encoder_max_length_beyond_positions_fails_before_training(tmp_path):
    import pandas as pd

    from finetune.params import CrossEncoderParams
    from finetune.ranking.cross_encoder import train_cross_encoder

    pairs = pd.DataFrame({"qid": ["1", "1"], "query": ["cat", "cat"], "passage": ["the cat sat", "a dog ran"],
                          "label": [1.0, 0.0]})
    params = CrossEncoderParams(
        model={"kind": "tiny_bert", "max_position_embeddings": 64}, loss="bce",
        training={"max_length": 128, "max_steps": 1, "device": "cpu", "precision": "fp32"})
    with pytest.raises(ValueError) as caught:
        train_cross_encoder(pairs, params, tmp_path)
    assert _one_line(caught.value) == (
        f"training.max_length (128) exceeds the model's 64 positions (max_position_embeddings of "
        f"{tmp_path / 'base' / 'tiny_bert'}); lower training.max_length to at most 64")


# ------------------------------------------------------------------------- 6. SFT prompts that fill max_length


def _long_prompt_setup(tmp_path, long_prompts: int, total: int = 8):
    from finetune.data.instructions import examples_frame
    from finetune.generation.training import sft_setup
    from finetune.params import SftParams

    prompts = [" ".join(TEXTS[:6]) if i < long_prompts else "the cat" for i in range(total)]  # ~60 words vs 2
    frame = examples_frame([(f"e{i}", [{"role": "user", "content": p}, {"role": "assistant", "content": "yes"}])
                            for i, p in enumerate(prompts)])
    params = SftParams(model={"kind": "tiny_gpt2"}, method={"name": "full"},
                       training={"max_length": 16, "max_steps": 1, "device": "cpu", "precision": "fp32"})
    return sft_setup(frame, frame.iloc[:0], "{prompt}\n", params, tmp_path)


def test_sft_prompts_that_all_fill_max_length_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError) as caught:
        _long_prompt_setup(tmp_path, long_prompts=8)
    assert _one_line(caught.value) == (
        "train: all 8 examples have prompts of at least training.max_length (16) tokens, leaving no completion token "
        "to train on; raise training.max_length or shorten the prompts")


def test_sft_prompts_that_fill_max_length_are_dropped_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="finetune.generation.throughput"):
        setup = _long_prompt_setup(tmp_path, long_prompts=3)
    assert len(setup.trainer.train_dataset) == 5
    assert setup.tokenization["train"]["dropped_no_completion"] == 3
    assert ("train: dropped 3 of 8 examples whose prompt fills training.max_length (16) tokens (no completion token "
            "left to train on)") in caplog.messages
