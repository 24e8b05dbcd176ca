"""Pull studies from a PACS into an archive folder, push DICOM objects back.

Two routes, chosen by the server's address:

- ``http://host:port/dicom-web`` (DICOMweb): QIDO-RS to find studies and
  instances, WADO-RS to fetch them, STOW-RS to push (``dicomweb-client``);
- ``dimse://CALLED_AET@host:port`` (DIMSE): C-FIND to find, C-GET to fetch,
  C-STORE to push (``pynetdicom``), our AE title being ``calling_aet``.

The archive layout is ``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``,
which ``index``/``run`` crawl like any other folder. A pull is resumable: an
instance whose file exists is not fetched again. Each file is written to a
hidden temporary name in its folder and renamed when complete, so an
interrupted pull leaves complete files or nothing (stale temporaries of a
killed pull are removed by the next one). Every failure is a
:class:`PacsError` naming the server and the request.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pipelines.outputs.files import safe_name

#: Our AE title when none is given.
DEFAULT_CALLING_AET = "TUMORRESP"
#: Seconds before a silent server is given up on (connection, each DIMSE message, each HTTP response).
DEFAULT_TIMEOUT_S = 30.0

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

Progress = Callable[[int, int, int], None]  # (instances done, instances total, bytes written)


class PacsError(RuntimeError):
    """A query, transfer or push failed; the message names the server and the request."""


@dataclass(frozen=True)
class Server:
    """A PACS address: a DICOMweb base URL, or a DIMSE AE title, host and port."""

    kind: Literal["dicomweb", "dimse"]
    text: str
    host: str
    port: int
    called_aet: str = ""
    base_url: str = ""

    def __str__(self) -> str:
        return self.text


def parse_server(text: str) -> Server:
    """Parse ``http(s)://host:port/path`` or ``dimse://CALLED_AET@host:port``.

    Raises
    ------
    PacsError
        Anything else, with the expected forms.
    """
    parts = urlsplit(text.strip())
    forms = "expected http://host:port/dicom-web (DICOMweb) or dimse://CALLED_AET@host:port (DIMSE)"
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise PacsError(f"server {text!r}: no host; {forms}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Server("dicomweb", text.strip(), parts.hostname, port, base_url=text.strip().rstrip("/"))
    if parts.scheme == "dimse":
        aet = parts.username or ""
        if not aet or not parts.hostname or not parts.port:
            raise PacsError(f"server {text!r}: {forms}")
        if len(aet) > 16:
            raise PacsError(f"server {text!r}: AE title {aet!r} is longer than 16 characters")
        return Server("dimse", text.strip(), parts.hostname, parts.port, called_aet=aet)
    raise PacsError(f"server {text!r}: unknown scheme {parts.scheme or '(none)'!r}; {forms}")


@dataclass(frozen=True)
class StudyQuery:
    """Which studies to pull: all given criteria must hold (dates are StudyDate, inclusive)."""

    patient_id: str | None = None
    study_uid: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None

    def describe(self) -> str:
        parts = []
        if self.patient_id:
            parts.append(f"PatientID={self.patient_id}")
        if self.study_uid:
            parts.append(f"StudyInstanceUID={self.study_uid}")
        if self.since or self.until:
            parts.append(f"StudyDate={self.date_range()}")
        return ", ".join(parts) or "all studies"

    def date_range(self) -> str:
        """DICOM range matching: ``YYYYMMDD-YYYYMMDD``, open on a missing side; empty for no constraint."""
        if not (self.since or self.until):
            return ""
        a = self.since.strftime("%Y%m%d") if self.since else ""
        b = self.until.strftime("%Y%m%d") if self.until else ""
        return f"{a}-{b}"


@dataclass(frozen=True)
class RemoteInstance:
    """One instance on the server, with where it goes in the archive."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""

    def relative_path(self) -> Path:
        return Path(safe_name(self.patient_id or "unknown")) / self.study_uid / self.series_uid / f"{self.sop_uid}.dcm"


