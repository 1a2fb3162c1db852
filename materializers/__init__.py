"""Materializers for the types ZenML lacks: model directories, ranking data sets and TREC runs.

Importing this package registers them (``steps`` imports it).
"""

from materializers.model_directory import ModelDirectoryMaterializer
from materializers.ranking import RankingSetMaterializer, TrecRunMaterializer

__all__ = ["ModelDirectoryMaterializer", "RankingSetMaterializer", "TrecRunMaterializer"]
