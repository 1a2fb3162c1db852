"""Materializers for the types ZenML lacks: model directories, ranking data sets, TREC runs and tokenized splits.

Importing this package registers them (``steps`` imports it).
"""

from materializers.model_directory import ModelDirectoryMaterializer
from materializers.ranking import RankingSetMaterializer, TrecRunMaterializer
from materializers.tokenized import TokenizedDatasetMaterializer

__all__ = [
    "ModelDirectoryMaterializer", "RankingSetMaterializer", "TokenizedDatasetMaterializer", "TrecRunMaterializer",
]