@dataclass
class PullResult:
    """What a pull found and did."""

    server: str
    studies: list[str] = field(default_factory=list)
    found: int = 0
    fetched: int = 0
    already_present: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 2**20 / self.seconds if self.seconds > 0 else 0.0

    @property
    def instances_per_s(self) -> float:
        return self.fetched / self.seconds if self.seconds > 0 else 0.0


@dataclass
class PushResult:
    server: str
    sent: int = 0
    bytes: int = 0


def _check_uid(uid: str, what: str, server: Server) -> str:
    # UIDs become path components: a server sending anything else must not write outside the archive.
    uid = uid.strip()
    if not _UID.match(uid) or len(uid) > 64:
        raise PacsError(f"{server}: the server sent an invalid {what} {uid!r}")
    return uid


# --------------------------------------------------------------------------------------------- writing


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(archive: Path, instances: Iterable[RemoteInstance]) -> None:
    """Temporaries a killed pull left in the folders this pull writes to."""
    for folder in {(archive / i.relative_path()).parent for i in instances}:
        if folder.is_dir():
            for stale in folder.glob(".*.dcm.*.tmp"):
                stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- DICOMweb


def _session(timeout_s: float):
    """A requests session whose every request has a timeout (dicomweb-client sets one on GET only)."""
    import requests

    class Session(requests.Session):
        def request(self, *args, **kwargs):  # type: ignore[override]
            kwargs.setdefault("timeout", timeout_s)
            return super().request(*args, **kwargs)

    return Session()


def _web_client(server: Server, timeout_s: float):
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=server.base_url, session=_session(timeout_s), timeout=timeout_s)
    client.set_http_retry_params(retry=False)
    return client


def _web_error(server: Server, request: str, exc: Exception) -> PacsError:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        hint = {401: "authentication required", 403: "access refused", 404: "not found on the server"}.get(status, "")
        return PacsError(f"{server}: {request}: HTTP {status} {exc.response.reason}" + (f" ({hint})" if hint else ""))
    if isinstance(exc, requests.ConnectionError):
        return PacsError(f"{server}: {request}: cannot reach the server or the connection was cut ({type(exc).__name__})")
    if isinstance(exc, requests.Timeout):
        return PacsError(f"{server}: {request}: no answer within the timeout")
    return PacsError(f"{server}: {request}: {type(exc).__name__}: {exc}")


