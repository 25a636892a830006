#!/usr/bin/env bash
# One command: mieruka vs peer job queues, one markdown table. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/run.py "$@"
