"""Offline preference pairs for the RLHF demo: questions about the demo world's invented places.

Each pair asks for one fact of one place; ``chosen`` answers with that fact, ``rejected`` with another fact of the
same place ("what is the capital of veldoria" → chosen " Ostburg", rejected " 1432"). Telling them apart needs the
question's attribute and the kind of the answer (a city, a year, a population, a person...), which a reward model
learns from the pairs; which place is asked about does not matter. Written as JSON Lines
``{"prompt", "chosen", "rejected"}``, the layout real preference files use, and read back by the loader.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from finetune.data.demo import _ATTRIBUTES, _Namer, _new_place

PROMPT_TEMPLATE = "Question: {question}?\nAnswer:"


def demo_preference_pairs(num_pairs: int, seed: int = 0) -> list[dict[str, str]]:
    """``num_pairs`` prompt/chosen/rejected records, one place each; the same arguments give the same records."""
    rng = random.Random(seed)
    namer = _Namer(rng)
    records = []
    for _ in range(num_pairs):
        place = _new_place(namer, rng)
        asked, other = rng.sample(_ATTRIBUTES, 2)
        question = rng.choice(asked.queries).format(e=place.name.lower())
        records.append({"prompt": PROMPT_TEMPLATE.format(question=question),
                        "chosen": " " + place.facts[asked.key], "rejected": " " + place.facts[other.key]})
    return records


def write_demo_preferences(path: str | Path, num_pairs: int = 400, seed: int = 0) -> Path:
    """Write ``demo_preference_pairs`` as JSON Lines to ``path`` (parents created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in demo_preference_pairs(num_pairs, seed)), encoding="utf-8")
    return out
