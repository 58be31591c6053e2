#!/usr/bin/env bash
# Runs the whole test suite after installing what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
bash scripts/test-python.sh
