"""Networks of the BreastLab bundles that MONAI does not provide (referenced with ``_target_``)."""
