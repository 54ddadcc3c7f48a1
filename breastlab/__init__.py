"""BreastLab: breast ultrasound and mammography models as MONAI bundles, served by MONAI Label."""

__version__ = "0.2.0"
