"""Every pipeline ends in a report step, and every report builder embeds PNG plots that decode as images.

The dashboard shows a step's ``HTMLString`` output as the artifact's visualization (test_dashboard.py opens one in
a browser); these checks cover the other pipelines without a server.
"""

import base64
import io
import re

import pytest

PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _decoded_images(page: str) -> list:
    """Every embedded PNG decoded to a (height, width, channels) array."""
    from matplotlib import image

    return [image.imread(io.BytesIO(base64.b64decode(data)), format="png") for data in PNG.findall(page)]


def _pipeline_configs() -> dict:
    """One run config per pipeline (the demo one when it exists), by pipeline name."""
    from pathlib import Path

    from cli.config_check import pipeline_for, pipelines_by_name, run_configs

    pipelines = pipelines_by_name()
    found: dict = {}
    for path in sorted(run_configs(Path(__file__).parents[2] / "configs"), key=lambda p: "demo" not in p.parts):
        pipe = pipeline_for(path, pipelines)
        if pipe is not None:
            found.setdefault(pipe.name, path)
    return found


def test_every_pipeline_has_a_config_and_a_report_step():
    import inspect

    import yaml
    from pydantic import TypeAdapter

    from cli.config_check import pipelines_by_name

    configs = _pipeline_configs()
    assert set(configs) == set(pipelines_by_name())
    for name, path in configs.items():
        pipe = pipelines_by_name()[name]
        if pipe.is_dynamic:
            continue  # steps are known only while it runs (retraining runs the static families' steps)
        signature = inspect.signature(pipe.entrypoint)
        given = yaml.safe_load(path.read_text()).get("parameters") or {}
        pipe.prepare(**{k: TypeAdapter(signature.parameters[k].annotation).validate_python(v)
                        for k, v in given.items()})
        reports = [invocation_id for invocation_id, invocation in pipe.invocations.items()
                   if "report" in invocation.step.entrypoint_definition.outputs]
        assert reports, f"{name} has no step with a 'report' output"


def _log(*keys: str) -> list[dict]:
    return [{"step": step, **{k: 3.0 / step for k in keys}} for step in (1, 2, 3)]


def _builders():
    from finetune.reports.distillation import distillation_report
    from finetune.reports.generation import generation_report
    from finetune.reports.preference import dpo_report
    from finetune.reports.rlhf_rag import rag_report, rlhf_report
    from finetune.reports.training import causal_lm_report, method_comparison_report

    metrics = {"test_rougeL": 0.4, "test_bleu": 12.5}
    return {
        "sft_training": lambda: generation_report("SFT", metrics, [], {"test_rougeL": 0.2}, [], 3, _log("loss")),
        "causal_lm_training": lambda: causal_lm_report({"base_test_perplexity": 600.0}, {"test_perplexity": 28.0},
                                                       {"steps": 3}, _log("loss", "eval_loss")),
        "method_comparison": lambda: method_comparison_report(
            [{"method": "full", "validation_loss": 2.0}, {"method": "lora", "validation_loss": 2.5}]),
        "lm_distillation": lambda: distillation_report([{"model": "student", "test_perplexity": 20.0}], {}, {},
                                                       _log("eval_loss", "kd_kl", "kd_ce"), _log("eval_loss")),
        "dpo_alignment": lambda: dpo_report({"test_preference_accuracy": 0.6}, {"beta": 0.1},
                                            _log("loss", "rewards/accuracies")),
        "rlhf_training": lambda: rlhf_report({"test_pairwise_accuracy": 0.9}, {"base_test_mean_reward": 0.1},
                                             {"test_mean_reward": 0.7}, _log("loss"), _log("reward")),
        "rag_intent": lambda: rag_report({"test_recall@3": 0.4, **metrics}, [{"prompt": "q", "rougeL": 0.4}]),
    }


@pytest.mark.parametrize("pipeline", sorted(_builders()))
def test_generation_family_reports_embed_decodable_plots(pipeline):
    """The ranking reports are checked the same way in tests/finetune/reports/test_common.py (PNG signatures)."""
    page = _builders()[pipeline]()
    assert page.startswith("<!DOCTYPE html>")
    images = _decoded_images(page)
    assert images, f"{pipeline}: no embedded PNG"
    assert all(img.ndim == 3 and img.shape[0] >= 100 and img.shape[1] >= 100 for img in images)
