#!/usr/bin/env bash
# The whole test suite: set up (Python deps; Debian's prometheus and
# prometheus-pushgateway when running as root), then pytest.
# Extra arguments go to pytest (e.g. -k pushgateway).
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" "test"
if ! command -v promtool >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian's prometheus and prometheus-pushgateway (they are not started)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq prometheus prometheus-pushgateway >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq prometheus prometheus-pushgateway >/dev/null; }
  else
    echo "promtool and prometheus-pushgateway are needed: apt-get install prometheus prometheus-pushgateway" >&2
    exit 1
  fi
fi
exec .venv/bin/python -m pytest "$@"
