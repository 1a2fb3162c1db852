from pathlib import Path

from finetune.data.types import RankingSet, TrecRun
from finetune.models.directory import ModelDirectory
from materializers import ModelDirectoryMaterializer, RankingSetMaterializer, TrecRunMaterializer


def test_ranking_set_round_trips_in_official_formats(tmp_path, toy_ranking, zenml_client):
    data = RankingSet("toy", toy_ranking.corpus, toy_ranking.queries, toy_ranking.qrels,
                      run={"1": {"10": 2.5, "11": -1.0}}, fingerprints={"collection": "ab" * 32})
    m = RankingSetMaterializer(str(tmp_path))
    m.save(data)
    assert (tmp_path / "qrels.txt").read_text().splitlines()[0] == "1 0 10 2"
    assert (tmp_path / "run.trec").read_text().splitlines() == ["1 Q0 10 1 2.5 source", "1 Q0 11 2 -1.0 source"]
    loaded = m.load(RankingSet)
    assert loaded == data
    assert m.extract_metadata(data)["judgments"] == 9  # 3 + 2 + 2 + 2


def test_a_collection_is_written_by_pid_and_loads_over_the_artifact_file(tmp_path, toy_ranking, zenml_client):
    """An official-format collection comes back as a Collection reading the artifact's own collection.tsv."""
    from finetune.data.collection import Collection
    from finetune.data.msmarco import read_collection, write_collection

    write_collection(toy_ranking.corpus, tmp_path / "source.tsv")
    data = RankingSet("toy", read_collection(tmp_path / "source.tsv"), toy_ranking.queries, toy_ranking.qrels)
    as_dict = RankingSet("toy", dict(toy_ranking.corpus), toy_ranking.queries, toy_ranking.qrels)
    for name, ranking_set in (("collection", data), ("dict", as_dict), ("odd", None)):
        (tmp_path / name).mkdir()
        if ranking_set is not None:
            RankingSetMaterializer(str(tmp_path / name)).save(ranking_set)
    written = (tmp_path / "collection" / "collection.tsv").read_bytes()
    assert written == (tmp_path / "dict" / "collection.tsv").read_bytes()

    loaded = RankingSetMaterializer(str(tmp_path / "collection")).load(RankingSet)

    assert isinstance(loaded.corpus, Collection) and loaded.corpus.path == tmp_path / "collection" / "collection.tsv"
    assert loaded == as_dict
    odd = RankingSet("odd", {"p1": "x", "2": "  "}, {"1": "q"}, {"1": {"p1": 1}})  # not an MS MARCO collection
    RankingSetMaterializer(str(tmp_path / "odd")).save(odd)
    assert RankingSetMaterializer(str(tmp_path / "odd")).load(RankingSet).corpus == {"2": "  ", "p1": "x"}


def test_trec_run_is_a_real_run_file(tmp_path, zenml_client):
    run = TrecRun("bm25", {"q2": {"b": 1.0, "a": 1.0}, "q1": {"x": 0.1234567890123}})
    m = TrecRunMaterializer(str(tmp_path))
    m.save(run)
    assert (tmp_path / "run.trec").read_text().splitlines() == [
        "q1 Q0 x 1 0.1234567890123 bm25", "q2 Q0 a 1 1.0 bm25", "q2 Q0 b 2 1.0 bm25"]
    assert m.load(TrecRun) == run  # repr() keeps full float precision


def test_model_directory_is_stored_file_by_file(tmp_path, zenml_client):
    src = tmp_path / "src"
    (src / "1_Pooling").mkdir(parents=True)
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.arange(6, dtype=torch.float32)}, src / "model.safetensors")  # loads check the header
    weights = (src / "model.safetensors").read_bytes()
    (src / "config.json").write_text("{}")
    (src / "1_Pooling" / "config.json").write_text('{"pooling": "mean"}')
    uri = tmp_path / "artifact"
    m = ModelDirectoryMaterializer(str(uri))
    m.save(ModelDirectory(src, "cross_encoder", "tiny", 42))
    assert (uri / "model" / "model.safetensors").read_bytes() == weights
    loaded = m.load(ModelDirectory)
    assert loaded.files() == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert (Path(loaded.path) / "1_Pooling" / "config.json").read_text() == '{"pooling": "mean"}'
    assert (loaded.kind, loaded.base_model, loaded.num_parameters) == ("cross_encoder", "tiny", 42)


class _Tokenizer:
    eos_token, bos_token = "</s>", None

    def get_vocab(self):
        return {"</s>": 0, "a": 1, "b": 2}


def test_tokenized_dataset_round_trips_memory_mapped_with_a_histogram_page(tmp_path, zenml_client):
    from datasets import Dataset

    from finetune.data.tokenized import TokenizedDataset, split_stats, write_tokenized
    from materializers import TokenizedDatasetMaterializer

    ids = [[1, 2, 0], [2, 2, 1], [1, 0]]
    labels = [[-100, 2, 0], [-100, -100, 1], [-100, 0]]
    stats = split_stats("sft", "train", _Tokenizer(), "fake", 3, [3, 5, 2], 3, 8, 3, 1, 1 / 3,
                        completion_only=True, template="{prompt}", dropped_no_completion=0)
    written = write_tokenized(Dataset.from_dict({"input_ids": ids, "labels": labels}), stats, tmp_path / "src")
    uri = tmp_path / "artifact"
    m = TokenizedDatasetMaterializer(str(uri))
    m.save(written)
    loaded = m.load(TokenizedDataset)
    dataset = loaded.load()
    assert dataset["input_ids"][:] == ids and dataset["labels"][:] == labels and loaded.stats == stats
    # Memory-mapped from the artifact store's own files, not copied.
    assert all(Path(f["filename"]).parent == uri / "dataset" for f in dataset.cache_files) and dataset.cache_files
    assert loaded.fingerprint() == written.fingerprint()
    metadata = m.extract_metadata(loaded)
    assert (metadata["rows"], metadata["tokens"], metadata["truncation_rate"]) == (3, 8, 0.3333)
    page_path, = m.save_visualizations(loaded)
    page = Path(page_path).read_text()
    assert "data:image/png;base64," in page and "truncation rate" in page and "Tokenized train (sft)" in page
