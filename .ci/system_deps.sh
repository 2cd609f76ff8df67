#!/usr/bin/env bash
# System packages figalign uses beyond Python, installed when missing (root + apt), else a warning:
# - ghostscript: renders EPS/PS figures of LaTeX e-prints (without it such figures are recorded
#   as per-figure failures "eps needs ghostscript", never silently dropped);
# - chromium + chromium-driver: the explorer's real-browser test (skips with a reason without them).
set -uo pipefail
missing=()
command -v gs >/dev/null || missing+=(ghostscript)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system_deps: installing ${missing[*]}" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
    || echo "system_deps: could not install ${missing[*]}; the tests that need them skip with a reason" >&2
else
  echo "system_deps: missing ${missing[*]} (install them for EPS figures and the browser test)" >&2
fi
exit 0
