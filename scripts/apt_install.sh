#!/usr/bin/env bash
# apt_install.sh LOG PACKAGE...: install Debian packages, as root or through passwordless sudo,
# non-interactively; retried once after `apt-get update`; apt-get's output goes to LOG.
# Exit status: 0 installed, 1 the install failed (see LOG), 2 apt-get cannot be used here (not
# root and no passwordless sudo, or no apt-get). Used by the Makefile (GPAW, ARM tools).
set -u
log=$1
shift
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif sudo -n true 2> /dev/null; then
  sudo=(sudo -n)
else
  exit 2
fi
command -v apt-get > /dev/null || exit 2
echo "== apt-get install $*"
: > "$log"
apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >> "$log" 2>&1; }
apt install -y -q "$@" && exit 0
apt update -q
apt install -y -q "$@" || exit 1
