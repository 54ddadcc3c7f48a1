"""Dataset folders (``images/``, optional ``masks/``, ``manifest.csv``) read one way everywhere."""

from .reader import BIRADS, CLASS_NAMES, Case, DatasetError, case_dicts, dataset_dicts, read_dataset, to_monai_dicts
from .writer import write_dataset

__all__ = ["BIRADS", "CLASS_NAMES", "Case", "DatasetError", "case_dicts", "dataset_dicts", "read_dataset",
           "to_monai_dicts", "write_dataset"]
