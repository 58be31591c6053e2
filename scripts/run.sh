#!/usr/bin/env bash
# The main job: prints this node's memory tiers and runs a short allocation
# demo on them. Arguments go to the `mamba` tool (e.g. `tiers --json`, or
# `--topology mamba/tests/data/xeon-max-2s.xml demo` for a simulated node).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- demo; fi
cargo run --release --locked -q -p mamba --bin mamba -- "$@"
