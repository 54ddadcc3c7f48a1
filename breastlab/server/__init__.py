"""The MONAI Label side of BreastLab, in three parts: ``datastore`` (what is stored: images, labels, their index and
journal, predictions, annotation effort; a folder or a PACS), ``tasks`` (MONAI Label's infer, train, scoring and
next-sample strategies built from bundles) and ``http`` (the routes BreastLab answers and the checks on what a client
sends). ``start`` is the server's command line, ``scratch`` its temp folder."""
