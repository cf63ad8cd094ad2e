#!/usr/bin/env bash
# The whole test suite, in two environments, one after the other:
#   1. .venv      (pandas 3, no SDV): every test;
#   2. .venv-sdv  (the `sdv` extra: pandas 2.x, SDV, CTGAN, PyTorch's CPU build): the tests that need a real
#      generator library or pandas 2: autolog, quality scores and gates, the demo pipeline; then, when no test
#      path is given, the fast tier of every other test, so pandas 2 is tested as users of SDV run it.
# Set-up first (Python deps; Debian's prometheus, prometheus-pushgateway, gcc and chromium when running as root).
# Extra arguments go to pytest in both runs (e.g. -k pushgateway, -q); test paths among them narrow each run to
# the paths that run there, and a run that selects nothing (pytest exit 5) is not a failure.
# SYNTHOBS_TEST_ENVS="main" or "sdv" runs one environment only (default: "main sdv").
# --fast: the fast tier only, -m "not slow and not server" (no Prefect server, no multi-process or 100k-row
# tests, no benchmarks); e.g. `SYNTHOBS_TEST_ENVS=main bash scripts/test.sh --fast -q`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENVS="${SYNTHOBS_TEST_ENVS:-main sdv}"
FAST_TIER="not slow and not server"  # the markers: [tool.pytest.ini_options] in pyproject.toml
args=()
for arg in "$@"; do
  if [[ "$arg" == "--fast" ]]; then args+=(-m "$FAST_TIER"); else args+=("$arg"); fi
done
set -- ${args[@]+"${args[@]}"}
# what the SDV environment runs, and the tests there that are not about generators (they ran in .venv)
SDV_TESTS=(tests/autolog tests/scores tests/instrument/test_gates*.py tests/e2e/test_demo_pipeline.py tests/assets/test_asset_sdv.py
  tests/test_benchmarks.py::test_autolog_benchmark_runs_and_records)
# the same tests as --ignore options, for the fast tier of all other tests on pandas 2 in .venv-sdv
SDV_IGNORE=(--ignore=tests/autolog --ignore=tests/scores --ignore-glob='tests/instrument/test_gates*.py'
  --ignore=tests/e2e/test_demo_pipeline.py --ignore=tests/assets/test_asset_sdv.py)
SDV_SKIP=(tests/e2e/test_demo_pipeline.py::test_cli_rejects_bad_arguments tests/e2e/test_demo_pipeline.py::test_compact_cli)

versions() {  # "pandas 3.1.0, no sdv" / "pandas 2.3.3, sdv 2.0.0, torch 2.13.0+cpu"
  "$1/bin/python" - <<'EOF'
import importlib.metadata as md

found = []
for name in ("pandas", "sdv", "torch"):
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        found.append(f"no {name}")
print(", ".join(found))
EOF
}

# --- the arguments for the SDV run: options as given; test paths narrowed to the SDV tests -----------------
sdv_args=()
paths_given=0
paths_kept=0
under() { [[ "$1" == "$2" || "$1" == "$2"/* ]]; }  # path $1 is $2 or inside it
for arg in "$@"; do
  path="${arg%%::*}"
  path="${path#./}"
  path="${path%/}"
  if [[ "$arg" != -* && -e "$path" ]]; then
    paths_given=1
    for sdv in "${SDV_TESTS[@]}"; do
      sdv_path="${sdv%%::*}"  # an entry may be one test of a file: file::test
      if under "$path" "$sdv_path"; then  # the argument names this entry or a part of it
        if [[ "$sdv" != *::* || "$arg" == "$sdv"* ]]; then
          sdv_args+=("$arg") && paths_kept=1
        elif [[ "$arg" != *::* ]]; then
          sdv_args+=("$sdv") && paths_kept=1
        fi
        break
      elif [[ "$path" == "." ]] || under "$sdv_path" "$path"; then  # the argument holds this entry
        sdv_args+=("$sdv") && paths_kept=1
      fi
    done
  else
    sdv_args+=("$arg")
  fi
done
[ "$paths_given" = 1 ] || sdv_args+=("${SDV_TESTS[@]}")
for node in "${SDV_SKIP[@]}"; do sdv_args+=(--deselect "$node"); done

# --- 1. the main environment ---------------------------------------------------------------------------------
main_rc=0
if [[ " $ENVS " == *" main "* ]]; then
  SYNTHOBS_VENV=.venv
  source scripts/_setup.sh "test"
  missing=()
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  command -v gcc >/dev/null || missing+=(gcc)  # builds the tests' fake libnvidia-ml.so.1
  command -v chromium >/dev/null || missing+=(chromium)  # renders the health report's artifacts (headless)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      echo "==> installing ${missing[*]} (nothing is started)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
    else
      echo "needed for the tests: apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "==> [main] tests in .venv ($(versions .venv)): every test"
  .venv/bin/python -m pytest "$@" || main_rc=$?
fi

# --- 2. the SDV environment ----------------------------------------------------------------------------------
sdv_rc=0
if [[ " $ENVS " == *" sdv "* ]]; then
  if [ "$paths_given" = 1 ] && [ "$paths_kept" = 0 ]; then
    echo "==> [sdv] no test of the SDV environment among the paths given: skipped"
  else
    SYNTHOBS_VENV=.venv-sdv
    source scripts/_setup.sh "test,sdv"
    echo "==> [sdv] tests in .venv-sdv ($(versions .venv-sdv)): autolog, quality, demo pipeline"
    .venv-sdv/bin/python -m pytest "${sdv_args[@]}" || sdv_rc=$?
    if [ "$sdv_rc" = 5 ]; then
      echo "==> [sdv] no test selected in the SDV environment (pytest exit 5): not a failure"
      sdv_rc=0
    fi
    if [ "$paths_given" = 0 ]; then
      # pandas 2 is what every SDV user runs synthobs on: the fast tier of every other test runs here too, with
      # synthobs' own FutureWarnings and DeprecationWarnings as errors ([tool.pytest.ini_options] filterwarnings)
      echo "==> [sdv] the fast tier of the other tests on pandas 2 ($(versions .venv-sdv))"
      pandas2_rc=0
      .venv-sdv/bin/python -m pytest "$@" -m "$FAST_TIER" tests "${SDV_IGNORE[@]}" || pandas2_rc=$?
      [ "$sdv_rc" != 0 ] || sdv_rc=$pandas2_rc
    fi
  fi
fi

if [[ " $ENVS " == *" main "* && " $ENVS " == *" sdv "* ]]; then
  result() { if [ "$1" = 0 ]; then echo "passed"; else echo "FAILED (pytest exit $1)"; fi; }
  echo "==> main environment (.venv): $(result "$main_rc"); SDV environment (.venv-sdv): $(result "$sdv_rc")"
fi
[ "$main_rc" = 0 ] && [ "$sdv_rc" = 0 ]
