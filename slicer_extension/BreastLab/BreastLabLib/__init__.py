"""Pure-Python logic of the BreastLab Slicer module: the server client, image codecs, results and MRML helpers.

``client``, ``history``, ``images``, ``results`` and ``review`` need only numpy, Pillow and requests (all shipped with
3D Slicer); ``mrml``, ``session`` and ``review_mrml`` also need Slicer's ``slicer``/``vtk`` modules and are imported on
their own.
"""
