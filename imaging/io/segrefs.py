"""DICOM SEG and RTSTRUCT objects of an archive: what they are drawn on, and what they hold.

A real PACS export puts a reader's segmentation next to several image series of
the same study (localizers, two reconstructions of one CT, a MIP ...). This
module reads, from each SEG or RTSTRUCT, the references that say which series
it was drawn on, and its segments (SEG) or ROIs (RTSTRUCT), without reading
pixel data or contours (:func:`read_segmentation_ref`); and links each one to
the image series of a crawl (:func:`link_segmentations`):

1. SEG: the series of its ``ReferencedSeriesSequence``; failing that, the
   series holding the instances its source image references name (per frame:
   ``DerivationImageSequence > SourceImageSequence`` of the per-frame and shared
   functional groups; top level: ``SourceImageSequence``;
   ``ReferencedInstanceSequence``).
2. RTSTRUCT: the series of ``ReferencedFrameOfReferenceSequence >
   RTReferencedStudySequence > RTReferencedSeriesSequence``; failing that, the
   series holding the instances named by ``ContourImageSequence`` (under
   ``RTReferencedSeriesSequence`` and under ``ROIContourSequence >
   ContourSequence``).
3. Only when the object references no series and no instance at all: the one
   image series of the same patient and study that shares its
   FrameOfReferenceUID. Several such series leave it unlinked (the reason names
   them): a frame of reference is shared by every series of one acquisition,
   so it cannot tell a 5 mm reconstruction from a 1.25 mm one.

References that point only to series or instances absent from the archive leave
the object unlinked, with that reason. Everything here works on crawled
headers: no pixel data, no SimpleITK.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from imaging.io.dicom import RTSTRUCT_STORAGE, SEG_STORAGE, SEGMENTATION_SOP_CLASSES, DicomHeader, content_datetime_of
from imaging.io.errors import MaskError

if TYPE_CHECKING:
    from imaging.io.grouping import SeriesInfo

SegmentationKind = Literal["SEG", "RTSTRUCT"]


class SegmentationRefError(MaskError):
    """A DICOM SEG or RTSTRUCT whose references and segments cannot be read; the message names the file."""


@dataclass(frozen=True)
class SegmentItem:
    """One segment of a SEG, or one ROI of an RTSTRUCT.

    Attributes
    ----------
    number
        SegmentNumber (SEG) or ROINumber (RTSTRUCT): the label value
        :func:`imaging.io.read_label_map` gives it.
    name
        SegmentLabel (SEG) or ROIName (RTSTRUCT).
    kind
        SEG: the CodeMeaning of SegmentedPropertyTypeCodeSequence; RTSTRUCT:
        RTROIInterpretedType of its RTROIObservationsSequence item ("" if absent).
    category
        SEG: the CodeMeaning of SegmentedPropertyCategoryCodeSequence; RTSTRUCT: "".
    organ
        SEG: the CodeMeaning of AnatomicRegionSequence; else "".
    property_code
        (CodingSchemeDesignator, CodeValue) of the SEG's property type; ("", "") otherwise.
    """

    number: int
    name: str
    kind: str
    category: str
    organ: str
    property_code: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class SegmentationRef:
    """What the crawl keeps of one DICOM SEG or RTSTRUCT: identity, references, date and segments.

    Attributes
    ----------
    referenced_series_uids
        SEG: ReferencedSeriesSequence; RTSTRUCT: RTReferencedSeriesSequence. In file order, unique.
    referenced_sop_uids
        Every image instance referenced (SEG: source images per frame, shared,
        top level and ReferencedInstanceSequence; RTSTRUCT: ContourImageSequence).
    frame_of_reference_uid
        SEG: FrameOfReferenceUID; RTSTRUCT: the ReferencedFrameOfReferenceUID of
        StructureSetROISequence (else ReferencedFrameOfReferenceSequence's).
    content_datetime
        ContentDate/Time (RTSTRUCT: StructureSetDate/Time), "YYYYMMDDHHMMSS[.ffffff]" or "".
    description
        SeriesDescription; when empty, the SEG's ContentLabel or the RTSTRUCT's StructureSetLabel.
    """

    path: Path
    kind: SegmentationKind
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_of_reference_uid: str
    referenced_series_uids: tuple[str, ...]
    referenced_sop_uids: frozenset[str]
    content_datetime: str
    items: tuple[SegmentItem, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (inverse: :func:`segmentation_ref_from_dict`); SOP UIDs sorted."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "patient_id": self.patient_id,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_uid": self.sop_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "referenced_series_uids": list(self.referenced_series_uids),
            "referenced_sop_uids": sorted(self.referenced_sop_uids),
            "content_datetime": self.content_datetime,
            "items": [
                {"number": i.number, "name": i.name, "kind": i.kind, "category": i.category, "organ": i.organ,
                 "property_code": list(i.property_code)}
                for i in self.items
            ],
            "description": self.description,
        }


def segmentation_ref_from_dict(d: dict[str, Any]) -> SegmentationRef:
    """The inverse of :meth:`SegmentationRef.to_dict`."""
    return SegmentationRef(
        path=Path(d["path"]),
        kind=d["kind"],
        patient_id=d["patient_id"],
        study_uid=d["study_uid"],
        series_uid=d["series_uid"],
        sop_uid=d["sop_uid"],
        frame_of_reference_uid=d["frame_of_reference_uid"],
        referenced_series_uids=tuple(d["referenced_series_uids"]),
        referenced_sop_uids=frozenset(d["referenced_sop_uids"]),
        content_datetime=d["content_datetime"],
        items=tuple(
            SegmentItem(number=i["number"], name=i["name"], kind=i["kind"], category=i["category"], organ=i["organ"],
                        property_code=(str(i["property_code"][0]), str(i["property_code"][1])))
            for i in d["items"]
        ),
        description=d.get("description", ""),
    )


# ---------------------------------------------------------------------------------------------
# reading


def _seq(ds: Any, keyword: str) -> Iterator[Any]:
    """The items of a sequence attribute (none when absent or empty)."""
    if ds is None or keyword not in ds:
        return iter(())
    value = ds.get(keyword)
    return iter(value) if value else iter(())


def _text(ds: Any, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip() if ds is not None else ""


def _code(ds: Any, keyword: str) -> tuple[str, str, str]:
    """(CodeMeaning, CodingSchemeDesignator, CodeValue) of a code sequence's first item."""
    for item in _seq(ds, keyword):
        value = _text(item, "CodeValue") or _text(item, "LongCodeValue") or _text(item, "URNCodeValue")
        return _text(item, "CodeMeaning"), _text(item, "CodingSchemeDesignator"), value
    return "", "", ""


def _number(ds: Any, keyword: str) -> int:
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError):
        return 0


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _source_sops(item: Any) -> Iterator[str]:
    """ReferencedSOPInstanceUIDs of a functional-group item's DerivationImageSequence > SourceImageSequence."""
    for derivation in _seq(item, "DerivationImageSequence"):
        for source in _seq(derivation, "SourceImageSequence"):
            yield _text(source, "ReferencedSOPInstanceUID")


