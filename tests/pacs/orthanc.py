"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) on 127.0.0.1, for the PACS tests.

Started with a temporary configuration and storage: free HTTP and DICOM
ports, the DICOMweb plugin, no remote access, no authentication, the called AE
title checked (so a wrong one is refused) and our SCU's AE title declared as a
modality allowed to C-FIND/C-GET/C-STORE.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
#: Where Debian's orthanc-dicomweb puts the plugin (the versioned library is in /usr/lib/orthanc).
DICOMWEB_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
SERVER_AET = "ORTHANCTEST"
CLIENT_AET = "TUMORRESP"
HOST = "127.0.0.1"


def orthanc_binary() -> str | None:
    found = shutil.which("Orthanc")
    if found:
        return found
    return next((p for p in ORTHANC_CANDIDATES if os.access(p, os.X_OK)), None)


def dicomweb_plugin() -> str | None:
    for p in DICOMWEB_PLUGIN_CANDIDATES:
        if Path(p).is_file():
            return p
    lib = Path("/usr/lib/orthanc")
    found = sorted(lib.glob("libOrthancDicomWeb.so*")) if lib.is_dir() else []
    return str(found[0]) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process with its own configuration and storage under ``workdir``."""

    def __init__(self, workdir: Path, binary: str, plugin: str) -> None:
        self.workdir = workdir
        self.binary = binary
        self.plugin = plugin
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "orthanc.log"
        storage = workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "orthanc.json"
        self.config_path.write_text(json.dumps({
            "Name": "tumor-response-tests",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": SERVER_AET,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {
                "tumorresp": {"AET": CLIENT_AET, "Host": HOST, "Port": free_port(), "AllowEcho": True,
                              "AllowFind": True, "AllowGet": True, "AllowMove": False, "AllowStore": True},
            },
            "DicomAssociationCloseDelay": 0,
            "ConcurrentJobs": 2,
            "HttpThreadsCount": 16,
            "DicomThreadsCount": 4,
            "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": HOST, "Ssl": False},
            "StableAge": 1,
            "SaveJobs": False,
        }, indent=2))

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{SERVER_AET}@{HOST}:{self.dicom_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--logdir=" + str(self.workdir), str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.process.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                if requests.get(f"{self.dicomweb}/studies", timeout=1).status_code == 200 and self._dimse_up():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.base} within {timeout_s} s; see {self.log_path}")

    def _dimse_up(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex((HOST, self.dicom_port)) == 0

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed server or a pulled cable looks to a client."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    # -- REST helpers (Orthanc's own API: the test's view of the server, independent of our client code)

    def upload(self, files: list[Path]) -> None:
        with requests.Session() as session:
            for f in files:
                r = session.post(f"{self.base}/instances", data=f.read_bytes(), timeout=30)
                r.raise_for_status()

    def instance_uids(self) -> set[str]:
        """SOPInstanceUIDs of every instance the server holds."""
        out = set()
        for orthanc_id in requests.get(f"{self.base}/instances", timeout=10).json():
            tags = requests.get(f"{self.base}/instances/{orthanc_id}/simplified-tags", timeout=10).json()
            out.add(tags["SOPInstanceUID"])
        return out

    def delete_instance(self, sop_uid: str) -> None:
        ids = requests.post(f"{self.base}/tools/lookup", data=sop_uid, timeout=10).json()
        for item in ids:
            requests.delete(f"{self.base}{item['Path']}", timeout=10).raise_for_status()
