"""A synthetic MS MARCO-style ranking set, generated deterministically and written in the official formats.

The data is made up: invented places ("Veldoria"), each with eight facts (capital, population, founder,
currency, official language, main export, founding year, head of state). A query asks for one fact about one
place ("what is the capital of veldoria"); its judged candidates are:

- grade 3: a passage stating that fact about that place, usually through a paraphrase that avoids the query's
  word ("The seat of government of Veldoria is Ostburg.");
- grade 2: a passage giving the fact indirectly ("Diplomats posted to Veldoria usually live in Ostburg, ...");
- grade 1: a passage stating a different fact about the same place;
- grade 0: lexical distractors that repeat the query's attribute words but state the fact for *another* place
  and mention the queried place only in passing, plus unrelated passages about other places.

The rule is consistent and learnable: relevant means "states the asked attribute (in any of a fixed set of
phrasings) of the asked place". Bag-of-words matching is misled, because the distractors contain more query
terms than the answers: BM25 reaches only a moderate nDCG@10 (0.39 with the defaults, measured with bm25s,
English stopwords and gain 2^grade - 1; 0.40-0.42 for seeds 1 and 2). A cross-encoder trained on some queries
has what it needs to do better on unseen places: the paraphrases recur across queries, and the place binding
is visible in every passage. Each query's place appears in no other query's passages, so judgments are
complete: a passage of grade >= 1 for a query is judged for it.

Everything comes from ``random.Random(seed)`` and lists in fixed order, so the same arguments give
byte-identical files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from finetune.data.msmarco import write_collection, write_qrels, write_queries, write_triples

DEMO_MARKER = ".finetune-demo"
"""The file a demo generator leaves in every folder it creates; only such folders (or empty ones) are written."""


def demo_folder(out_dir: str | Path) -> Path:
    """Create (or reuse) a folder the demo generators may write into, refusing a folder of someone's own files.

    A demo ``output_dir`` pointed by mistake at a real data folder would otherwise overwrite ``collection.tsv``
    and friends. A folder is used when it is new, empty, or carries :data:`DEMO_MARKER` (a demo made it, so
    re-runs and several demo generators sharing one folder are fine).

    Args:
        out_dir: The configured demo ``output_dir``.

    Returns:
        The folder, created if missing, with the marker in it.

    Raises:
        FileExistsError: The folder holds files and no marker; one line naming the folder and its first file.
        NotADirectoryError: The path is a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: demo output_dir is a file; point output_dir at a new or empty folder")
    marker = out / DEMO_MARKER
    if out.is_dir() and not marker.exists():
        foreign = sorted(p.name for p in out.iterdir())
        if foreign:
            raise FileExistsError(
                f"{out}: demo output_dir holds files the demo did not write ({foreign[0]}, {len(foreign)} in all)"
                f"; point output_dir at a new or empty folder so they are not overwritten"
            )
    out.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return out

_SYLLABLES = (
    "ka lo ve dor mar tel si ran bel quo an thi zu fen gal mor ny sel dra wen pal ost ruv ce li tor ma vin "
    "brek hal jun tas em ul kor pe sar vo"
).split()
_PLACE_ENDINGS = ("ia", "ora", "and", "heim", "stan", "ovia", "ene", "alia")
_CITY_ENDINGS = ("burg", "ton", "ville", "port", "grad", "holm", "mouth", "ford")
_WORD_ENDINGS = ("o", "ar", "in", "et", "um")
_LANGUAGE_ENDINGS = ("ish", "ese", "ic", "i")
_FIRST_NAMES = (
    "Anna Boris Clara Dmitri Elena Farid Greta Hugo Ingrid Jonas Katya Lars Mira Nils Olga Pavel Rosa Stefan "
    "Tamar Ugo Vera Wim Yara Zeno"
).split()
_GOODS = (
    "copper wool salt timber amber olives tin silk coffee tea glass rice wine marble cotton iron dates honey "
    "saffron pearls"
).split()


