"""Dataset folders (``images/``, optional ``masks/``, ``manifest.csv``) read one way everywhere; mammogram folds."""

from .mammo import fold_split, lesion_circles, lesion_mask, pair_folds
from .reader import (
    BIRADS,
    CLASS_NAMES,
    NO_CANCER,
    Case,
    DatasetError,
    case_dicts,
    class_index,
    column_rule,
    dataset_dicts,
    read_dataset,
    select_cases,
    to_monai_dicts,
)
from .writer import write_dataset

__all__ = ["BIRADS", "CLASS_NAMES", "NO_CANCER", "Case", "DatasetError", "case_dicts", "class_index", "column_rule",
           "dataset_dicts", "fold_split", "lesion_circles", "lesion_mask", "pair_folds", "read_dataset", "select_cases",
           "to_monai_dicts",
           "write_dataset"]
