"""Orchestration of the imaging library over scan archives, and the ``tumor-response`` console script.

One concern per folder; imports run one way, each layer using only the ones below it
(``tests/pipelines/test_layers.py`` checks it):

``cli.py`` -> ``commands/`` -> ``batch/`` -> ``dicom/`` -> ``dataset/`` -> ``outputs/`` -> ``config.py`` -> :mod:`imaging`

* ``cli.py``: the console script; a static table names each command, whose module is imported only when it runs.
* ``commands/``: one thin module per subcommand (arguments, messages, exit codes).
* ``batch/``: running a configuration over an archive: ``run`` (the stages of a run, composed), ``tasks`` (what a
  worker runs, with its cache key), ``executor`` (in-process, local processes, dask), ``ledger`` (every task's
  state, for resuming), ``cache`` (results by content).
* ``dicom/``: DICOM networking and objects: ``pacs`` (C-FIND/C-MOVE/C-STORE and DICOMweb pull and push),
  ``sr_course`` (a course read from viewers' SR reports), ``export`` (SEG and SR written from a run).
* ``dataset/``: from an archive to patient courses: ``discover`` (time points, series and segmentation choice,
  clinical context), ``stages`` (load and measure one time point), ``alignment`` (register a scan to its baseline,
  track lesions across a patient's scans), ``course_builder`` (the course of ../shared/course-format.md).
* ``outputs/``: where results are written: ``files`` (atomic writes, the run's output folder) and ``privacy``
  (identifiers replaced per DICOM PS3.15's Basic Profile, and keyed pseudonyms).
* ``config.py``: the run configuration (pydantic models; every field checked, with its name in the error).
"""
