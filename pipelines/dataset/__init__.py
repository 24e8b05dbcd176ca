"""From an archive to patient courses, one item at a time (no orchestration here): ``discover`` (each patient's
time points, the series and segmentation chosen, the clinical context), ``stages`` (load and measure one time
point), ``alignment`` (register a scan to the patient's baseline; track lesions across the patient's scans) and
``course_builder`` (measured time points and tracking -> the course of ../shared/course-format.md). Uses
:mod:`pipelines.outputs`, :mod:`pipelines.config` and :mod:`imaging`."""
