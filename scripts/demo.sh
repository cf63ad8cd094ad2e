#!/usr/bin/env bash
# The main job: set up, then run the observed synthetic-data pipeline on Prefect's
# ephemeral server (the embedded default) and print a summary.
# Extra arguments go to `synthobs demo` (e.g. --rows 100000 --epochs 8).
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" ""
exec .venv/bin/synthobs demo "$@"
