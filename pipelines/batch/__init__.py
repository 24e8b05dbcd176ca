"""Running a configuration over an archive: the run's stages composed (``run``), the functions workers run and
their cache keys (``tasks``), where they run (``executor``), each task's state for resuming (``ledger``) and
results kept by content (``cache``). Uses :mod:`pipelines.dicom`, :mod:`pipelines.dataset` and below."""