def _seg_references(ds: Any) -> tuple[tuple[str, ...], set[str], tuple[SegmentItem, ...], str]:
    series, sops = [], set()
    for ref in _seq(ds, "ReferencedSeriesSequence"):
        series.append(_text(ref, "SeriesInstanceUID"))
        sops.update(_text(i, "ReferencedSOPInstanceUID") for i in _seq(ref, "ReferencedInstanceSequence"))
    sops.update(_text(i, "ReferencedSOPInstanceUID") for i in _seq(ds, "SourceImageSequence"))
    for shared in _seq(ds, "SharedFunctionalGroupsSequence"):
        sops.update(_source_sops(shared))
    for frame in _seq(ds, "PerFrameFunctionalGroupsSequence"):
        sops.update(_source_sops(frame))
    items = []
    for seg in _seq(ds, "SegmentSequence"):
        kind, scheme, value = _code(seg, "SegmentedPropertyTypeCodeSequence")
        items.append(
            SegmentItem(
                number=_number(seg, "SegmentNumber"), name=_text(seg, "SegmentLabel"), kind=kind,
                category=_code(seg, "SegmentedPropertyCategoryCodeSequence")[0],
                organ=_code(seg, "AnatomicRegionSequence")[0], property_code=(scheme, value),
            )
        )
    return _unique(series), sops, tuple(items), _text(ds, "FrameOfReferenceUID")


