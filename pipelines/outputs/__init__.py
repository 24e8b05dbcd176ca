"""Where results are written: ``files`` (atomic writes, the run's output folder and tables) and ``privacy``
(identifiers replaced where outputs are written, per DICOM PS3.15's Basic Profile, and keyed pseudonyms).
Uses :mod:`pipelines.config` only."""