@dataclass(frozen=True)
class _Attribute:
    """One kind of fact, with every way the generator phrases it ({e} = place, {v} = value)."""

    key: str
    queries: tuple[str, ...]
    keyword: str  # the query's words for the attribute, repeated by the distractors
    plain: tuple[str, ...]  # states the fact with the query's words
    paraphrase: tuple[str, ...]  # states the fact without the query's words
    indirect: tuple[str, ...]  # implies the fact (grade 2)


# The kinds of fact the demo's queries ask about; finetune.data.rag_demo reads their query templates too.
ATTRIBUTES = (
    _Attribute(
        key="capital",
        queries=(
            "what is the capital of {e}",
            "capital of {e}",
            "{e} capital city",
            "which city is the capital of {e}",
        ),
        keyword="capital",
        plain=("The capital of {e} is {v}.", "{v} is the capital city of {e}."),
        paraphrase=(
            "The seat of government of {e} is {v}.",
            "{v} serves as the administrative centre of {e}.",
            "{e} is run from {v}, where its parliament and ministries sit.",
            "Laws for all of {e} are made in {v}, the seat of its government.",
        ),
        indirect=(
            "Most government offices of {e} moved to {v} after the old palace burned down, "
            "and they have stayed there since.",
            "Diplomats posted to {e} usually live in {v}, close to the ministries.",
        ),
    ),
    _Attribute(
        key="population",
        queries=(
            "what is the population of {e}",
            "{e} population",
            "population of {e} today",
            "how large is the population of {e}",
        ),
        keyword="population",
        plain=("The population of {e} is about {v}.", "{e} has a population of {v}."),
        paraphrase=(
            "Around {v} people live in {e}.",
            "{e} is home to roughly {v} inhabitants.",
            "The number of residents of {e} stands at about {v}.",
            "Some {v} people call {e} home.",
        ),
        indirect=(
            "The last census of {e} was disputed, but officials put the figure near {v} residents.",
            "Because many families left {e} in recent decades, the count of inhabitants fell to about {v}.",
        ),
    ),
    _Attribute(
        key="founder",
        queries=(
            "who was the founder of {e}",
            "founder of {e}",
            "{e} founder",
            "who is known as the founder of {e}",
        ),
        keyword="founder",
        plain=("The founder of {e} was {v}.", "{v} is remembered as the founder of {e}."),
        paraphrase=(
            "{e} was established by {v}.",
            "{v} laid the foundations of {e}.",
            "The first settlement of {e} was built under the leadership of {v}.",
            "It was {v} who created {e}.",
        ),
        indirect=(
            "Statues of {v} stand in the main square of {e}, honouring the one who led the first settlers "
            "there.",
            "Local legend in {e} credits {v} with choosing the site of the first village.",
        ),
    ),
    _Attribute(
        key="currency",
        queries=(
            "what is the currency of {e}",
            "{e} currency",
            "which currency does {e} use",
            "currency used in {e}",
        ),
        keyword="currency",
        plain=("The currency of {e} is the {v}.", "{e} uses the {v} as its currency."),
        paraphrase=(
            "Money in {e} comes in the form of the {v}.",
            "Prices in {e} are paid in {v} coins and notes.",
            "The legal tender of {e} is the {v}.",
            "Shops across {e} accept only the {v}.",
        ),
        indirect=(
            "Travellers arriving in {e} are advised to change their money into {v} notes at the border.",
            "Before the reform, {e} used silver bars; today wages there are paid in {v}.",
        ),
    ),
    _Attribute(
        key="language",
        queries=(
            "what is the official language of {e}",
            "{e} official language",
            "which language is official in {e}",
            "official language spoken in {e}",
        ),
        keyword="official language",
        plain=("The official language of {e} is {v}.", "{v} is the official language of {e}."),
        paraphrase=(
            "Most people in {e} speak {v}.",
            "{v} is the tongue used in the schools and courts of {e}.",
            "The people of {e} talk and write in {v}.",
            "Government papers in {e} are printed in {v}.",
        ),
        indirect=(
            "Children in {e} learn to read in {v} before any foreign tongue.",
            "Newspapers and radio in {e} mostly use {v}, though older dialects survive in the hills.",
        ),
    ),
    _Attribute(
        key="export",
        queries=(
            "what is the main export of {e}",
            "{e} main export",
            "main export of {e}",
            "what is {e}'s top export",
        ),
        keyword="main export",
        plain=("The main export of {e} is {v}.", "{v} is the main export of {e}."),
        paraphrase=(
            "{e} earns most of its foreign income by selling {v} abroad.",
            "The chief product shipped out of {e} is {v}.",
            "Ships leaving {e} carry mostly {v} to foreign buyers.",
            "Trade figures show that {v} makes up most of what {e} sells overseas.",
        ),
        indirect=(
            "The harbour of {e} is crowded with crates of {v} waiting for foreign ships.",
            "Farmers and miners in {e} depend on buyers abroad who pay well for {v}.",
        ),
    ),
    _Attribute(
        key="founded",
        queries=(
            "when was {e} founded",
            "year {e} was founded",
            "{e} founding year",
            "in what year was {e} founded",
        ),
        keyword="founding year",
        plain=("{e} was founded in {v}.", "The founding year of {e} is {v}."),
        paraphrase=(
            "{e} came into being in {v}.",
            "The history of {e} as a settlement begins in {v}.",
            "The first houses of {e} were built in {v}.",
            "{e} was established in {v}.",
        ),
        indirect=(
            "Old records kept in {e} mention the first market held there in {v}.",
            "Archaeologists date the oldest walls of {e} to around {v}.",
        ),
    ),
    _Attribute(
        key="leader",
        queries=(
            "who is the head of state of {e}",
            "{e} head of state",
            "current head of state of {e}",
            "who serves as head of state in {e}",
        ),
        keyword="head of state",
        plain=("The head of state of {e} is {v}.", "{v} serves as head of state of {e}."),
        paraphrase=(
            "{e} is ruled by {v}.",
            "{v} presides over {e}.",
            "The country of {e} is led by {v}.",
            "Since the last election, {v} has governed {e}.",
        ),
        indirect=(
            "Official portraits of {v} hang in every school in {e}.",
            "Speeches given by {v} in the assembly of {e} are broadcast every week.",
        ),
    ),
)

