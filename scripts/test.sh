#!/usr/bin/env bash
# The whole test suite: set up (Python deps; Debian's prometheus,
# prometheus-pushgateway, gcc and chromium when running as root), then pytest.
# Extra arguments go to pytest (e.g. -k pushgateway).
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" "test"
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
exec .venv/bin/python -m pytest "$@"
