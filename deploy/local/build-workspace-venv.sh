#!/usr/bin/env bash
# Build (or bring up to date) the workspace environment the researchers' single-user servers run in.
#
# Why a second environment: on these hosts root's home is private (0700) and the repo's .venv points at
# a pyenv interpreter inside it, so a process running as a researcher's Unix user cannot even start
# Python from it. The workspace environment uses Debian's python3.11 (readable by everyone) and lives
# outside root's home, world-readable but writable only by root. `tre_lib` is installed from a built
# wheel (not editable), so nothing in it points back at the repository.
#
# Usage: deploy/local/build-workspace-venv.sh [VENV_DIR]      (default /opt/tre/workspace-venv)
# Idempotent: a stamp file records the hash of the inputs; nothing is reinstalled when they match.
# Last, a warm-up Spark session writes the driver JVM's class-data-sharing archive (share/tre/, see
# tre_lib/compute/spark_archive.py): it is valid for exactly these jars and this JDK, so the JDK's build is an
# input too.
# Needs root (it writes under /opt); `make setup` calls it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-${TRE_WORKSPACE_VENV:-/opt/tre/workspace-venv}}"
PYTHON="${TRE_WORKSPACE_PYTHON:-/usr/bin/python3.11}"
MAIN_PY="${REPO}/.venv/bin/python"
REQS="${REPO}/deploy/local/workspace-requirements.txt"

if [[ "$(id -u)" -ne 0 ]]; then
  echo "error: building ${VENV} needs root (it is installed system-wide for the researchers' Unix users)." >&2
  echo "       run: sudo $0 ${VENV}" >&2
  exit 1
fi
if [[ ! -x "${PYTHON}" ]]; then
  echo "error: ${PYTHON} is missing; install Debian's interpreter first:" >&2
  echo "       apt-get install -y python3.11 python3.11-venv" >&2
  exit 1
fi
if ! "${PYTHON}" -c 'import ensurepip' 2>/dev/null; then
  echo "error: ${PYTHON} has no venv support; run: apt-get install -y python3.11-venv" >&2
  exit 1
fi

umask 022
# Pin the workspace to exactly the versions the control plane is tested with (same hub protocol,
# same pyspark as the pipelines), so a notebook behaves in a workspace as it does in CI.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "${CONSTRAINTS}"' EXIT
# Only the packages named in the requirement list are pinned: their dependencies may need other builds
# on Debian's 3.11.2 than on the control plane's interpreter.
if [[ -x "${MAIN_PY}" ]]; then
  NAMES="$(grep -v -E '^\s*(#|$)' "${REQS}" | sed -E 's/\[.*//; s/[<>=].*//' | tr 'A-Z_' 'a-z-' | paste -sd'|')"
  "${MAIN_PY}" -m pip freeze --exclude-editable | tr 'A-Z_' 'a-z-' | grep -E "^(${NAMES})==" >"${CONSTRAINTS}" || true
fi

# The stamp covers the requirement list, the pins, the library's sources and the JDK.
STAMP_INPUT="$( { cat "${REQS}" "${CONSTRAINTS}"; java -version 2>&1 || true; cd "${REPO}" && find tre_lib \
  pyproject.toml -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum \
  | cut -d' ' -f1)"
STAMP="${VENV}/.tre-workspace-stamp"
ARCHIVE="${VENV}/share/tre/spark-classes.jsa"
if [[ -f "${STAMP}" && "$(cat "${STAMP}")" == "${STAMP_INPUT}" && -x "${VENV}/bin/jupyterhub-singleuser" \
      && -f "${ARCHIVE}" ]]; then
  echo "workspace environment ${VENV} is up to date"
  exit 0
fi

mkdir -p "$(dirname "${VENV}")"
chmod 0755 "$(dirname "${VENV}")"
if [[ ! -x "${VENV}/bin/python" ]]; then
  "${PYTHON}" -m venv "${VENV}"
fi
"${VENV}/bin/python" -m pip install -q --upgrade pip wheel 2>&1 | grep -v "is ignored" || true
"${VENV}/bin/python" -m pip install -q -c "${CONSTRAINTS}" -r "${REQS}"

# tre_lib from a wheel built from the repo (no dependencies: the list above is what a workspace needs;
# the control plane's web, database and policy dependencies are deliberately absent).
WHEELDIR="$(mktemp -d)"
"${VENV}/bin/python" -m pip wheel -q --no-deps -w "${WHEELDIR}" "${REPO}"
"${VENV}/bin/python" -m pip install -q --force-reinstall --no-deps "${WHEELDIR}"/tre-*.whl
rm -rf "${WHEELDIR}"

# Without the archive Spark works, only its first session in a workspace takes ~2-3x longer; the next
# run of this script tries again (the up-to-date check above wants the archive).
echo "warming up Spark for its class archive (about a minute) ..."
"${VENV}/bin/python" -m tre_lib.compute.spark_archive "${ARCHIVE}" \
  || echo "warning: no Spark class archive (see above); workspaces start Spark without it" >&2

chmod -R go+rX,go-w "${VENV}"
echo "${STAMP_INPUT}" >"${STAMP}"
echo "workspace environment ready: ${VENV}"
"${VENV}/bin/python" -c 'import tre_lib, pyspark, dask, polars; print("tre_lib", tre_lib.__version__, "pyspark", pyspark.__version__)'