def _json_value(record: dict, tag: str) -> str:
    values = (record.get(tag) or {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # PN
        value = value.get("Alphabetic", "")
    return str(value)


def _web_find(server: Server, query: StudyQuery, timeout_s: float) -> list[RemoteInstance]:
    import requests

    client = _web_client(server, timeout_s)
    filters: dict[str, str] = {}
    if query.patient_id:
        filters["PatientID"] = query.patient_id
    if query.study_uid:
        filters["StudyInstanceUID"] = query.study_uid
    if query.date_range():
        filters["StudyDate"] = query.date_range()
    request = f"QIDO-RS studies ({query.describe()})"
    try:
        studies = client.search_for_studies(search_filters=filters, get_remaining=True,
                                            fields=["PatientID", "StudyDate"])
    except (requests.RequestException, ValueError) as exc:
        raise _web_error(server, request, exc) from None
    out = []
    for study in studies:
        study_uid = _check_uid(_json_value(study, "0020000D"), "StudyInstanceUID", server)
        patient = _json_value(study, "00100020")
        req = f"QIDO-RS instances of study {study_uid}"
        try:
            instances = client.search_for_instances(study_instance_uid=study_uid, get_remaining=True,
                                                    fields=["SOPClassUID"])
        except (requests.RequestException, ValueError) as exc:
            raise _web_error(server, req, exc) from None
        for inst in instances:
            out.append(RemoteInstance(
                patient_id=patient, study_uid=study_uid,
                series_uid=_check_uid(_json_value(inst, "0020000E"), "SeriesInstanceUID", server),
                sop_uid=_check_uid(_json_value(inst, "00080018"), "SOPInstanceUID", server),
                sop_class_uid=_json_value(inst, "00080016"),
            ))
    return out


class _Tally:
    """Instances and bytes written so far, shared by the worker threads; reports progress."""

    def __init__(self, done: int, total: int, progress: Progress | None) -> None:
        self.done = done
        self.total = total
        self.fetched = 0
        self.bytes = 0
        self._progress = progress
        self._lock = threading.Lock()

    def add(self, size: int) -> None:
        with self._lock:
            self.done += 1
            self.fetched += 1
            self.bytes += size
            if self._progress:
                self._progress(self.done, self.total, self.bytes)


@dataclass
class _SeriesJob:
    """The missing instances of one series (``targets``: SOPInstanceUID -> path) and whether to ask per series."""

    study_uid: str
    series_uid: str
    targets: dict[str, Path]
    whole_series: bool

    def describe(self) -> str:
        return f"series {self.series_uid} (study {self.study_uid})"

    def check_complete(self, server: Server, request: str) -> None:
        missing = [uid for uid, t in self.targets.items() if not t.is_file()]
        if missing:
            raise PacsError(f"{server}: {request}: {len(missing)} of {len(self.targets)} instance(s) not received "
                            f"(e.g. {missing[0]}); the transfer was cut or the server no longer has them")


#: WADO-RS media type: DICOM instances as stored (``transfer-syntax=*``: no transcoding by the server).
_WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_CHUNK = 1 << 20


class _TransferCut(Exception):
    """The multipart stream ended before its closing boundary."""


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            return value.strip().strip('"').encode()
    raise ValueError(f"no boundary in Content-Type {content_type!r}")


def _multipart_parts(chunks: Iterable[bytes], boundary: bytes, folder: Path) -> Iterable[Path]:
    """Write each part of a multipart/related body to a temporary file in ``folder``; yield it once complete.

    A part is complete only when the delimiter after it has arrived, so a cut
    connection never yields a truncated instance (the partial temporary is removed
    and :class:`_TransferCut` raised). dicomweb-client's streaming decoder yields the
    truncated last part in that case, which is why WADO-RS is read here.
    """
    delimiter = b"\r\n--" + boundary
    buffer = b"\r\n"  # so that the first delimiter looks like every other one
    state = "seek"
    fh = None
    tmp: Path | None = None
    stream = iter(chunks)
    try:
        while True:
            if state == "seek":
                i = buffer.find(delimiter)
                if i >= 0 and len(buffer) >= i + len(delimiter) + 2:
                    after = buffer[i + len(delimiter): i + len(delimiter) + 2]
                    if after == b"--":
                        return  # closing delimiter: every part was complete
                    buffer = buffer[i + len(delimiter):]
                    state = "headers"
                    continue
            elif state == "headers":
                i = buffer.find(b"\r\n\r\n")
                if i >= 0:
                    buffer = buffer[i + 4:]
                    fd, name = tempfile.mkstemp(prefix=".incoming.dcm.", suffix=".tmp", dir=folder)
                    fh, tmp = os.fdopen(fd, "wb"), Path(name)
                    state = "body"
                    continue
            else:  # body
                assert fh is not None and tmp is not None
                i = buffer.find(delimiter)
                if i >= 0:
                    fh.write(buffer[:i])
                    fh.close()
                    done, fh, tmp = tmp, None, None
                    buffer = buffer[i:]
                    state = "seek"
                    yield done
                    continue
                keep = len(delimiter) - 1  # a delimiter may straddle two chunks
                if len(buffer) > keep:
                    fh.write(buffer[:-keep])
                    buffer = buffer[-keep:]
            try:
                chunk = next(stream)
            except StopIteration:
                raise _TransferCut() from None
            buffer += chunk
    finally:
        if fh is not None:
            fh.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)


class _WebFetcher:
    """WADO-RS over one requests session per worker thread; each instance written once it is complete."""

    def __init__(self, server: Server, timeout_s: float, tally: _Tally) -> None:
        self.server = server
        self.timeout_s = timeout_s
        self.tally = tally
        self._local = threading.local()

    def _http(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _session(self.timeout_s)
        return session

    def _retrieve(self, url: str, job: _SeriesJob, request: str) -> None:
        import pydicom
        import requests

        folder = next(iter(job.targets.values())).parent
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with self._http().get(url, headers={"Accept": _WADO_ACCEPT}, stream=True) as response:
                response.raise_for_status()
                boundary = _boundary(response.headers.get("Content-Type", ""))
                for part in _multipart_parts(response.iter_content(_CHUNK), boundary, folder):
                    try:
                        sop_uid = str(pydicom.dcmread(part, stop_before_pixels=True).SOPInstanceUID)
                    except (pydicom.errors.InvalidDicomError, AttributeError, OSError, ValueError) as exc:
                        part.unlink(missing_ok=True)
                        raise PacsError(f"{self.server}: {request}: the server sent a part that is not a DICOM "
                                        f"instance ({exc})") from None
                    target = job.targets.get(sop_uid)
                    if target is None or target.is_file():
                        part.unlink()  # already in the archive (resumed pull), or added since the query
                        continue
                    size = part.stat().st_size
                    os.chmod(part, 0o644)
                    os.replace(part, target)
                    self.tally.add(size)
        except _TransferCut:
            raise PacsError(f"{self.server}: {request}: the transfer was cut (the response ended before its last "
                            "instance was complete)") from None
        except (requests.RequestException, ValueError) as exc:
            raise _web_error(self.server, request, exc) from None

    def fetch(self, job: _SeriesJob) -> None:
        base = f"{self.server.base_url}/studies/{job.study_uid}/series/{job.series_uid}"
        if job.whole_series:
            request = f"WADO-RS {job.describe()}"
            self._retrieve(base, job, request)
            job.check_complete(self.server, request)
            return
        for sop_uid in list(job.targets):
            self._retrieve(f"{base}/instances/{sop_uid}", job, f"WADO-RS instance {sop_uid} of {job.describe()}")
        job.check_complete(self.server, f"WADO-RS instances of {job.describe()}")


# --------------------------------------------------------------------------------------------- DIMSE


def _ae(calling_aet: str, timeout_s: float):
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.connection_timeout = min(timeout_s, 10.0)
    return ae


def _associate(ae, server: Server, request: str, **kwargs):
    assoc = ae.associate(server.host, server.port, ae_title=server.called_aet, **kwargs)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise PacsError(
            f"{server}: {request}: the server rejected the association (called AE title {server.called_aet!r}, "
            f"calling AE title {ae.ae_title!r}); check that it is the server's AE title and that the server knows ours"
        )
    raise PacsError(f"{server}: {request}: cannot reach the server (no association; connection refused or timed out)")


def _no_answer(assoc, operation: str) -> str:
    """Why a DIMSE request got no answer: an abort by the server (a refusal, for Orthanc), or silence."""
    assoc.join(timeout=2.0)  # the association's thread records the abort just after the empty answer
    if assoc.is_aborted:
        return (f"the server aborted the association (does it allow our AE title {assoc.requestor.ae_title!r} "
                f"to {operation}? it must be declared as a modality there)")
    return "no answer within the timeout (or the connection was cut)"


def _find(assoc, identifier, server: Server, request: str) -> list:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]  # generated at import

    out = []
    for status, result in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
        if not status:
            raise PacsError(f"{server}: {request}: {_no_answer(assoc, 'C-FIND')}")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            out.append(result)
        elif code != 0x0000:
            raise PacsError(f"{server}: {request}: C-FIND failed with status 0x{code:04X}")
    return out


def _dimse_find(server: Server, query: StudyQuery, calling_aet: str, timeout_s: float) -> list[RemoteInstance]:
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]  # generated at import

    ae = _ae(calling_aet, timeout_s)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    request = f"C-FIND studies ({query.describe()})"
    assoc = _associate(ae, server, request)
    try:
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.PatientID = query.patient_id or ""
        q.StudyInstanceUID = query.study_uid or ""
        q.StudyDate = query.date_range()
        studies = _find(assoc, q, server, request)
        out = []
        for study in studies:
            study_uid = _check_uid(str(study.get("StudyInstanceUID", "")), "StudyInstanceUID", server)
            patient = str(study.get("PatientID", ""))
            s = Dataset()
            s.QueryRetrieveLevel = "SERIES"
            s.StudyInstanceUID = study_uid
            s.SeriesInstanceUID = ""
            for series in _find(assoc, s, server, f"C-FIND series of study {study_uid}"):
                series_uid = _check_uid(str(series.get("SeriesInstanceUID", "")), "SeriesInstanceUID", server)
                i = Dataset()
                i.QueryRetrieveLevel = "IMAGE"
                i.StudyInstanceUID = study_uid
                i.SeriesInstanceUID = series_uid
                i.SOPInstanceUID = ""
                i.SOPClassUID = ""
                for inst in _find(assoc, i, server, f"C-FIND instances of series {series_uid}"):
                    out.append(RemoteInstance(
                        patient_id=patient, study_uid=study_uid, series_uid=series_uid,
                        sop_uid=_check_uid(str(inst.get("SOPInstanceUID", "")), "SOPInstanceUID", server),
                        sop_class_uid=str(inst.get("SOPClassUID", "")),
                    ))
        return out
    finally:
        assoc.release()


