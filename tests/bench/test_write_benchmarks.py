"""BENCHMARKS.md splicing: the generated block is replaced in place, the hand-written rest is kept."""

from bench.write_benchmarks import BEGIN, END, ORDER, sections, splice


def test_splice_replaces_only_the_block_between_markers():
    text = f"# Benchmarks\n\nintro\n\n{BEGIN}\n\nold numbers\n\n{END}\n\n## Quality\nkept\n"
    out = splice(text, "## new numbers")
    assert "old numbers" not in out
    assert out.startswith("# Benchmarks\n\nintro\n\n")
    assert f"{BEGIN}\n\n## new numbers\n\n{END}" in out
    assert out.endswith("## Quality\nkept\n")
    assert splice(out, "## new numbers") == out  # idempotent


def test_splice_adds_markers_after_the_title_when_absent():
    out = splice("# Benchmarks\n## Quality\n", "## perf")
    assert out == f"# Benchmarks\n\n{BEGIN}\n\n## perf\n\n{END}\n## Quality\n"


def test_sections_follow_the_declared_order_then_the_rest(tmp_path):
    for name in ("zzz_extra", ORDER[1], ORDER[0]):
        (tmp_path / f"perf_{name}.md").write_text(f"## {name}\n")
    assert sections(tmp_path) == [f"## {ORDER[0]}", f"## {ORDER[1]}", "## zzz_extra"]
