"""What the server stores: images and labels (a folder, ``local``, or a PACS, ``dicomweb``), the index and its
journal, every model's latest prediction, annotation effort, scores of scoring jobs, dataset import and export."""
