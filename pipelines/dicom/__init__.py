"""DICOM networking and DICOM objects: ``pacs`` (pull studies from and push results to a PACS, DIMSE or
DICOMweb), ``sr_course`` (a patient course read from viewers' SR measurement reports) and ``export`` (DICOM SEG
and SR Measurement Reports written from a run's results). Uses :mod:`pipelines.dataset` and below."""
