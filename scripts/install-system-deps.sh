#!/usr/bin/env bash
# Installs the Debian packages the test suite needs: bubblewrap (the sandbox's
# namespace layer), e2fsprogs and mount (the data dir quota's filesystem) and
# chromium (the browser tests). Control groups need no package. Where they cannot be
# installed (not root, no apt-get, no network) it says so; the tests that need
# them then skip with a reason instead of passing silently.
set -u
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
# the data dir quota: an ext4 image per installation, loop-mounted
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v mount >/dev/null 2>&1 || need+=(mount)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: cannot install ${need[*]} (needs root and apt-get); the tests that need them will skip." >&2
    exit 0
fi
echo "Installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    echo "note: apt-get could not install ${need[*]}; the tests that need them will skip." >&2
fi
exit 0
