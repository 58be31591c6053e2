#!/usr/bin/env bash
# The Python bindings' tests: builds the extension with maturin into a
# virtual environment (target/pyenv) reusing cargo's target directory and
# dev profile, then runs pytest on python/tests. The pool manager tests use
# target/debug/cdo-pm, built here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=target/pyenv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# maturin in the venv, so that the build below skips pip's isolated
# environment (a fresh download of maturin at each run).
"$venv/bin/pip" install -q numpy pytest 'maturin>=1.9.4,<2'
cargo build -q --locked -p cdo --bin cdo-pm
PATH="$root/$venv/bin:$PATH" CARGO_TARGET_DIR="$root/target" MATURIN_PEP517_ARGS="--profile dev" \
  "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps ./python
cd python && "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider tests
