"""Patient privacy in outputs: keyed pseudonyms for patient ids and UIDs.

Tabular outputs, logs and reports never carry PatientName, PatientBirthDate or
any other header identifier: the crawl does not read them. What remains
identifying is the PatientID (often a hospital record number) and the DICOM
UIDs; with ``privacy.pseudonymise: true`` both are replaced by an HMAC-SHA256
of the value under a secret key from the config (or, better, from an
environment variable), so the same patient gets the same pseudonym in every
run with that key, and nobody without the key can link it back.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from pipelines.config import PrivacyConfig


class PrivacyError(ValueError):
    """Pseudonymisation asked for without a usable key."""


class Pseudonymiser:
    """Maps identifiers to what the outputs may show."""

    def __init__(self, config: PrivacyConfig) -> None:
        self.enabled = config.pseudonymise
        self._key: bytes | None = None
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
        if not self.enabled or not uid:
            return uid
        return "2.25." + str(int(self._digest("uid", uid)[:32], 16))

    def scrub(self, text: str, patient_ids: list[str]) -> str:
        """Replace raw patient ids in a message (paths often contain them) by their pseudonyms."""
        if not self.enabled:
            return text
        for pid in sorted(patient_ids, key=len, reverse=True):
            if pid:
                text = text.replace(pid, self.patient(pid))
        return text
