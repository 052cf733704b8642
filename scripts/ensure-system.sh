#!/usr/bin/env bash
# Installs the Debian packages edgebnn needs, only when they are missing (so a second run costs
# nothing). As root it runs apt-get; otherwise it prints the exact command and exits 2.
set -euo pipefail

need_packages() {  # prints the packages among "$@" that are not installed
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}

install_packages() {
  local missing
  missing=$(need_packages "$@")
  [ -z "$missing" ] && return 0
  # shellcheck disable=SC2086
  if [ "$(id -u)" -ne 0 ]; then
    echo "edgebnn: missing Debian packages: $missing" >&2
    echo "edgebnn: install them with: sudo apt-get update && sudo apt-get install -y $missing" >&2
    exit 2
  fi
  echo "edgebnn: installing Debian packages: $missing"
  # shellcheck disable=SC2086
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >/dev/null
}

# The native runtime is C: a missing compiler is an error that names the Debian packages (exit 2).
need_compiler() {
  local cc="${CC:-gcc}"
  if ! command -v "$cc" >/dev/null 2>&1 && ! command -v cc >/dev/null 2>&1; then
    echo "edgebnn: no C compiler ($cc) found: the native runtime (runtime/native) needs one;" \
      "install it with: sudo apt-get install -y gcc make (Debian/Ubuntu)" >&2
    exit 2
  fi
  if ! command -v make >/dev/null 2>&1; then
    echo "edgebnn: make is missing: install it with: sudo apt-get install -y make (Debian/Ubuntu)" >&2
    exit 2
  fi
}

case "${1:-}" in
  compiler) need_compiler ;;
  data) install_packages dataset-fashion-mnist ;;
  # The emulated-Pi tests: qemu-user (aarch64/armhf under binfmt), a Debian rootfs built with
  # debootstrap, a real OpenSSH client and (inside the chroot, from the rootfs) server, and `ip`.
  test) install_packages dataset-fashion-mnist qemu-user-static binfmt-support debootstrap \
          gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
          openssh-client openssh-server iproute2 ;;
  *) echo "usage: $0 compiler|data|test" >&2; exit 2 ;;
esac