# Sentences that lengthen a passage about a place without stating any of its eight facts.
_CONTEXT = (
    "{e} lies between low hills and a wide river.",
    "Visitors to {e} often praise its markets.",
    "The climate of {e} is mild for most of the year.",
    "Roads in {e} were rebuilt a few years ago.",
    "{e} has a long tradition of music and dance.",
    "Fishing villages line the coast of {e}.",
    "Many old bridges still stand in {e}.",
)
_NEUTRAL = (
    "The region is known for its mild weather.",
    "Local guides recommend visiting in spring.",
    "Several small museums document this history.",
    "The figures come from a survey published last year.",
)

# Distractors (grade 0): the query's attribute words and the queried place {e}, but the fact belongs to
# another place {o} (or to nobody); {fact_o} / {fact_o2} are plain statements about other places.
_DISTRACTORS = (
    "{fact_o} Travellers who know {e} are often surprised by the {kw} of {o}.",
    "People often ask about the {kw} of {e}, but this page is about {o}. {fact_o}",
    "{fact_o} {fact_o2} Neither place is much like {e}.",
    "Comparing {e} with its neighbours: {fact_o} {fact_o2}",
    "A guide to the region covers {e} and {o}, with a chapter on the {kw} of each place. {fact_o}",
    "Unlike {e}, {o} is small. {fact_o} Questions about the {kw} of {o} come up in every quiz.",
)


@dataclass
class _Place:
    name: str
    facts: dict[str, str]