def _storage_transfer_syntaxes() -> list[str]:
    from pydicom.uid import (
        JPEG2000,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        RLELossless,
    )

    # Everything we can store as received, so the server need not transcode (and cannot degrade) anything.
    return [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
            JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
            JPEG2000Lossless, JPEG2000, RLELossless]


class _DimseFetcher:
    """C-GET over one association per worker thread; received instances are written as they arrive."""

    def __init__(self, server: Server, calling_aet: str, timeout_s: float, sop_classes: Sequence[str],
                 tally: _Tally) -> None:
        self.server = server
        self.calling_aet = calling_aet
        self.timeout_s = timeout_s
        self.sop_classes = sorted(set(sop_classes))
        self.tally = tally
        self.targets: dict[str, Path] = {}  # every instance of the jobs: SOPInstanceUID -> archive path
        self._local = threading.local()
        self._assocs: list = []
        self._lock = threading.Lock()

    def _on_store(self, event) -> int:
        target = self.targets.get(str(event.request.AffectedSOPInstanceUID))
        if target is None:
            return 0xA700  # not asked for (added to the series since the query): refused, the archive stays as found
        if target.is_file():
            return 0x0000  # already in the archive: a series-level C-GET of a resumed pull sends it again
        try:
            data = event.encoded_dataset()
            _write_atomic(target, data)
        except OSError:
            return 0xA700
        self.tally.add(len(data))
        return 0x0000

    def _association(self):
        from pynetdicom import build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]  # generated at import

        assoc = getattr(self._local, "assoc", None)
        if assoc is not None and assoc.is_established:
            return assoc
        if len(self.sop_classes) > 127:
            raise PacsError(f"{self.server}: {len(self.sop_classes)} SOP classes exceed one association's 128 contexts")
        ae = _ae(self.calling_aet, self.timeout_s)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for uid in self.sop_classes:
            ae.add_requested_context(uid, _storage_transfer_syntaxes())
            roles.append(build_role(uid, scp_role=True))
        assoc = _associate(ae, self.server, "C-GET association", ext_neg=roles,
                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self._local.assoc = assoc
        with self._lock:
            self._assocs.append(assoc)
        return assoc

    def _get(self, identifier, request: str, job: _SeriesJob) -> None:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]  # generated at import

        assoc = self._association()
        final = None
        for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
            if not status:
                if any(t.is_file() for t in job.targets.values()):  # instances were arriving: a cut, not a refusal
                    raise PacsError(f"{self.server}: {request}: the transfer was cut (association aborted or timed "
                                    "out)")
                raise PacsError(f"{self.server}: {request}: {_no_answer(assoc, 'C-GET')}")
            final = int(status.Status)
        if final not in (0x0000, 0xB000):
            raise PacsError(f"{self.server}: {request}: failed (C-GET status "
                            f"{'none' if final is None else f'0x{final:04X}'})")

    def fetch(self, job: _SeriesJob) -> None:
        from pydicom.dataset import Dataset

        q = Dataset()
        q.StudyInstanceUID = job.study_uid
        q.SeriesInstanceUID = job.series_uid
        if job.whole_series:
            q.QueryRetrieveLevel = "SERIES"
            request = f"C-GET {job.describe()}"
            self._get(q, request, job)
            job.check_complete(self.server, request)
            return
        q.QueryRetrieveLevel = "IMAGE"
        for sop_uid in job.targets:
            q.SOPInstanceUID = sop_uid
            self._get(q, f"C-GET instance {sop_uid} of {job.describe()}", job)
        job.check_complete(self.server, f"C-GET instances of {job.describe()}")

    def close(self) -> None:
        with self._lock:
            for assoc in self._assocs:
                if assoc.is_established:
                    assoc.release()
            self._assocs.clear()


