"""build_distillation_report through ``.entrypoint()``: teacher, distilled student and no-teacher student."""

from steps.evaluate.build_distillation_report import build_distillation_report


def test_the_page_compares_teacher_student_and_no_teacher(page, promoted):
    rows = [{"model": "teacher", "test_perplexity": 10.123, "parameters": 120000},
            {"model": "student", "test_perplexity": 14.56, "parameters": 30000},
            {"model": "no_kd", "test_perplexity": 18.9, "parameters": 30000}]
    student = {"alpha": 0.5, "temperature": 2.0, "steps": 10, "validation_loss": 2.678}
    baseline = {"alpha": 0.0, "temperature": 2.0, "steps": 10, "validation_loss": 2.939}
    student_log = [{"step": 5, "eval_loss": 2.9, "kd_kl": 0.4, "kd_ce": 3.1}, {"step": 10, "eval_loss": 2.678}]
    report = page(build_distillation_report.entrypoint(rows, student, baseline, student_log,
                                                       [{"step": 5, "eval_loss": 3.0}], promoted))
    assert report.has_row("teacher", page.num("10.12"), page.num("120000"))  # {:.4g}
    assert report.has_row("student", page.num("14.56"), page.num("30000"))
    assert report.has_row("no_kd", page.num("18.9"), page.num("30000"))
    # alpha, temperature, steps, train_seconds (not given), tokens/s (not given), validation loss, ...
    assert '<td>student (KD)</td><td class="num">0.5</td><td class="num">2</td><td class="num">10</td><td></td>' \
           '<td></td><td class="num">2.678</td>' in report.html
    assert '<td>student (no teacher)</td><td class="num">0</td>' in report.html
    assert report.images == 2  # validation curves of both students, KL and CE terms
    assert "promoted to production" in report.promotion


def test_without_logs_there_are_no_curves(page):
    report = page(build_distillation_report.entrypoint([{"model": "student", "test_perplexity": 14.0}], {}, {}, [],
                                                       []))
    assert report.images == 0 and report.has_row("student", page.num("14"))
