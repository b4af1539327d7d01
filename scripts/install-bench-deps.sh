#!/usr/bin/env bash
# Installs the Debian packages only the benchmarks use (`make bench-deps`):
# wrk (the HTTP load generator) and nodejs/npm (to run verdaccio, an npm
# registry measured as a peer). The test suite never needs them. Where they
# cannot be installed (not root, no apt-get, no network) it says so; the
# benchmark then falls back to its own load generator, or reports the peer as
# "not installed" with the reason.
set -u
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: cannot install ${need[*]} (needs root and apt-get); the benchmark falls back where it can." >&2
    exit 0
fi
echo "Installing benchmark packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    echo "note: apt-get could not install ${need[*]}; the benchmark falls back where it can." >&2
fi
exit 0
