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
