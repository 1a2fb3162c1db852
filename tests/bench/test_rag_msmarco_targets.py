"""The reference text rule of bench/rag_msmarco_targets (rag_intent on MS MARCO, configs/rag_intent_smollm2.yaml)."""

from bench.rag_msmarco_targets import MAX_WORDS, answer_sentence, main


def test_answer_sentence_shares_the_most_query_words():
    passage = "Medicine in Greece. Hippocrates is considered the father of modern medicine. He lived on Kos."
    assert answer_sentence("who is the father of modern medicine", passage) == (
        "Hippocrates is considered the father of modern medicine.")


def test_ties_go_to_the_earliest_sentence_and_long_ones_are_cut():
    long = "Word " + " ".join(["word"] * (MAX_WORDS + 10)) + "."
    assert answer_sentence("nothing in common", f"First one. Second one. {long}") == "First one."
    assert answer_sentence("word", f"Other. {long}").split() == ["Word"] + ["word"] * (MAX_WORDS - 1)


def test_main_keeps_only_queries_with_a_judged_passage_text(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    (source / "collection.tsv").write_text("7\tCats purr. Cats sleep a lot of the day.\n", encoding="utf-8")
    (source / "queries.tsv").write_text("1\thow much do cats sleep\n2\tno text for me\n", encoding="utf-8")
    (source / "qrels.txt").write_text("1 0 7 1\n2 0 9 1\n", encoding="utf-8")
    monkeypatch.setattr("bench.rag_msmarco_targets.SOURCE", source)
    main(str(tmp_path / "out"))
    assert (tmp_path / "out" / "queries.tsv").read_text() == "1\thow much do cats sleep\n"
    assert (tmp_path / "out" / "intents.tsv").read_text() == "1\tCats sleep a lot of the day.\n"