class _Namer:
    """Invented, globally unique names, so no place, city or person is ever mistaken for another."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()  # membership only; never iterated, so order cannot leak in

    def word(self, endings: tuple[str, ...]) -> str:
        attempt = 0
        while True:
            # Two syllables give 38 × 38 × 8 ≈ 11,500 names per kind; lengthen once those run short.
            syllables = 2 + attempt // 20
            word = "".join(self.rng.choice(_SYLLABLES) for _ in range(syllables)) + self.rng.choice(endings)
            if word not in self.used:
                self.used.add(word)
                return word.capitalize()
            attempt += 1


def _new_place(namer: _Namer, rng: random.Random) -> _Place:
    name = namer.word(_PLACE_ENDINGS)
    if rng.random() < 0.5:
        population = f"{rng.randint(1, 9)}.{rng.randint(0, 9)} million"
    else:
        population = f"{rng.randint(12, 980)},{rng.randint(0, 999):03d}"
    facts = {
        "capital": namer.word(_CITY_ENDINGS),
        "population": population,
        "founder": f"{rng.choice(_FIRST_NAMES)} {namer.word(_WORD_ENDINGS)}",
        "currency": namer.word(_WORD_ENDINGS).lower(),
        "language": namer.word(_LANGUAGE_ENDINGS),
        "export": rng.choice(_GOODS),
        "founded": str(rng.randint(800, 1950)),
        "leader": f"{rng.choice(('President', 'Queen', 'King', 'Chancellor'))} {namer.word(_WORD_ENDINGS)}",
    }
    return _Place(name, facts)


def _sentence(template: str, place: _Place, attribute: _Attribute) -> str:
    return template.format(e=place.name, v=place.facts[attribute.key])


def _passage(rng: random.Random, fact: str, place: _Place) -> str:
    """A fact sentence with 0-2 context sentences around it, so length and position vary."""
    extra = [s.format(e=place.name) for s in rng.sample(_CONTEXT, rng.randint(0, 2))]
    if rng.random() < 0.3:
        extra.append(rng.choice(_NEUTRAL))
    sentences = [fact, *extra]
    rng.shuffle(sentences)
    return " ".join(sentences)


def _distractor(rng: random.Random, place: _Place, attribute: _Attribute, others: list[_Place]) -> str:
    other, other2 = rng.sample(others, 2)
    return rng.choice(_DISTRACTORS).format(
        e=place.name,
        o=other.name,
        kw=attribute.keyword,
        fact_o=_sentence(rng.choice(attribute.plain), other, attribute),
        fact_o2=_sentence(rng.choice(attribute.plain), other2, attribute),
    )


def _filler(rng: random.Random, others: list[_Place]) -> str:
    other = rng.choice(others)
    attribute = rng.choice(ATTRIBUTES)
    return _passage(
        rng, _sentence(rng.choice(attribute.plain + attribute.paraphrase), other, attribute), other
    )


def _candidates(
    rng: random.Random, place: _Place, attribute: _Attribute, others: list[_Place], size: int
) -> list[tuple[str, int]]:
    """``size`` (passage, grade) pairs for one query; at least one of grade 3 whatever ``size`` is."""
    n_direct, n_indirect = rng.randint(1, 2), rng.randint(1, 2)
    n_other_fact, n_distractor = rng.randint(2, 4), rng.randint(4, 7)
    direct = []
    for _ in range(n_direct):
        # One answer in four uses the query's own words; the rest need the paraphrase to be recognised.
        templates = attribute.plain if rng.random() < 0.25 else attribute.paraphrase
        direct.append((_passage(rng, _sentence(rng.choice(templates), place, attribute), place), 3))
    indirect = [
        (_passage(rng, _sentence(t, place, attribute), place), 2)
        for t in rng.sample(attribute.indirect, n_indirect)
    ]
    other_facts = []
    for other_attribute in rng.sample([a for a in ATTRIBUTES if a is not attribute], n_other_fact):
        template = rng.choice(other_attribute.plain + other_attribute.paraphrase)
        other_facts.append((_passage(rng, _sentence(template, place, other_attribute), place), 1))
    distractors = [(_distractor(rng, place, attribute, others), 0) for _ in range(n_distractor)]
    # One of each kind first, so a small `size` still mixes grades (and has a negative from 2 on); then the
    # rest; then unrelated filler.
    ordered = [direct[0], distractors[0], indirect[0], other_facts[0]]
    ordered += direct[1:] + indirect[1:] + distractors[1:] + other_facts[1:]
    chosen = ordered[:size]
    chosen += [(_filler(rng, others), 0) for _ in range(size - len(chosen))]
    return chosen


def write_demo_msmarco(
    out_dir: str | Path, num_queries: int = 200, passages_per_query: int = 30, seed: int = 0
) -> dict[str, Path]:
    """Write a synthetic MS MARCO-style data set in the official file formats.

    Every query gets exactly ``passages_per_query`` judged passages (all in the collection, graded 0-3, at
    least one of grade 3), so the collection has ``num_queries * passages_per_query`` passages. Qids are
    1..num_queries and pids 0..(passages - 1), assigned after a shuffle so ids say nothing about grades. The
    triples file pairs each grade >= 2 passage with one of its query's grade-0 passages.

    Args:
        out_dir: Folder to write into: created if missing; a folder holding other files is refused (see
            :func:`demo_folder`); the demo's own files are overwritten.
        num_queries: Number of queries, each about a different invented place.
        passages_per_query: Judged candidates per query (>= 2, so there is a negative for the triples).
        seed: Seed of the generator; another seed gives other places, queries and passages.

    Returns:
        {"collection": ..., "queries": ..., "qrels": ..., "triples": ...} paths to ``collection.tsv``,
        ``queries.tsv``, ``qrels.txt`` and ``triples.train.tsv``.

    Raises:
        ValueError: ``num_queries`` < 1 or ``passages_per_query`` < 2.
    """
    if num_queries < 1:
        raise ValueError(f"num_queries must be at least 1, not {num_queries}")
    if passages_per_query < 2:
        raise ValueError(f"passages_per_query must be at least 2, not {passages_per_query}")
    rng = random.Random(seed)
    namer = _Namer(rng)
    places = [_new_place(namer, rng) for _ in range(num_queries)]
    # Distractors and filler talk about places nobody asks about, so no passage is relevant to a query it
    # was not judged for.
    others = [_new_place(namer, rng) for _ in range(max(20, num_queries // 4))]

    queries: dict[str, str] = {}
    judged: list[tuple[str, str, int]] = []  # (qid, passage, grade) before pids exist
    for i, place in enumerate(places):
        qid = str(i + 1)
        attribute = rng.choice(ATTRIBUTES)
        queries[qid] = rng.choice(attribute.queries).format(e=place.name.lower())
        judged += [
            (qid, text, grade)
            for text, grade in _candidates(rng, place, attribute, others, passages_per_query)
        ]

    rng.shuffle(judged)
    corpus = {str(pid): text for pid, (_, text, _) in enumerate(judged)}
    qrels: dict[str, dict[str, int]] = {qid: {} for qid in queries}
    for pid, (qid, _, grade) in enumerate(judged):
        qrels[qid][str(pid)] = grade

    triples = []
    for qid, grades in qrels.items():
        negatives = [pid for pid, grade in grades.items() if grade == 0]
        triples += [
            (queries[qid], corpus[pid], corpus[rng.choice(negatives)])
            for pid, grade in grades.items()
            if grade >= 2 and negatives
        ]

    out = demo_folder(out_dir)
    paths = {
        "collection": out / "collection.tsv",
        "queries": out / "queries.tsv",
        "qrels": out / "qrels.txt",
        "triples": out / "triples.train.tsv",
    }
    write_collection(corpus, paths["collection"])
    write_queries(queries, paths["queries"])
    write_qrels(qrels, paths["qrels"])
    write_triples(triples, paths["triples"])
    return paths
