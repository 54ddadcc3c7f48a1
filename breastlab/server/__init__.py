"""The MONAI Label side of BreastLab: datastore, infer and train tasks built from bundles."""
