#!/usr/bin/env bash
# System packages figalign uses beyond Python: Ghostscript renders EPS/PS figures of LaTeX
# e-prints. Installed when missing and we are root with apt; otherwise a warning (EPS figures are
# then recorded as per-figure failures "eps needs ghostscript", never silently dropped).
set -uo pipefail
if command -v gs >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system_deps: installing ghostscript" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ghostscript >/dev/null) \
    || echo "system_deps: could not install ghostscript; EPS figures will be recorded as failures" >&2
else
  echo "system_deps: ghostscript (gs) not found; install it to render EPS figures" >&2
fi
exit 0