def _rtstruct_references(ds: Any) -> tuple[tuple[str, ...], set[str], tuple[SegmentItem, ...], str]:
    series, sops = [], set()
    frame_uids = []
    for frame in _seq(ds, "ReferencedFrameOfReferenceSequence"):
        frame_uids.append(_text(frame, "FrameOfReferenceUID"))
        for study in _seq(frame, "RTReferencedStudySequence"):
            for ref in _seq(study, "RTReferencedSeriesSequence"):
                series.append(_text(ref, "SeriesInstanceUID"))
                sops.update(_text(i, "ReferencedSOPInstanceUID") for i in _seq(ref, "ContourImageSequence"))
    for roi in _seq(ds, "ROIContourSequence"):
        for contour in _seq(roi, "ContourSequence"):
            sops.update(_text(i, "ReferencedSOPInstanceUID") for i in _seq(contour, "ContourImageSequence"))
    interpreted = {
        _number(obs, "ReferencedROINumber"): _text(obs, "RTROIInterpretedType") for obs in _seq(ds, "RTROIObservationsSequence")
    }
    items = []
    for roi in _seq(ds, "StructureSetROISequence"):
        number = _number(roi, "ROINumber")
        items.append(SegmentItem(number=number, name=_text(roi, "ROIName"), kind=interpreted.get(number, ""),
                                 category="", organ=""))
    roi_frames = [_text(roi, "ReferencedFrameOfReferenceUID") for roi in _seq(ds, "StructureSetROISequence")]
    frame_uid = next((u for u in roi_frames if u), "") or next((u for u in frame_uids if u), "") or _text(ds, "FrameOfReferenceUID")
    return _unique(series), sops, tuple(items), frame_uid


