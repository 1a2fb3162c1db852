"""From configured sources to disjoint training and evaluation sets.

``fingerprint_sources`` is cheap and runs every time (it reads the bytes, nothing else); ``load_ranking_data``
is the expensive parse, which a pipeline caches on the fingerprints, so edited files re-run ingest and
unchanged files hit the cache.
"""

from __future__ import annotations

import random
from pathlib import Path

from finetune.data.demo import write_demo_msmarco
from finetune.data.hub import load_hub_msmarco
from finetune.data.msmarco import load_msmarco_files, load_triples, read_queries, sha256_file
from finetune.data.types import DataFormatError, RankingSet
from finetune.params import DemoMsMarco, HubMsMarco, MsMarcoFiles, RankingDataParams, TriplesFile, UnlabeledQueries

Source = MsMarcoFiles | TriplesFile | HubMsMarco | DemoMsMarco
# What each role's path should be, named when it is a directory.
_EXPECTED = {
    "collection": "the collection TSV file", "queries": "the queries TSV file", "qrels": "the TREC qrels file",
    "run": "the TREC run file", "triples": "the triples TSV file",
}


def source_files(source: Source) -> dict[str, Path]:
    """The files a source reads, by role (empty for hub datasets). The demo source writes its files first."""
    if isinstance(source, MsMarcoFiles):
        files = {"collection": source.collection, "queries": source.queries, "qrels": source.qrels}
        if source.run is not None:
            files["run"] = source.run
        return files
    if isinstance(source, TriplesFile):
        return {"triples": source.path}
    if isinstance(source, DemoMsMarco):
        written = write_demo_msmarco(
            source.output_dir, num_queries=source.num_queries,
            passages_per_query=source.passages_per_query, seed=source.seed,
        )
        return {k: Path(v) for k, v in written.items() if k in ("collection", "queries", "qrels")}
    return {}


def fingerprint_source(source: Source) -> dict[str, str]:
    """sha256 of every file the source reads (``role -> digest``), or the pinned hub reference.

    Raises:
        DataFormatError: A file is missing or is a directory (one line naming it).
    """
    if isinstance(source, HubMsMarco):
        return {"hub": f"{source.dataset}/{source.config}/{source.split}@{source.revision}"}
    return {role: sha256_file(path, _EXPECTED[role]) for role, path in source_files(source).items()}


def fingerprint_sources(params: RankingDataParams) -> dict[str, str]:
    """Fingerprints of the training and (optional) evaluation sources, keyed ``train/<role>``, ``eval/<role>``."""
    out = {f"train/{k}": v for k, v in fingerprint_source(params.train).items()}
    if params.eval is not None:
        out.update({f"eval/{k}": v for k, v in fingerprint_source(params.eval).items()})
    if params.unlabeled is not None:
        out["unlabeled/queries"] = sha256_file(params.unlabeled.queries, _EXPECTED["queries"])
    return out


def load_source(source: Source, name: str) -> RankingSet:
    """Parse one source into a RankingSet (fingerprints recorded from the bytes actually parsed)."""
    if isinstance(source, HubMsMarco):
        return load_hub_msmarco(
            dataset=source.dataset, config=source.config, split=source.split,
            revision=source.revision, max_queries=source.max_queries, name=name,
        )
    files = source_files(source)
    if isinstance(source, TriplesFile):
        return load_triples(files["triples"], name=name)
    unknown = source.unknown_qrels if isinstance(source, MsMarcoFiles) else "error"
    return load_msmarco_files(
        files["collection"], files["queries"], files["qrels"], run=files.get("run"), name=name,
        unknown_qrels=unknown,
    )


def split_queries(qids: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of judged query ids into (train, eval); both non-empty when there are ≥ 2 queries.

    The ids are sorted before shuffling, so the split depends only on the set of ids and the seed.
    """
    ordered = sorted(qids)
    random.Random(seed).shuffle(ordered)
    n_eval = min(max(1, round(len(ordered) * eval_fraction)), len(ordered) - 1)
    return sorted(ordered[n_eval:]), sorted(ordered[:n_eval])


def load_ranking_data(params: RankingDataParams) -> tuple[RankingSet, RankingSet]:
    """Load the configured sources and return disjoint (train, eval) sets.

    One source: its judged queries are split by ``split_seed``. Two sources: used as given, and any query id or
    query text of the evaluation set is removed from training so evaluation queries are never trained on.

    Raises:
        DataFormatError: Malformed files (from the loaders), or too few judged queries to split.
    """
    train_full = load_source(params.train, name="train")
    if params.eval is None:
        judged = [q for q in train_full.queries if train_full.qrels.get(q)]
        if len(judged) < 2:
            raise DataFormatError(f"{params.train.kind}: needs at least 2 judged queries to split, found {len(judged)}")
        train_ids, eval_ids = split_queries(judged, params.eval_fraction, params.split_seed)
        train_set, eval_set = train_full.subset(train_ids, "train"), train_full.subset(eval_ids, "eval")
    else:
        eval_set = load_source(params.eval, name="eval")
        eval_set = eval_set.subset([q for q in eval_set.queries if eval_set.qrels.get(q)], "eval")
        eval_texts = {t.strip().lower() for t in eval_set.queries.values()}
        train_set = train_full.subset(
            [q for q in train_full.queries if q not in eval_set.queries
             and train_full.queries[q].strip().lower() not in eval_texts],
            "train",
        )
    if params.max_train_queries is not None:
        train_set = train_set.subset(sorted(train_set.queries)[: params.max_train_queries])
    if params.max_eval_queries is not None:
        eval_set = eval_set.subset(sorted(eval_set.queries)[: params.max_eval_queries])
    if not eval_set.qrels:
        raise DataFormatError("eval: no judged evaluation queries after filtering")
    return train_set, eval_set


def load_unlabeled_queries(params: UnlabeledQueries, train_set: RankingSet, eval_set: RankingSet) -> RankingSet:
    """Queries without judgments over the training collection, none of them a training or evaluation query.

    A query is dropped when its id or its text (case and surrounding spaces ignored) is among the training or
    evaluation queries; ``max_queries`` then keeps a sample seeded by ``params.seed`` (ids sorted first, so the
    sample depends only on the file's content and the seed).

    Raises:
        DataFormatError: The file is malformed, or no query is left after the filtering.
    """
    queries = read_queries(params.queries)
    known = set(train_set.queries) | set(eval_set.queries)
    texts = {t.strip().lower() for t in (*train_set.queries.values(), *eval_set.queries.values())}
    kept = sorted(q for q, text in queries.items() if q not in known and text.strip().lower() not in texts)
    if not kept:
        raise DataFormatError(f"{params.queries}: no unlabeled query left after removing the training and "
                              f"evaluation queries ({len(queries)} read)")
    if params.max_queries is not None and params.max_queries < len(kept):
        kept = sorted(random.Random(params.seed).sample(kept, params.max_queries))
    return RankingSet(name="unlabeled", corpus=train_set.corpus, queries={q: queries[q] for q in kept}, qrels={},
                      fingerprints={str(params.queries): sha256_file(params.queries, _EXPECTED["queries"])})
