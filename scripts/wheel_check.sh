#!/usr/bin/env bash
# The package as users install it. Builds the wheel and sdist into dist/ (python -m build, as a publisher
# does), checks them with `twine check --strict`, then installs the wheel into fresh virtual environments and
# runs, against the installed package and never this checkout's sources:
#   - `synthobs demo` from an empty folder (the numpy generator; a real ephemeral Prefect server),
#   - `synthobs export-dashboards` (dashboards, alert rules, runbooks come from the wheel),
#   - the fast test tier (tests/ of this checkout, run by the environment's `pytest` script with
#     SYNTHOBS_TESTS_AGAINST=installed, which fails if the checkout is what gets imported).
# Jobs (default: all three, one after the other):
#   floors       Python 3.10 (the declared minimum) with every dependency at its declared floor: scripts/floors.txt
#   newest       Python 3.13 with the newest releases pip resolves
#   newest@X.Y   the same on Python X.Y (the default list has newest@3.12, so each Python the classifiers claim
#                runs here or in the main suite, 3.11)
# Usage: bash scripts/wheel_check.sh [floors] [newest] [newest@3.12]
# SYNTHOBS_FLOORS_PYTHON / SYNTHOBS_NEWEST_PYTHON choose the Python versions (default 3.10 / 3.13), found as
# pythonX.Y on PATH or in pyenv's versions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS=("$@")
[ ${#JOBS[@]} -gt 0 ] || JOBS=(floors newest newest@3.12)

SYNTHOBS_VENV=.venv
source scripts/_setup.sh "test"  # build and twine
echo "==> building the wheel and sdist into dist/"
rm -rf dist
.venv/bin/python -m build --outdir dist . >/dev/null
.venv/bin/python -m twine check --strict dist/*
wheel="$(ls dist/*.whl)"

interpreter() {  # $1: a Python version (3.10); prints a path to that interpreter or fails saying what to install
  local candidate
  for candidate in "python$1" "$(pyenv root 2>/dev/null)/versions/$1"*/bin/"python$1" "/usr/bin/python$1"; do
    if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$1'.split('.'))))" 2>/dev/null; then
      command -v "$candidate" || echo "$candidate"
      return 0
    fi
  done
  echo "scripts/wheel_check.sh: no Python $1 here (pyenv install $1, or set $2)" >&2
  return 1
}

rc=0
for job in "${JOBS[@]}"; do
  case "$job" in
    floors) python="$(interpreter "${SYNTHOBS_FLOORS_PYTHON:-3.10}" SYNTHOBS_FLOORS_PYTHON)"; pins=(-r scripts/floors.txt) ;;
    newest) python="$(interpreter "${SYNTHOBS_NEWEST_PYTHON:-3.13}" SYNTHOBS_NEWEST_PYTHON)"; pins=() ;;
    newest@*) python="$(interpreter "${job#newest@}" "a Python ${job#newest@}")"; pins=() ;;
    *) echo "unknown job $job (floors, newest, newest@X.Y)" >&2; exit 2 ;;
  esac
  venv=".venv-wheel-${job/@/-}"
  work="$(mktemp -d)"
  echo "==> [$job] $("$python" --version) in $venv: pip install $(basename "$wheel") ${pins[*]+${pins[*]}}"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip() {  # quiet, without this machine's notes on index folders it lacks
    "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
  }
  pip install --upgrade pip
  started=$SECONDS
  # the `test-fast` extra: what the fast tier imports (the integrations of the slow and server tiers are not needed)
  pip install "$wheel[test-fast]" ${pins[@]+"${pins[@]}"}
  pip check
  "$venv/bin/python" - <<'PY'
import importlib.metadata as md

names = ["prefect", "fastapi", "pandas", "pyarrow", "numpy", "opentelemetry-sdk", "prometheus-client", "nvidia-ml-py"]
print("==> installed in " + __import__("sys").prefix + ": " + ", ".join(f"{n} {md.version(n)}" for n in names))
PY
  echo "==> [$job] installed in $((SECONDS - started)) s; synthobs demo from an empty folder"
  job_rc=0
  # chained with &&: under `|| job_rc=$?` bash ignores set -e inside the subshell
  (
    cd "$work" &&
      export PREFECT_HOME="$work/prefect-home" SYNTHOBS_DEMO_GENERATOR=numpy &&
      unset PREFECT_API_URL &&
      "$OLDPWD/$venv/bin/synthobs" demo --rows 2000 --real-rows 1000 --epochs 2 --store "$work/store" &&
      "$OLDPWD/$venv/bin/synthobs" export-dashboards "$work/dashboards" >/dev/null &&
      test -s "$work/dashboards/runbooks/SynthobsFlowRunStuck.md"
  ) || job_rc=$?
  echo "==> [$job] the fast tier against the installed wheel"
  SYNTHOBS_TESTS_AGAINST=installed "$venv/bin/pytest" -q -p no:cacheprovider -m "not slow and not server" tests \
    || job_rc=$?
  rm -rf "$work"
  if [ "$job_rc" = 0 ]; then echo "==> [$job] passed"; else echo "==> [$job] FAILED"; rc=1; fi
done
exit "$rc"
