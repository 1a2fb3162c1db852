"""Test setup: offline hub, a throw-away ZenML store, and small ranking fixtures.

The environment is set at import time, before anything imports ZenML or transformers, so no test can reach a
hub or touch the user's own ZenML store.
"""

import os
import shutil
import tempfile

_ZENML_DIR = tempfile.mkdtemp(prefix="zenml-test-")
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "ZENML_CONFIG_PATH": _ZENML_DIR,
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "ZENML_DEBUG": "false",
})

import pytest  # noqa: E402

from finetune.data.types import RankingSet  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_ZENML_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def toy_ranking() -> RankingSet:
    """Four queries over a 12-passage collection; each query has one grade-2 and one grade-1 passage."""
    corpus = {
        "10": "paris is the capital city of france", "11": "france exports wine and cheese",
        "12": "berlin is the capital of germany", "13": "germany has many rivers",
        "14": "rome is the capital of italy", "15": "italy is shaped like a boot",
        "16": "madrid is the capital of spain", "17": "spain borders portugal",
        "18": "the cat sat on the mat", "19": "dogs bark at the postman",
        "20": "the capital of a company is its money", "21": "capital letters start sentences",
    }
    queries = {"1": "capital of france", "2": "capital of germany", "3": "capital of italy", "4": "capital of spain"}
    qrels = {"1": {"10": 2, "11": 1, "20": 0}, "2": {"12": 2, "13": 1}, "3": {"14": 2, "15": 1},
             "4": {"16": 2, "17": 1}}
    return RankingSet("toy", corpus, queries, qrels)


@pytest.fixture(scope="session")
def zenml_client():
    """A ZenML client on a fresh local SQLite store under a temp config dir (initialised once per session)."""
    from zenml.client import Client

    client = Client()
    client.active_stack  # noqa: B018  (creates the default stack and store on first access)
    return client

