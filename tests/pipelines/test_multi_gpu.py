"""Multi-GPU pipeline variants: the same steps as the originals, and a CPU run through accelerate launch.

On CPU accelerate starts one process, so the run proves the wiring (staging through the artifact store, the
launched script, outputs back into ZenML) and not data parallelism, which needs GPUs.
"""

import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _prepared(name: str, config: Path):
    import inspect

    from pydantic import TypeAdapter

    from cli.config_check import pipelines_by_name

    pipe = pipelines_by_name()[name]
    signature = inspect.signature(pipe.entrypoint)
    given = yaml.safe_load(config.read_text())["parameters"]
    pipe.prepare(**{k: TypeAdapter(signature.parameters[k].annotation).validate_python(v) for k, v in given.items()})
    return {invocation.step.name for invocation in pipe.invocations.values()}


@pytest.mark.parametrize(("original", "replaced", "added"), [
    ("cross_encoder_training", {"train_cross_encoder"}, {"stage_train_pairs", "train_cross_encoder_multi_gpu"}),
    ("sft_training", {"train_sft_model"}, {"stage_sft_inputs", "train_sft_model_multi_gpu"}),
])
def test_variant_has_the_original_steps_with_the_training_step_swapped(original, replaced, added):
    config = ROOT / "configs" / "demo" / f"{original}.yaml"
    steps, variant = _prepared(original, config), _prepared(f"{original}_multi_gpu", config)
    assert replaced <= steps and not added & steps
    assert variant == (steps - replaced) | added


def test_sft_variant_refuses_qlora_in_its_params_before_anything_runs(tmp_path):
    from cli.config_check import validate_config

    config = yaml.safe_load((ROOT / "configs" / "demo" / "sft_training.yaml").read_text())
    config["parameters"]["sft"]["method"] = {"name": "qlora"}
    path = tmp_path / "sft_training_multi_gpu.yaml"
    path.write_text(yaml.safe_dump(config))
    assert validate_config(path) == [f"{path}: parameters.sft: Value error, method: qlora is single-GPU only; run "
                                     "sft_training with a GPU config instead"]
    assert validate_config(path, pipeline_name="sft_training") == []  # one GPU: QLoRA is fine


@pytest.mark.slow
def test_cross_encoder_variant_runs_end_to_end_on_cpu(tmp_path, zenml_client, monkeypatch):
    from finetune.data.demo import write_demo_msmarco
    from pipelines.multi_gpu import cross_encoder_training_multi_gpu

    monkeypatch.chdir(ROOT)  # accelerate's generated script imports the project from the working directory
    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    config = {
        "model": {"name": f"reranker_{uuid.uuid4().hex[:8]}"},
        "parameters": {
            "data": {"train": {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries",
                                                                                      "qrels")}},
                     "eval_fraction": 0.25, "split_seed": 1},
            "retrieval": {"k": 12},
            "mining": {"negatives_per_positive": 3, "depth": 12, "max_positives_per_query": 1},
            "cross_encoder": {"model": {"kind": "tiny_bert", "vocab_size": 300},
                              "training": {"max_steps": 4, "per_device_batch_size": 8, "learning_rate": 1e-3,
                                           "max_length": 64, "logging_steps": 2, "device": "cpu",
                                           "precision": "fp32"}},
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10"], "relevance_level": 2},
        },
    }
    path = tmp_path / "cross_encoder_training_multi_gpu.yaml"
    path.write_text(yaml.safe_dump(config))
    run = zenml_client.get_pipeline_run(cross_encoder_training_multi_gpu.with_options(config_path=str(path))().id)
    assert str(run.status) == "completed"
    import pandas as pd

    staged = run.steps["stage_train_pairs"].outputs["train_pairs_file"][0].load()  # a copy from the artifact store
    pairs = run.steps["mine_hard_negatives"].outputs["train_pairs"][0].load()
    pd.testing.assert_frame_equal(pd.read_parquet(staged), pairs.reset_index(drop=True))
    log = run.steps["train_cross_encoder_multi_gpu"].outputs["training_log"][0].load()
    assert [e["step"] for e in log] == [2, 4]
    model_dir = run.steps["train_cross_encoder_multi_gpu"].outputs["model_dir"][0].load()
    assert "model.safetensors" in model_dir.files()
    assert "data:image/png;base64," in run.steps["build_ranking_report"].outputs["report"][0].load()