def read_segmentation_ref(path: str | os.PathLike[str]) -> SegmentationRef:
    """Read a DICOM SEG or RTSTRUCT's references, segments and date (pydicom, no pixel data).

    Parameters
    ----------
    path
        A DICOM SEG (SOP class 1.2.840.10008.5.1.4.1.1.66.4) or RTSTRUCT
        (1.2.840.10008.5.1.4.1.1.481.3) file.

    Returns
    -------
    SegmentationRef

    Raises
    ------
    SegmentationRefError
        (a :class:`~imaging.io.errors.MaskError`) The file cannot be read, is
        neither a SEG nor an RTSTRUCT, or lacks its Study/Series/SOP Instance
        UID; the message names the file and the reason.
    """
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pydicom  # here, not at import: the lean parser's path never needs it

            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
            sop_class = _text(ds, "SOPClassUID")
            kind = SEGMENTATION_SOP_CLASSES.get(sop_class)
            if kind is None:
                raise SegmentationRefError(f"{p}: not a DICOM SEG or RTSTRUCT (SOP class {sop_class or 'absent'})")
            uids = {k: _text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
            missing = [k for k, v in uids.items() if not v]
            if missing:
                raise SegmentationRefError(f"{p}: {kind} without {', '.join(missing)}")
            if sop_class == SEG_STORAGE:
                series, sops, items, frame_uid = _seg_references(ds)
                description = _text(ds, "SeriesDescription") or _text(ds, "ContentLabel")
            else:
                series, sops, items, frame_uid = _rtstruct_references(ds)
                description = _text(ds, "SeriesDescription") or _text(ds, "StructureSetLabel")
            sops.discard("")
            return SegmentationRef(
                path=p, kind=kind, patient_id=_text(ds, "PatientID"), study_uid=uids["StudyInstanceUID"],
                series_uid=uids["SeriesInstanceUID"], sop_uid=uids["SOPInstanceUID"], frame_of_reference_uid=frame_uid,
                referenced_series_uids=series, referenced_sop_uids=frozenset(sops),
                content_datetime=content_datetime_of(ds, sop_class), items=items, description=description,
            )
    except SegmentationRefError:
        raise
    except OSError as exc:
        raise SegmentationRefError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    except Exception as exc:  # pydicom raises many types on corrupt files; the boundary names them
        raise SegmentationRefError(f"{p}: unreadable segmentation object ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------------------------------------
# linking

#: How a segmentation was linked to its series (values of :attr:`SegmentationLinks.how`).
LINK_METHODS = ("ReferencedSeriesSequence", "RTReferencedSeriesSequence", "source images", "ContourImageSequence",
                "FrameOfReferenceUID")


@dataclass
class SegmentationLinks:
    """Which image series each segmentation object was drawn on.

    Attributes
    ----------
    by_series
        series_uid -> the segmentations linked to it, newest ``content_datetime``
        first (ties: by path).
    how
        segmentation sop_uid -> how it was linked: ``"ReferencedSeriesSequence"``
        (SEG), ``"RTReferencedSeriesSequence"`` (RTSTRUCT), ``"source images"``
        (SEG, referenced SOP instances), ``"ContourImageSequence"`` (RTSTRUCT,
        referenced SOP instances) or ``"FrameOfReferenceUID"`` (the fallback).
    unlinked
        (segmentation, reason) for each one linked to no series.
    series_of
        segmentation sop_uid -> the series_uids it is linked to (usually one).
    """

    by_series: dict[str, list[SegmentationRef]] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    unlinked: list[tuple[SegmentationRef, str]] = field(default_factory=list)
    series_of: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def newest(self, series_uid: str) -> SegmentationRef | None:
        """The newest segmentation linked to ``series_uid``, or None."""
        refs = self.by_series.get(series_uid)
        return refs[0] if refs else None


def _series_label(uid: str, volumes: dict[str, SeriesInfo]) -> str:
    v = volumes.get(uid)
    if v is None:
        return uid
    number = f"series {v.series_number} " if v.series_number is not None else ""
    return f"{number}{uid} ('{v.series_description}')" if v.series_description else f"{number}{uid} ({v.modality})"


def link_segmentations(
    volumes: Sequence[SeriesInfo],
    segs: Sequence[SegmentationRef],
    headers: Sequence[DicomHeader] | None = None,
) -> SegmentationLinks:
    """Link each SEG / RTSTRUCT to the image series it was drawn on (rules in the module docstring).

    Parameters
    ----------
    volumes
        The image volumes of the crawl (:func:`imaging.io.group_series`).
    segs
        The segmentation objects of the crawl (:attr:`ScanResult.segmentations`).
    headers
        The image headers of the crawl, to map referenced SOP instances to their
        series. Optional: without them, the SOP Instance UIDs recorded in each
        volume (:attr:`SeriesInfo.sop_uids`) are used.

    Returns
    -------
    SegmentationLinks
        Deterministic for given inputs, whatever their order. A file holding the
        same SOP Instance UID as one already linked is unlinked as a duplicate.
    """
    first: dict[str, SeriesInfo] = {}
    for v in volumes:
        first.setdefault(v.series_uid, v)
    sop_to_series: dict[str, str] = {}
    if headers is not None:
        for h in headers:
            if h.series_uid in first:
                sop_to_series[h.sop_uid] = h.series_uid
    else:
        for v in volumes:
            for sop in v.sop_uids:
                sop_to_series[sop] = v.series_uid
    by_frame: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for uid, v in sorted(first.items()):
        if v.frame_of_reference_uid:
            by_frame[(v.patient_id, v.study_uid, v.frame_of_reference_uid)].append(uid)

    links = SegmentationLinks()
    seen: dict[str, SegmentationRef] = {}
    linked: dict[str, list[SegmentationRef]] = defaultdict(list)
    for seg in sorted(segs, key=lambda s: (str(s.path), s.sop_uid)):
        if seg.sop_uid in seen:
            links.unlinked.append((seg, f"duplicate of {seen[seg.sop_uid].path} (same SOP Instance UID {seg.sop_uid})"))
            continue
        seen[seg.sop_uid] = seg
        targets, how, reason = _targets(seg, first, sop_to_series, by_frame)
        if not targets:
            links.unlinked.append((seg, reason))
            continue
        others = [u for u in targets if (first[u].patient_id, first[u].study_uid) != (seg.patient_id, seg.study_uid)]
        if others:  # the same UIDs under another patient or study (a merged or re-identified export): not ours to pick
            v = first[others[0]]
            links.unlinked.append((seg, f"it references series {others[0]} of patient {v.patient_id}, study {v.study_uid}, "
                                        f"but is itself of patient {seg.patient_id}, study {seg.study_uid}"))
            continue
        links.how[seg.sop_uid] = how
        links.series_of[seg.sop_uid] = targets
        for uid in targets:
            linked[uid].append(seg)
    for uid in sorted(linked):
        refs = sorted(linked[uid], key=lambda s: str(s.path))
        refs.sort(key=lambda s: s.content_datetime, reverse=True)  # stable: newest first, ties by path
        links.by_series[uid] = refs
    return links


def _targets(
    seg: SegmentationRef,
    series: dict[str, SeriesInfo],
    sop_to_series: dict[str, str],
    by_frame: dict[tuple[str, str, str], list[str]],
) -> tuple[tuple[str, ...], str, str]:
    """(linked series_uids, how, reason when none)."""
    by_series = "ReferencedSeriesSequence" if seg.kind == "SEG" else "RTReferencedSeriesSequence"
    by_instance = "source images" if seg.kind == "SEG" else "ContourImageSequence"
    present = tuple(u for u in seg.referenced_series_uids if u in series)
    if present:
        return present, by_series, ""
    via_sops = tuple(sorted({sop_to_series[s] for s in seg.referenced_sop_uids if s in sop_to_series}))
    if via_sops:
        return via_sops, by_instance, ""
    if seg.referenced_series_uids or seg.referenced_sop_uids:
        parts = []
        if seg.referenced_series_uids:
            parts.append(f"series {', '.join(seg.referenced_series_uids)} ({by_series})")
        if seg.referenced_sop_uids:
            parts.append(f"{len(seg.referenced_sop_uids)} image instance(s) ({by_instance})")
        return (), "", f"references {' and '.join(parts)}, none of which is an image series of the archive"
    if not seg.frame_of_reference_uid:
        return (), "", "references no series, no image instance and no FrameOfReferenceUID"
    candidates = by_frame.get((seg.patient_id, seg.study_uid, seg.frame_of_reference_uid), [])
    if len(candidates) == 1:
        return (candidates[0],), "FrameOfReferenceUID", ""
    where = f"patient {seg.patient_id}, study {seg.study_uid}"
    if not candidates:
        return (), "", (
            f"references no series or image instance, and no image series of {where} shares its "
            f"FrameOfReferenceUID {seg.frame_of_reference_uid}"
        )
    names = "; ".join(_series_label(u, series) for u in candidates)
    return (), "", (
        f"references no series or image instance, and {len(candidates)} image series of {where} share its "
        f"FrameOfReferenceUID {seg.frame_of_reference_uid} ({names}): cannot tell which one it was drawn on"
    )


__all__ = [
    "LINK_METHODS", "RTSTRUCT_STORAGE", "SEG_STORAGE", "SegmentItem", "SegmentationLinks", "SegmentationRef",
    "SegmentationRefError", "link_segmentations", "read_segmentation_ref", "segmentation_ref_from_dict",
]
