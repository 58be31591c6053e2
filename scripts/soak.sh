#!/usr/bin/env bash
# Soak test of the pool manager (not run by CI): a producer and a consumer
# process cycle small objects (offer, demand, withdraw) through a separate
# `cdo-pm` for MINUTES (default 10) at SOAK_RATE objects/s (default 20000),
# while the manager's resident memory, descriptors, memfds and /dev/shm are
# sampled every SOAK_EVERY seconds (default 10). Prints a table and a
# verdict; exits 1 when resident memory grows beyond SOAK_RSS_TOLERANCE
# percent (default 10) after the warm-up, descriptors grow, or anything is
# left behind.
#
#   bash scripts/soak.sh             # 10 minutes, optimized build
#   SOAK_PROFILE=dev bash scripts/soak.sh 3
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
profile=${SOAK_PROFILE:-release}
bash scripts/setup.sh
if [ "$profile" = release ]; then
  cargo build --release --locked -q -p mamba-benches --bin soak -p cdo --bin cdo-pm
  dir=target/release
else
  cargo build --locked -q -p mamba-benches --bin soak -p cdo --bin cdo-pm
  dir=target/debug
fi
exec "$dir/soak" --minutes "$minutes" --rate "${SOAK_RATE:-20000}" \
  --every "${SOAK_EVERY:-10}" --rss-tolerance "${SOAK_RSS_TOLERANCE:-10}" --size "${SOAK_SIZE:-256}"
