"""File formats: strict PNG reading and atomic writes, DICOM images, DICOM SEG and SR, checkpoints."""
