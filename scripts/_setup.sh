# Shared set-up for scripts/demo.sh, scripts/test.sh and scripts/check.sh: a virtual environment with the
# package installed (editable) with the extras given as $1 (comma-separated), re-done only when pyproject.toml
# changed since. SYNTHOBS_VENV names the environment (default .venv; the SDV one is .venv-sdv). Sets VENV.
#
# The `sdv` extra first installs PyTorch's CPU build (SYNTHOBS_TORCH_PIP_ARGS, default torch==2.13.0, which
# these machines' pip finds on disk as 2.13.0+cpu): `pip install sdv` alone would pull a CUDA build of
# several GB. Elsewhere, e.g. SYNTHOBS_TORCH_PIP_ARGS="torch --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "prefect-synthobs needs Python >= 3.10")'
VENV="${SYNTHOBS_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
fi
EXTRAS="${1:-}"
STAMP="$VENV/.synthobs-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
  echo "==> installing prefect-synthobs${EXTRAS:+[$EXTRAS]} into $VENV"
  pip_install --upgrade pip
  if [[ ",$EXTRAS," == *",sdv,"* ]]; then
    read -r -a torch_args <<<"${SYNTHOBS_TORCH_PIP_ARGS:-torch==2.13.0}"
    echo "==> installing PyTorch first (${torch_args[*]}): its CPU build, not the CUDA one sdv would pull"
    pip_install "${torch_args[@]}"
  fi
  pip_install -e ".${EXTRAS:+[$EXTRAS]}"
  if [[ ",$EXTRAS," == *",sdv,"* ]]; then
    "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md

print("==> " + ", ".join(f"{name} {md.version(name)}" for name in ("sdv", "ctgan", "torch", "pandas")))
EOF
  fi
  touch "$STAMP"
fi
export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"
