"""Dataset folders (``images/``, optional ``masks/``, ``manifest.csv``) read one way everywhere."""

from .reader import CLASS_NAMES, Case, DatasetError, dataset_dicts, read_dataset, to_monai_dicts

__all__ = ["CLASS_NAMES", "Case", "DatasetError", "dataset_dicts", "read_dataset", "to_monai_dicts"]
