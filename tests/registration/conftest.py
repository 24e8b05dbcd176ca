"""Sample-data fixtures for the registration tests: each pair is registered once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.io import load_nifti
from imaging.registration import (
    RegistrationConfig,
    RegistrationResult,
    body_mask,
    lesion_exclusion_mask,
    register,
    sample_points,
    transform_from_matrix,
)

RIGID = RegistrationConfig(stages=("rigid",))
AFFINE = RegistrationConfig(stages=("rigid", "affine"))
LESION_MARGIN_MM = 30.0  # the tissue a growing tumour pushes aside: 20 mm left P002 at 0.9 mm
N_BODY_POINTS = 20


@dataclass
class Pair:
    patient: str
    date: str
    truth: sitk.Transform  # baseline LPS -> follow-up LPS, from truth.json
    points: np.ndarray  # lesion centroids + body points in baseline LPS


@dataclass
class Patient:
    patient: str
    baseline_date: str
    image: sitk.Image
    labels: sitk.Image
    truth: dict
    points: np.ndarray


class SampleRegistrations:
    """Loads each patient's images once and registers each follow-up once per config."""

    def __init__(self, root: Path, truth: dict[str, dict]):
        self.root = root
        self.truth = truth
        self._patients: dict[str, Patient] = {}
        self._followups: dict[tuple[str, str], tuple[sitk.Image, sitk.Image]] = {}
        self._results: dict[tuple[str, str, str], RegistrationResult] = {}

    def patient(self, pid: str) -> Patient:
        if pid not in self._patients:
            t = self.truth[pid]
            base = next(tp for tp in t["timepoints"] if tp["is_baseline"])
            image = load_nifti(self.root / base["folder"] / "image.nii.gz")
            labels = load_nifti(self.root / base["folder"] / "mask.nii.gz")
            centres = [les["center_lps"] for les in base["lesions"]]
            if "new_lesion_centre_baseline_lps" in t:
                centres.append(t["new_lesion_centre_baseline_lps"])
            # Fixed seed per patient: the same 20 body points every run.
            body = sample_points(body_mask(image), N_BODY_POINTS, seed=int(pid[1:]))
            self._patients[pid] = Patient(pid, base["date"], image, labels, t, np.vstack([np.asarray(centres), body]))
        return self._patients[pid]

    def followup(self, pid: str, date: str) -> tuple[sitk.Image, sitk.Image]:
        if (pid, date) not in self._followups:
            folder = self.root / pid / date
            self._followups[(pid, date)] = (load_nifti(folder / "image.nii.gz"), load_nifti(folder / "mask.nii.gz"))
        return self._followups[(pid, date)]

    def pair(self, pid: str, date: str) -> Pair:
        p = self.patient(pid)
        tp = next(tp for tp in p.truth["timepoints"] if tp["date"] == date)
        return Pair(pid, date, transform_from_matrix(tp["transform"]["matrix_4x4"]), p.points)

    def result(self, pid: str, date: str, kind: str) -> RegistrationResult:
        """kind: "rigid" (no masks) or "affine" (rigid + affine, lesions masked out)."""
        key = (pid, date, kind)
        if key not in self._results:
            p = self.patient(pid)
            image, labels = self.followup(pid, date)
            if kind == "rigid":
                res = register(p.image, image, RIGID)
            else:
                res = register(
                    p.image, image, AFFINE,
                    fixed_mask=lesion_exclusion_mask(p.labels, LESION_MARGIN_MM),
                    moving_mask=lesion_exclusion_mask(labels, LESION_MARGIN_MM),
                )
            self._results[key] = res
        return self._results[key]


@pytest.fixture(scope="session")
def sample_registrations(sample_root, sample_truth) -> SampleRegistrations:
    return SampleRegistrations(sample_root, sample_truth)


def followup_dates(truth: dict) -> list[str]:
    return [tp["date"] for tp in truth["timepoints"] if not tp["is_baseline"]]
