"""Patient privacy in outputs: keyed pseudonyms for patient ids and UIDs, and PS3.15 de-identification.

Identities are replaced once, where outputs are written, not threaded through the stages: the stages
work with the archive's own ids, and every writer of the output folder (tables, JSON, the log, the
ledger, the console, output paths, DICOM objects) shows them through one :class:`Pseudonymiser`
(see :class:`pipelines.outputs.files.RunOutputs`).

Tabular outputs, logs and reports never carry PatientName, PatientBirthDate or any other header
identifier: the crawl keeps them only in its header catalogue, which lives beside the archive, not
among the outputs. What the outputs do show is the PatientID (the run's patient key; often a hospital
record number) and the DICOM UIDs (the results' link to the images); with ``privacy.pseudonymise:
true`` both are replaced by an HMAC-SHA256 of the value under a secret key from the config (or,
better, from an environment variable), so the same patient gets the same pseudonym in every run with
that key, and nobody without the key can link it back.

DICOM objects the run writes (SEG, SR) copy patient and study attributes from their sources; unless
``privacy.keep_identifiers``, :func:`deidentify_dicom` applies PS3.15's Basic Application Level
Confidentiality Profile to the whole object, with the options it names.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from pipelines.config import PrivacyConfig


class PrivacyError(ValueError):
    """Pseudonymisation asked for without a usable key."""


class Pseudonymiser:
    """Maps identifiers to what the outputs may show."""

    def __init__(self, config: PrivacyConfig) -> None:
        self.enabled = config.pseudonymise
        #: Free text of the headers (series description, contrast agent: removed or replaced by the Basic
        #: Profile); outputs show it only if identifiers are kept.
        self.withhold_descriptions = not config.keep_identifiers
        self._descriptions: set[str] = set()
        self._key: bytes | None = None
        self._known: set[str] = set()
        self._issued: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        if not self.enabled:
            return
        if config.key is not None:
            secret = config.key.get_secret_value()
        elif config.key_env:
            secret = os.environ.get(config.key_env, "")
            if not secret:
                raise PrivacyError(f"privacy.key_env: environment variable {config.key_env} is not set or empty")
        else:
            raise PrivacyError("privacy.pseudonymise is true but neither privacy.key nor privacy.key_env is given")
        if len(secret) < 16:
            raise PrivacyError("privacy key: at least 16 characters are required for a keyed hash worth the name")
        self._key = secret.encode()

    @property
    def key(self) -> bytes | None:
        """The secret behind the pseudonyms (for keyed UIDs of exported objects); ``None`` when disabled."""
        return self._key

    def _digest(self, kind: str, value: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def patient(self, patient_id: str) -> str:
        """The patient id the outputs show."""
        if not self.enabled:
            return patient_id
        return "anon-" + self._digest("patient", patient_id)[:16]

    def uid(self, uid: str) -> str:
        """A DICOM UID the outputs show: under pseudonymisation a valid UID in the 2.25 (UUID-derived) arc."""
        if not self.enabled or not uid or uid in self._issued:
            return uid
        pseudonym = "2.25." + str(int(self._digest("uid", uid)[:32], 16))
        self._issued.add(pseudonym)  # disclosing twice changes nothing (messages made by a writer, then logged)
        return pseudonym

    def register(self, patient_ids: Iterable[str]) -> None:
        """The raw patient ids of the run, whose every mention in free text :meth:`text` replaces."""
        self._known.update(p for p in patient_ids if p)
        self._pattern = None

    def register_descriptions(self, descriptions: Iterable[str]) -> None:
        """Free text of the archive's headers (series descriptions, contrast agents): :meth:`text` withholds it
        where messages quote it ('...'), and table columns named after it (:data:`WITHHELD_COLUMNS`) are withheld."""
        self._descriptions.update(d for d in descriptions if d)

    def text(self, text: str) -> str:
        """Free text as the outputs may show it: registered series descriptions withheld (unless identifiers are
        kept); under pseudonymisation, every registered patient id (a whole word: paths and messages often contain
        them) and every UID-shaped token replaced by its pseudonym."""
        if not text:
            return text
        if self.withhold_descriptions and self._descriptions:
            for d in sorted(self._descriptions, key=len, reverse=True):
                text = text.replace(f"'{d}'", f"'{WITHHELD}'")
        if not self.enabled:
            return text
        if self._pattern is None and self._known:
            words = "|".join(re.escape(p) for p in sorted(self._known, key=len, reverse=True))
            self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{words})(?![A-Za-z0-9])")
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self.patient(m.group(0)), text)
        return _UID_TOKEN.sub(lambda m: self.uid(m.group(0)), text)

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A table row as the outputs show it: ``patient_id`` and ``*_uid`` columns mapped, other text cleaned."""
        return {k: self._value(k, v) for k, v in row.items()}

    def data(self, value: Any, key: str = "") -> Any:
        """A JSON-able structure as the outputs show it (keys kept; values as in :meth:`row`)."""
        if isinstance(value, dict):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v, key) for v in value]
        return self._value(key, value)

    def _value(self, key: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if key in WITHHELD_COLUMNS and value and self.withhold_descriptions:
            return WITHHELD
        if not self.enabled:
            return self.text(value)
        if key == "patient_id":
            return self.patient(value)
        if key.endswith("_uid") or key == "uid":
            return self.uid(value)
        return self.text(value)


#: What outputs show for a series description (free text; PS3.15 removes it) unless privacy.keep_identifiers.
WITHHELD = "<withheld>"
#: Table columns holding header free text.
WITHHELD_COLUMNS = frozenset({"description", "contrast_agent"})


class DisclosureFilter(logging.Filter):
    """A log handler's filter: each record's message as :meth:`Pseudonymiser.text` shows it."""

    def __init__(self, anon: Pseudonymiser) -> None:
        super().__init__()
        self.anon = anon

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.anon.text(record.getMessage()), None
        if record.exc_info and not record.exc_text:  # a traceback names files and values too
            record.exc_text = self.anon.text(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.anon.text(record.stack_info)
        return True


#: A DICOM UID in free text: a UUID-derived 2.25.<n>, or at least five numeric components (version numbers have
#: fewer); it may end a sentence or a file name (<uid>.dcm).
_UID_TOKEN = re.compile(r"(?<![\w.])(?:2\.25\.\d+|(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*)){4,})(?!\w|\.\d)")


# --- DICOM objects: PS3.15 Annex E Basic Application Level Confidentiality Profile -------------------------

#: Edition of PS3.15 Table E.1-1 that dicom-anonymizer (KitwareMedical) transcribes and this module applies.
PROFILE_EDITION = "dicomfields_2026c"

#: CID 7050 (De-identification Method) codes of what :func:`deidentify_dicom` does.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_FULL_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
CLEAN_STRUCTURED_CONTENT = ("113104", "Clean Structured Content Option")
RETAIN_UIDS = ("113110", "Retain UIDs Option")
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")

#: Dates and times the Retain Longitudinal Temporal Information option does not keep: they date the person,
#: not the course (PS3.15 E.3.6 keeps the dates of the study and of its objects).
_PERSON_DATES = frozenset({0x00100030, 0x00100032})  # PatientBirthDate, PatientBirthTime

#: Sequences the profile would replace or empty whole, but that hold what this program measured: the SR's
#: content tree (Clean Structured Content: its items are cleaned by the same rules, one level at a time).
_CLEANED_NOT_REPLACED = frozenset({0x0040A730})  # ContentSequence


@functools.lru_cache(maxsize=1)
def _profile() -> tuple[dict[int, Callable[[Any, tuple[int, int]], None]], tuple[tuple[int, int, int, int, Any], ...],
                        frozenset[int]]:
    """The Basic Profile as (action by tag, actions of repeating groups by mask, tags whose action is U or X/Z/U*).

    The table and the per-action functions (D: a dummy value of the VR, Z: empty, X: remove) are
    dicom-anonymizer's; which conditional action applies (X/Z/D and the like) is its choice, the
    conservative one (keep the attribute present with a dummy or empty value).
    """
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
    from dicomanonymizer.simpledicomanonymizer import initialize_actions

    actions = initialize_actions(PROFILE_EDITION)
    tables = dicom_anonymization_database_selector(PROFILE_EDITION)
    uid_tags = frozenset((g << 16) | e for name in ("U_TAGS", "X_Z_U_STAR_TAGS") for g, e, *rest in tables[name]
                         if not rest)
    single = {(t[0] << 16) | t[1]: fn for t, fn in actions.items() if len(t) == 2}
    groups = tuple((t[0], t[1], t[2], t[3], fn) for t, fn in actions.items() if len(t) == 4)
    return single, groups, uid_tags


def _action(tag: int, single: dict, groups: tuple) -> Callable[[Any, tuple[int, int]], None] | None:
    fn = single.get(tag)
    if fn is not None:
        return fn
    group, element = tag >> 16, tag & 0xFFFF
    for g, e, gmask, emask, gfn in groups:
        if group & gmask == g & gmask and element & emask == e & emask:
            return gfn
    return None


def _clean(ds: Any, uid: Callable[[str], str] | None) -> None:
    """Apply the Basic Profile to every attribute of ``ds`` and, level by level, of every nested item.

    Kept, by the options :func:`deidentify_dicom` declares: dates and times (not the birth date), UIDs
    (or replaced by ``uid``, consistently), and the SR content tree (cleaned, not replaced).
    """
    from dicomanonymizer.simpledicomanonymizer import delete

    single, groups, uid_tags = _profile()
    for elem in list(ds):
        tag = int(elem.tag)
        if elem.tag.is_private:
            del ds[elem.tag]
            continue
        fn = _action(tag, single, groups)
        if elem.VR == "SQ":
            if fn is None or tag in _CLEANED_NOT_REPLACED or tag in uid_tags:
                for item in elem.value:  # kept: its items are cleaned (X/Z/U*: the UIDs they contain)
                    _clean(item, uid)
            elif fn is delete:
                del ds[elem.tag]
            else:
                fn(ds, (elem.tag.group, elem.tag.element))
            continue
        if fn is None:
            continue
        if tag in uid_tags or elem.VR == "UI":
            if uid is not None and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                mapped = [uid(str(v)) for v in values]
                elem.value = mapped if elem.VM > 1 else mapped[0]
            continue
        if elem.VR in ("DA", "DT", "TM"):
            if tag in _PERSON_DATES:
                elem.value = ""  # zero length, not a dummy date (the library's dummy is 0001-01-01)
            continue
        fn(ds, (elem.tag.group, elem.tag.element))


def deidentify_dicom(ds: Any, *, patient_id: str, uid: Callable[[str], str] | None = None,
                     identity_removed: bool, own_descriptors: tuple[str, ...] = ()) -> None:
    """De-identify a DICOM object this program wrote, in place, per PS3.15 Annex E.

    The Basic Application Level Confidentiality Profile (Table E.1-1, edition :data:`PROFILE_EDITION`) is
    applied to the whole object, nested sequences included, with these options, recorded in the
    object's De-identification Method Code Sequence (CID 7050):

    - Retain Longitudinal Temporal Information with Full Dates (E.3.6): study, series, content and
      acquisition dates and times are the point of a longitudinal study; birth date and time are not kept;
    - Clean Structured Content (E.3.5): the SR content tree holds this program's measurements; its items
      are cleaned by the same rules instead of being replaced whole;
    - Retain UIDs (E.3.9) when ``uid`` is None: the objects reference the source series in the archive
      they came from. With ``uid`` (a keyed pseudonym map), every UID the profile lists (study, series,
      instance, frame of reference, referenced instances, tracking UIDs) is replaced through it, so the
      references inside and between the objects stay consistent;
    - Clean Descriptors (E.3.5), when ``own_descriptors`` names top-level descriptors (e.g.
      ``SeriesDescription``) whose values this program wrote: those are kept; descriptors copied from
      the source (Study Description, ...) are removed by the profile.

    Patient Name and Patient ID become ``patient_id`` (the run's output id). Private attributes are
    removed. ``identity_removed`` declares Patient Identity Removed YES (the id is a pseudonym) and
    records the profile and its options in the De-identification Method Code Sequence; otherwise the
    object is not de-identified in PS3.15's sense (its Patient ID is the run's patient key): Patient
    Identity Removed is NO, no profile code is claimed, and the method text says what was done.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    kept = {name: ds.data_element(name).value for name in own_descriptors if name in ds}
    _clean(ds, uid)
    for name, value in kept.items():
        setattr(ds, name, value)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and uid is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = f"{patient_id}^"  # family-name component: a PN with no "^" is the retired ACR-NEMA form
    ds.PatientID = patient_id
    ds.PatientIdentityRemoved = "YES" if identity_removed else "NO"
    if identity_removed:
        # Only then is the object de-identified as PS3.15 means it (E.1.1): the profile's codes say how.
        codes = ([BASIC_PROFILE, RETAIN_FULL_DATES, CLEAN_STRUCTURED_CONTENT] + ([CLEAN_DESCRIPTORS] if kept else [])
                 + ([RETAIN_UIDS] if uid is None else []))
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    edition = PROFILE_EDITION.removeprefix("dicomfields_")
    ds.DeidentificationMethod = (f"PS3.15 Basic Profile {edition}; " +  # LO: at most 64 characters
                                 ("PatientID pseudonym" if identity_removed else "except PatientID (run key)"))
