"""Plain-text corpora for continued pre-training: local files, hub datasets, the embedded demo corpus.

Text is split into documents first (WikiText articles, blank-line paragraphs or lines) and the seeded
train/validation/test split is by document, so held-out perplexity is measured on text the model never saw a
line of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from finetune.data.instructions import split_frame
from finetune.data.msmarco import require_file, sha256_file
from finetune.data.types import DataFormatError
from finetune.params import DemoText, HubText, TextDataParams, TextFiles

# A top-level WikiText heading is " = Title = "; sections (" = = Section = = ") stay inside their article.
_WIKITEXT_TITLE = re.compile(r"^ ?= [^=].* = ?$")


def split_documents(lines: Iterable[str], documents: str) -> list[str]:
    """Group lines into documents.

    Args:
        lines: Text lines without their newlines.
        documents: ``wikitext`` (a top-level `` = Title = `` heading starts a document and stays in it),
            ``blank_line`` (blank lines separate documents) or ``line`` (each non-empty line is one).

    Returns:
        Non-empty documents, lines joined with newlines and stripped.
    """
    docs: list[list[str]] = [[]]
    for line in lines:
        if documents == "line":
            docs.append([line])
        elif documents == "blank_line" and not line.strip():
            docs.append([])
        elif documents == "wikitext" and _WIKITEXT_TITLE.match(line):
            docs.append([line])
        elif line.strip() or documents == "wikitext":
            docs[-1].append(line)
    joined = ("\n".join(d).strip() for d in docs)
    return [d for d in joined if d]


# (old, new) applied in order, then the patterns: the rules of lm-evaluation-harness's wikitext task.
_WIKITEXT_RULES = [
    (" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."),
    (" 's", "'s"), (" 't", "'t"), ("s ' ", "s' "),
    (" \n", "\n"), ("\n ", "\n"),
]
_WIKITEXT_PATTERNS = [
    (re.compile(r" ([.,;:!?])(?= |\n|$)"), r"\1"),          # no space before punctuation
    (re.compile(r"\(\s*([^\)]*?)\s*\)"), r"(\1)"),          # ( x ) → (x)
    (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),          # [ x ] → [x]
    (re.compile(r'"\s*([^"]*?)\s*"'), r'"\1"'),               # " x " → "x"
]


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization: ``3 @,@ 000 @-@ year`` → ``3,000-year``, ``Paris , France .`` → ``Paris,
    France.``, ``( born 1950 )`` → ``(born 1950)``, ``don 't`` → ``don't``. Headings (`` = = Section = = ``),
    line breaks and ``<unk>`` (WikiText-2's rare-word token) are kept; the rest reads as the web text a pre-trained
    model saw, so its perplexity measures language rather than an unfamiliar layout."""
    for old, new in _WIKITEXT_RULES:
        text = text.replace(old, new)
    for pattern, replacement in _WIKITEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text.strip()


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, as :func:`text_lines` splits them.

    Raises:
        DataFormatError: ``<path>:<line>: not valid UTF-8``, ``<path>:1: no text``, a directory or no such file.
    """
    path = require_file(path, "a UTF-8 text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8") from None
    if not text.strip():
        raise DataFormatError(f"{path}:1: no text")
    return text_lines(text)


def text_lines(text: str) -> list[str]:
    """Split text into lines at ``\\n`` (one ``\\r`` before it goes with it, so CRLF files read like LF files).

    Unlike ``str.splitlines``, U+0085, U+2028, U+2029, form feeds and the other characters Unicode counts as line
    boundaries stay inside their line, and so does a ``\\r`` not followed by ``\\n``. A final line end does not
    start another line.
    """
    lines = text.split("\n")
    last = lines.pop()  # the text after the last "\n": no line end of its own, so a "\r" there is text
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if last or not lines:
        lines.append(last)
    return lines


def text_files(params: TextDataParams) -> list[Path]:
    """The local files a source reads (written first for the demo), for fingerprinting."""
    source = params.source
    if isinstance(source, TextFiles):
        return list(source.paths)
    if isinstance(source, DemoText):
        from finetune.data.demo_text import write_demo_corpus

        return [write_demo_corpus(source.output_dir, source.num_documents, source.seed)]
    return []


def fingerprint_text(params: TextDataParams) -> dict[str, str]:
    """sha256 of every file the source reads; hub sources are keyed by their pinned revision."""
    source = params.source
    if isinstance(source, HubText):
        return {f"hub:{source.dataset}/{source.config}/{source.split}": source.revision}
    return {str(p): sha256_file(p, "a UTF-8 text file") for p in text_files(params)}


def load_documents(params: TextDataParams) -> list[str]:
    """Every document of the source, in source order."""
    source = params.source
    if isinstance(source, HubText):
        from datasets import load_dataset

        rows = load_dataset(source.dataset, source.config, split=source.split, revision=source.revision)
        if source.text_field not in rows.column_names:
            raise ValueError(f"{source.dataset}: no column '{source.text_field}' (columns: {rows.column_names})")
        lines = (line for row in rows[source.text_field] for line in text_lines(str(row)))
        return split_documents(lines, source.documents)
    documents = source.documents if isinstance(source, TextFiles) else "wikitext"
    docs = [doc for path in text_files(params) for doc in split_documents(read_text_lines(path), documents)]
    if isinstance(source, TextFiles) and source.detokenize:
        docs = [wikitext_detokenize(doc) for doc in docs]
    return docs


def load_text_data(params: TextDataParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Documents split by a seeded shuffle into train / validation / test tables with one ``text`` column."""
    docs = load_documents(params)
    if params.max_documents is not None:
        docs = docs[: params.max_documents]
    if not docs:
        raise ValueError("the text source has no documents")
    frame = pd.DataFrame({"text": docs})
    return split_frame(frame, params.validation_fraction, params.test_fraction, params.split_seed)
