#!/usr/bin/env bash
# Debian packages the tests use (real parts, no mocks): chromium renders the HTML report,
# orthanc + orthanc-dicomweb are the PACS, dicom3tools validates DICOM objects (dciodvfy),
# libpixelmed-java's DicomSRValidator validates SR content trees against their templates (it does not
# depend on a Java runtime, so default-jre-headless is added when no `java` is on the PATH).
# Idempotent: installs only what is missing, and only as root; otherwise says what to install
# (the tests that need a missing part then skip locally and fail under CI).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
# node and npm run OHIF's own SR code in the tests (tests/viewers; developed on node 20).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# Packages by their dpkg state: Orthanc lives in /usr/sbin (not on a user's PATH) and the DICOMweb
# plugin is a shared library, so `command -v` cannot see them.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for pkg in orthanc orthanc-dicomweb dicom3tools libpixelmed-java; do
  installed "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages: ${need[*]} (run as root: apt-get install -y ${need[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system-deps: installed ${need[*]}"
