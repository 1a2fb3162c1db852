"""HTML reports of ``rlhf_training`` (reward model, reward during RL, reward before/after) and ``rag_intent``
(retrieval recall, generation metrics, sample intents)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from finetune.reports.common import html_table, image_tag, plot_curves, plot_metric_bars, render_report


def rlhf_report(reward_model_metrics: Mapping[str, float], before: Mapping[str, float], after: Mapping[str, float],
                reward_log: Sequence[Mapping[str, object]], rl_log: Sequence[Mapping[str, object]],
                reward_model: Mapping[str, object] | None = None) -> str:
    """Reward model (what it started from, held-out accuracy, margin, training loss), mean reward before/after RL,
    reward during RL. ``reward_model``: ``{"base model": ..., "parameters": ...}`` of the trained reward model; the
    before/after rewards are its judgement, so the page says whose."""
    rows = [{"metric": k, "value": v} for k, v in reward_model_metrics.items()]
    if reward_model:
        rows = [{"metric": k, "value": v} for k, v in reward_model.items()] + rows
    sections = [
        ("Reward model on held-out pairs", html_table(rows)),
        ("Policy: mean reward on held-out prompts", html_table([
            {"policy": "starting model", "mean reward": before.get("base_test_mean_reward")},
            {"policy": "after RL", "mean reward": after.get("test_mean_reward")}])),
    ]
    loss = [(float(e["step"]), float(e["loss"])) for e in reward_log if "loss" in e and "step" in e]
    if loss:
        sections.append(("Reward-model training loss",
                         image_tag(plot_curves({"Bradley-Terry loss": loss}, "step", "loss"), "reward model loss")))
    rewards = [(float(e["step"]), float(e["reward"])) for e in rl_log if "reward" in e and "step" in e]
    if rewards:
        sections.append(("Mean reward of sampled completions during RL",
                         image_tag(plot_curves({"reward": rewards}, "step", "mean reward"), "reward during RL")))
    return render_report("RLHF: reward model and RL", sections)


def rag_report(metrics: Mapping[str, float], samples: Sequence[Mapping[str, object]],
               baseline: Mapping[str, float] | None = None) -> str:
    """Retrieval recall and generation metrics in one table and one chart, then sample intents (worst ROUGE-L
    first). The chart shows the metrics on a 0-1 scale (recall, ROUGE); BLEU (0-100) stays in the table.
    ``baseline`` holds the untuned generator's metrics (``untuned_test_rougeL``, ...): a second table column and
    a second bar per generation metric."""
    baseline = baseline or {}
    rows = [{"metric": k, "value": v, **({"untuned generator": baseline.get(f"untuned_{k}")} if baseline else {})}
            for k, v in metrics.items()]
    sections = [("Metrics", html_table(rows))]
    fractions = {k: v for k, v in metrics.items() if not k.endswith("_bleu")}
    if baseline:  # only the metrics both have: the generation metrics (recall is the retriever's)
        fractions = {k: v for k, v in fractions.items() if f"untuned_{k}" in baseline}
        bars = {"fine-tuned generator": fractions,
                "untuned generator": {k: baseline[f"untuned_{k}"] for k in fractions}}
    else:
        bars = {"generated intents": fractions}
    if fractions:
        sections.append(("Recall and ROUGE", image_tag(plot_metric_bars(bars),
                                                       "retrieval recall and ROUGE of the generated intents")))
    sections.append(("Sample intents (worst ROUGE-L first)", html_table(list(samples))))
    return render_report("RAG intent generation", sections)
