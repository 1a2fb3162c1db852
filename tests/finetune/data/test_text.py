import pytest

from finetune.data.demo_text import write_demo_corpus
from finetune.data.text import load_text_data, read_text_lines, split_documents
from finetune.data.types import DataFormatError
from finetune.params import DemoText, TextDataParams, TextFiles

WIKI = [" ", " = Alpha = ", " ", " Alpha text . ", " = = History = = ", " More alpha . ", " ", " = Beta = ",
        " Beta text . "]


def test_wikitext_articles_keep_their_sections():
    docs = split_documents(WIKI, "wikitext")
    assert docs == ["= Alpha = \n \n Alpha text . \n = = History = = \n More alpha .", "= Beta = \n Beta text ."]


def test_blank_line_and_line_documents():
    lines = ["a b", "c", "", "  ", "d", "", "e"]
    assert split_documents(lines, "blank_line") == ["a b\nc", "d", "e"]
    assert split_documents(lines, "line") == ["a b", "c", "d", "e"]


def test_split_is_by_document_and_seeded(tmp_path):
    params = TextDataParams(source=DemoText(output_dir=tmp_path, num_documents=20), validation_fraction=0.1,
                            test_fraction=0.1, split_seed=1)
    train, val, test = load_text_data(params)
    assert (len(train), len(val), len(test)) == (16, 2, 2)  # 20 articles: 2 validate, 2 test, 16 train
    titles = [{t.splitlines()[0] for t in f["text"]} for f in (train, val, test)]
    assert len(set.union(*titles)) == 20  # every article is whole in exactly one split
    assert load_text_data(params)[1]["text"].tolist() == val["text"].tolist()


def test_text_files_source_reads_several_files(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    params = TextDataParams(source=TextFiles(paths=(tmp_path / "a.txt", tmp_path / "b.txt")),
                            validation_fraction=0.0, test_fraction=0.0)
    train, val, test = load_text_data(params)
    assert sorted(train["text"]) == ["one", "three", "two"] and val.empty and test.empty


def test_malformed_text_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nstill fine\n\xc3\x28 broken\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:3: not valid UTF-8"):
        read_text_lines(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataFormatError, match=r"empty\.txt:1: no text"):
        read_text_lines(empty)


def test_demo_corpus_is_deterministic(tmp_path):
    a = write_demo_corpus(tmp_path / "a", 5, seed=2).read_bytes()
    b = write_demo_corpus(tmp_path / "b", 5, seed=2).read_bytes()
    assert a == b != write_demo_corpus(tmp_path / "c", 5, seed=0).read_bytes()


def test_hub_text_loader_reads_a_dataset_directory(tmp_path):
    """The hub path through ``datasets.load_dataset`` (a local dataset folder stands in for a hub repo offline)."""
    from finetune.params import HubText

    folder = tmp_path / "wiki"
    folder.mkdir()
    lines = [" = Alpha = ", " alpha text . ", " = Beta = ", " beta text . ", " = Gamma = ", " gamma . "]
    (folder / "train.jsonl").write_text("\n".join(f'{{"text": "{line}"}}' for line in lines) + "\n")
    params = TextDataParams(source=HubText(dataset=str(folder), config=None, revision="main"),
                            validation_fraction=0.0, test_fraction=0.0)
    train, _, _ = load_text_data(params)
    assert sorted(train["text"]) == ["= Alpha = \n alpha text .", "= Beta = \n beta text .", "= Gamma = \n gamma ."]
    bad = TextDataParams(source=HubText(dataset=str(folder), config=None, revision="main", text_field="body"))
    with pytest.raises(ValueError, match="no column 'body'"):
        load_text_data(bad)


def test_wikitext_detokenize_restores_plain_text():
    from finetune.data.text import wikitext_detokenize

    text = (' = Robert = \n In 1998 , he earned 3 @,@ 000 @-@ year ( about 2 @.@ 5 % ) ; he "won" it , don \'t he ? '
            'The band \'s " supporting players " . \n End .')
    assert wikitext_detokenize(text) == ('= Robert =\nIn 1998, he earned 3,000-year (about 2.5 %); he "won" it, '
                                         'don\'t he? The band\'s "supporting players".\nEnd.')


def test_detokenize_applies_to_every_document_of_a_files_source(tmp_path):
    from finetune.data.text import load_documents
    from finetune.params import TextDataParams

    path = tmp_path / "wiki.txt"
    path.write_text(" = A = \n The 1 @,@ 000 men , all . \n = B = \n A ( b ) c . \n")
    raw = TextDataParams(source={"kind": "files", "paths": [path], "documents": "wikitext"})
    plain = TextDataParams(source={"kind": "files", "paths": [path], "documents": "wikitext", "detokenize": True})
    assert load_documents(raw) == ["= A = \n The 1 @,@ 000 men , all .", "= B = \n A ( b ) c ."]
    assert load_documents(plain) == ["= A =\nThe 1,000 men, all.", "= B =\nA (b) c."]
