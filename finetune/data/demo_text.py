"""Embedded offline generation data: instruction tasks and an encyclopedia-like corpus.

Both describe one invented world (places with a capital, a main export and a neighbour), generated from
``random.Random(seed)`` with lists in fixed order, so the same arguments give byte-identical files. They are written
in the official formats (JSONL prompt/response, Alpaca or chat; WikiText layout) and read back by the real
loaders, so the demos exercise the same code as real data.

The instruction tasks are small and learnable by a tiny model in a few hundred steps: fact questions about the
places (the answer's phrasing is fixed, the fact must be memorised), one-digit addition and reversing three
words (rules that generalise to unseen examples).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from finetune.data.demo import demo_folder

_SYLLABLES = "ka lo ve dor mar tel si ran bel an thi zu fen gal mor sel dra wen pal ost ruv li tor vin hal".split()
_PLACE_ENDINGS = ("ia", "ora", "and", "heim", "stan", "ovia")
_CITY_ENDINGS = ("burg", "ton", "ville", "port", "grad", "holm")
_GOODS = "copper wool salt timber amber olives tin silk coffee tea glass rice wine marble cotton iron".split()
_WORDS = "red blue green apple river stone cloud bread lamp horse garden window music paper tiger seven".split()
_NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
                "sixteen seventeen eighteen".split()


@dataclass(frozen=True)
class _Place:
    name: str
    capital: str
    export: str
    neighbour: str


def demo_world(seed: int, num_places: int = 24) -> list[_Place]:
    """The invented world: ``num_places`` places with distinct names and capitals, the same for the same seed.

    Each place has a main export and borders the next place in the list (the last borders the first).
    """
    rng = random.Random(seed)
    names: list[str] = []
    capitals: list[str] = []
    while len(names) < num_places:
        stem = "".join(rng.sample(_SYLLABLES, 2))
        name, capital = (stem + rng.choice(_PLACE_ENDINGS)).capitalize(), (
            "".join(rng.sample(_SYLLABLES, 2)) + rng.choice(_CITY_ENDINGS)).capitalize()
        if name not in names and capital not in capitals:
            names.append(name)
            capitals.append(capital)
    return [_Place(n, c, rng.choice(_GOODS), names[(i + 1) % num_places])
            for i, (n, c) in enumerate(zip(names, capitals, strict=True))]


def _task(rng: random.Random, world: list[_Place]) -> tuple[str, str]:
    kind = rng.randrange(5)
    place = rng.choice(world)
    if kind == 0:
        return f"What is the capital of {place.name}?", f"The capital of {place.name} is {place.capital}."
    if kind == 1:
        return f"What does {place.name} export?", f"{place.name} mainly exports {place.export}."
    if kind == 2:
        return f"Which country borders {place.name}?", f"{place.name} borders {place.neighbour}."
    if kind == 3:
        a, b = rng.randrange(10), rng.randrange(10)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {_NUMBER_WORDS[a + b]}."
    words = rng.sample(_WORDS, 3)
    return f"Reverse the words: {' '.join(words)}", " ".join(reversed(words))


def demo_instruction_records(num_examples: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(prompt, response)`` pairs of the demo tasks."""
    rng = random.Random(seed + 1)
    world = demo_world(seed)
    return [_task(rng, world) for _ in range(num_examples)]


def write_demo_instructions(output_dir: str | Path, layout: str = "prompt_response", num_examples: int = 400,
                            seed: int = 0) -> Path:
    """Write the demo tasks as ``instructions.<layout>.jsonl`` in one of the three record layouts.

    Returns:
        The file written.
    """
    out = demo_folder(output_dir)
    lines = []
    for i, (prompt, response) in enumerate(demo_instruction_records(num_examples, seed)):
        if layout == "prompt_response":
            record = {"prompt": prompt, "response": response}
        elif layout == "alpaca":
            # Alpaca puts the material to work on in "input"; split the reversal task that way.
            instruction, _, material = prompt.partition(": ")
            record = {"instruction": instruction, "input": material, "output": response}
        elif layout == "messages":
            turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            record = {"messages": ([{"role": "system", "content": "Answer briefly."}] if i % 2 else []) + turns}
        else:
            raise ValueError(f"unknown demo layout '{layout}'")
        lines.append(json.dumps(record, ensure_ascii=False))
    path = out / f"instructions.{layout}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    return path


def write_demo_corpus(output_dir: str | Path, num_documents: int = 60, seed: int = 0) -> Path:
    """Write an encyclopedia-like corpus about the demo world in WikiText layout (`` = Title = `` articles).

    Returns:
        The file written (``corpus.txt``).
    """
    rng = random.Random(seed + 2)
    world = demo_world(seed, max(num_documents, 3))
    blocks = []
    for place in world[:num_documents]:
        sentences = [
            f"{place.name} is a country whose capital is {place.capital} .",
            f"The main export of {place.name} is {place.export} , shipped from {place.capital} .",
            f"{place.name} borders {place.neighbour} , and trade between them is old .",
            f"Most people in {place.capital} work in the {place.export} trade .",
            f"Travellers reach {place.capital} by river or by road from {place.neighbour} .",
        ]
        rng.shuffle(sentences)
        blocks.append(f" = {place.name} = \n \n {' '.join(sentences[:3])} \n \n = = Economy = = \n \n "
                      f"{' '.join(sentences[3:])} \n ")
    corpus = demo_folder(output_dir) / "corpus.txt"
    corpus.write_text(" \n" + "\n".join(blocks), encoding="utf-8", newline="\n")
    return corpus

