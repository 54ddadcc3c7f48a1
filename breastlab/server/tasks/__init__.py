"""MONAI Label's tasks built from bundles: infer (and promptable infer with its embedding cache), train, scoring,
next-sample strategies, the bounded background queue and the served weights."""