# --------------------------------------------------------------------------------------------- public API


def find_instances(server: Server | str, query: StudyQuery, *, calling_aet: str = DEFAULT_CALLING_AET,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> list[RemoteInstance]:
    """Every instance of the studies matching ``query`` on ``server``.

    Raises
    ------
    PacsError
        Server unreachable, association rejected, a failed query; or no study matches
        (an unknown patient), naming the query.
    """
    srv = parse_server(server) if isinstance(server, str) else server
    if srv.kind == "dicomweb":
        found = _web_find(srv, query, timeout_s)
    else:
        found = _dimse_find(srv, query, calling_aet, timeout_s)
    if not found:
        raise PacsError(f"{srv}: no study matches {query.describe()}")
    return found


#: A series missing at least this many instances (or all of them) is fetched in one request: Orthanc answers a
#: per-series WADO-RS / C-GET 10-20x faster per instance than one request per instance (see docs/pacs.md).
SERIES_REQUEST_MIN = 4


def _jobs(instances: list[RemoteInstance], root: Path) -> tuple[list[_SeriesJob], int]:
    """One job per series with missing instances; and how many instances are already in the archive."""
    by_series: dict[tuple[str, str], list[RemoteInstance]] = {}
    for inst in instances:
        by_series.setdefault((inst.study_uid, inst.series_uid), []).append(inst)
    jobs, present = [], 0
    for (study_uid, series_uid), members in by_series.items():
        targets = {i.sop_uid: root / i.relative_path() for i in members}
        missing = {uid: t for uid, t in targets.items() if not t.is_file()}
        present += len(targets) - len(missing)
        if missing:
            whole = len(missing) == len(targets) or len(missing) >= SERIES_REQUEST_MIN
            jobs.append(_SeriesJob(study_uid, series_uid, missing, whole))
    return jobs, present


def pull(
    server: Server | str,
    archive: str | os.PathLike[str],
    query: StudyQuery = StudyQuery(),
    *,
    workers: int = 4,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
) -> PullResult:
    """Fetch the studies matching ``query`` into ``archive``, skipping instances already there.

    Parameters
    ----------
    server
        ``http://host:port/dicom-web`` or ``dimse://CALLED_AET@host:port`` (or a parsed :class:`Server`).
    archive
        Folder receiving ``<PatientID>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.
    query
        Patient, study and StudyDate range; all studies when empty.
    workers
        Concurrent transfers (HTTP connections, or DIMSE associations), one series each.
    progress
        Called after each instance written with (done, total, bytes written), from worker threads.

    Returns
    -------
    PullResult
        Counts, bytes and seconds of the transfer (queries excluded).

    Raises
    ------
    PacsError
        Naming the server and the request that failed. Files completed before the
        failure stay (a rerun resumes), nothing partial is left.
    """
    srv = parse_server(server) if isinstance(server, str) else server
    root = Path(archive)
    root.mkdir(parents=True, exist_ok=True)
    instances = find_instances(srv, query, calling_aet=calling_aet, timeout_s=timeout_s)
    _remove_stale_temporaries(root, instances)
    jobs, present = _jobs(instances, root)
    result = PullResult(server=str(srv), studies=sorted({i.study_uid for i in instances}), found=len(instances),
                        already_present=present)
    tally = _Tally(present, len(instances), progress)
    if progress:
        progress(present, len(instances), 0)
    if not jobs:
        return result

    if srv.kind == "dicomweb":
        fetcher: _WebFetcher | _DimseFetcher = _WebFetcher(srv, timeout_s, tally)
    else:
        fetcher = _DimseFetcher(srv, calling_aet, timeout_s, [i.sop_class_uid for i in instances if i.sop_class_uid],
                                tally)
        fetcher.targets = {i.sop_uid: root / i.relative_path() for i in instances}
    started = time.perf_counter()
    stop = threading.Event()

    def run(job: _SeriesJob) -> None:
        if not stop.is_set():  # after a failure, queued series are not started
            fetcher.fetch(job)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="pull") as pool:
            futures = [pool.submit(run, job) for job in jobs]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = next((f for f in finished if f.exception() is not None), None)
                if failed is not None:
                    stop.set()
                    for f in pending:
                        f.cancel()
                    raise failed.exception()  # type: ignore[misc]
    finally:
        if isinstance(fetcher, _DimseFetcher):
            fetcher.close()
        result.seconds = time.perf_counter() - started
        result.fetched, result.bytes = tally.fetched, tally.bytes
    return result


