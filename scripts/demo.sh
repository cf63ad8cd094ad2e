#!/usr/bin/env bash
# The main job: set up, then run the observed synthetic-data pipeline on Prefect's ephemeral server (the
# embedded default) and print a summary.
# It trains SDV's GaussianCopula and a few CTGAN epochs on the CPU, so it runs in .venv-sdv (the `sdv` extra:
# SDV needs pandas < 3; PyTorch's CPU build is installed first, see scripts/_setup.sh). First run: about
# 80 s of set-up. SYNTHOBS_DEMO_GENERATOR=numpy runs it in .venv on the built-in numpy copula instead.
# Extra arguments go to `synthobs demo` (e.g. --rows 100000 --epochs 8).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${SYNTHOBS_DEMO_GENERATOR:-sdv}" = "numpy" ]; then
  SYNTHOBS_VENV=.venv
  source scripts/_setup.sh ""
else
  SYNTHOBS_VENV=.venv-sdv
  source scripts/_setup.sh "sdv"
fi
exec "$VENV/bin/synthobs" demo "$@"
