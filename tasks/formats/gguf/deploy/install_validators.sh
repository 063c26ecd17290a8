#!/usr/bin/env bash
# Validators of the generated deployment files and the Ollama template renderer, for `make test`
# and CI. The main job never needs them: a package made without one says "not validated".
#  - checkov: its own venv (.venv-tools), because it pins old versions of shared libraries
#    (openai 0.28, networkx 2.6) that must stay out of the project's venv.
#  - go (text/template), promtool, docker-compose, chromium: Debian packages, installed only where
#    this user is root and apt-get exists; elsewhere this says what it skipped.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
TOOLS=.venv-tools
CHECKOV_VERSION=3.3.30
mkdir -p .venv/logs

if [[ ! -f "$TOOLS/.installed" ]]; then
  echo "[setup] checkov $CHECKOV_VERSION in its own venv ($TOOLS)"
  start=$SECONDS
  { python3 -m venv "$TOOLS" && "$TOOLS/bin/python" -m pip install "checkov==$CHECKOV_VERSION"; } >.venv/logs/checkov.log 2>&1 \
    || { tail -20 .venv/logs/checkov.log >&2; echo "[setup] checkov did not install (log: .venv/logs/checkov.log)" >&2; exit 1; }
  touch "$TOOLS/.installed"
  echo "[setup]   done in $((SECONDS - start)) s"
fi

declare -A PACKAGE=([go]=golang-go [promtool]=prometheus [docker-compose]=docker-compose [chromium]=chromium)
missing=()
for tool in go promtool docker-compose chromium; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
packages=()
for tool in "${missing[@]}"; do packages+=("${PACKAGE[$tool]}"); done
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] Debian packages for the validators: ${packages[*]}"
  start=$SECONDS
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"; } >.venv/logs/apt.log 2>&1 \
    || { tail -20 .venv/logs/apt.log >&2; echo "[setup] apt-get failed (log: .venv/logs/apt.log)" >&2; exit 1; }
  echo "[setup]   done in $((SECONDS - start)) s"
else
  echo "[setup] skipped ${missing[*]} (Debian packages ${packages[*]}: needs root with apt-get);" \
       "the tests that need them skip, and packages say 'not validated'"
fi