def push(
    server: Server | str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> PushResult:
    """Send DICOM files (e.g. the SEG and SR of an export) to ``server``: STOW-RS or C-STORE.

    Folders are searched for ``*.dcm`` files. Raises :class:`PacsError` naming the file and the server.
    """
    import pydicom

    srv = parse_server(server) if isinstance(server, str) else server
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*.dcm") if not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise PacsError(f"{srv}: push: {p} does not exist")
    if not files:
        raise PacsError(f"{srv}: push: no DICOM file in {', '.join(map(str, paths))}")
    datasets = []
    for f in files:
        try:
            datasets.append((f, pydicom.dcmread(f)))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise PacsError(f"{srv}: push: {f} is not readable DICOM ({exc})") from None
    result = PushResult(server=str(srv))
    if srv.kind == "dicomweb":
        _web_push(srv, datasets, timeout_s, result)
    else:
        _dimse_push(srv, datasets, calling_aet, timeout_s, result)
    return result


def _web_push(srv: Server, datasets: list, timeout_s: float, result: PushResult) -> None:
    import requests

    client = _web_client(srv, timeout_s)
    for path, ds in datasets:
        request = f"STOW-RS {path.name} (SOPInstanceUID {ds.SOPInstanceUID})"
        try:
            response = client.store_instances([ds])
        except (requests.RequestException, ValueError) as exc:
            raise _web_error(srv, request, exc) from None
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"{srv}: {request}: refused by the server (failure reason {reason})")
        result.sent += 1
        result.bytes += path.stat().st_size


def _dimse_push(srv: Server, datasets: list, calling_aet: str, timeout_s: float, result: PushResult) -> None:
    ae = _ae(calling_aet, timeout_s)
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets})
    by_class: dict[str, list[str]] = {}
    for sop_class, ts in contexts:
        by_class.setdefault(sop_class, []).append(ts)
    for sop_class, syntaxes in by_class.items():
        ae.add_requested_context(sop_class, syntaxes)
    assoc = _associate(ae, srv, f"C-STORE of {len(datasets)} file(s)")
    try:
        for path, ds in datasets:
            request = f"C-STORE {path.name} (SOPInstanceUID {ds.SOPInstanceUID})"
            status = assoc.send_c_store(ds)
            if not status:
                raise PacsError(f"{srv}: {request}: {_no_answer(assoc, 'C-STORE')}")
            code = int(status.Status)
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise PacsError(f"{srv}: {request}: refused with status 0x{code:04X}")
            result.sent += 1
            result.bytes += path.stat().st_size
    finally:
        if assoc.is_established:
            assoc.release()
