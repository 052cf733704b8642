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

# The instruction counter (devices/plugins/insn_count.c) is a QEMU TCG plugin built against
# qemu-plugin.h, which no Debian binary package ships. It comes from Debian's own qemu source
# package, the version of the installed qemu-user (apt-get source through a private apt state in
# the cache: the system's apt sources are not changed), once: the 24 MB source archive is
# downloaded, qemu-plugin.h and QEMU's COPYING are kept (GPL-2.0-or-later, see
# devices/plugins/README.md), the archive is deleted. Needs the network the first time.
qemu_plugin_header() {
  local cache="${EDGEBNN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgebnn}/qemu-plugin"
  [ -f "$cache/include/qemu-plugin.h" ] && return 0
  local version codename mirror security work sources opts
  version=$(dpkg-query -W -f='${source:Version}' qemu-user 2>/dev/null) || {
    echo "edgebnn: qemu-user is not installed (the dynamic qemu that accepts -plugin):" \
      "install it with: sudo apt-get install -y qemu-user" >&2
    exit 2
  }
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  mirror="${EDGEBNN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  security="${EDGEBNN_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
  work="$cache/work"
  rm -rf "$work" && mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
  sources="$work/sources.list"
  {
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename main"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename-updates main"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $security $codename-security main"
  } >"$sources"
  opts=(-o "Dir::Etc::SourceList=$sources" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
  echo "edgebnn: fetching qemu-plugin.h from Debian's qemu source package ($version), once"
  apt-get "${opts[@]}" -qq update >/dev/null 2>&1 || {
    echo "edgebnn: cannot read the Debian source index from $mirror (no network?);" \
      "the instruction counter needs qemu-plugin.h once (see devices/plugins/README.md)" >&2
    exit 2
  }
  # the installed version's source, else the newest one of the release (the plugin API is the same)
  ( cd "$work/src" && { apt-get "${opts[@]}" -qq source --download-only "qemu=$version" >/dev/null 2>&1 ||
                        apt-get "${opts[@]}" -qq source --download-only qemu >/dev/null 2>&1; } ) || {
    echo "edgebnn: apt-get source qemu failed (see devices/plugins/README.md for a manual way)" >&2
    exit 2
  }
  local archive
  archive=$(ls "$work"/src/qemu_*.orig.tar.* | head -n 1)
  tar -xf "$archive" -C "$work" --wildcards '*/include/qemu/qemu-plugin.h' 'qemu-*/COPYING'
  mkdir -p "$cache/include"
  cp "$work"/qemu-*/include/qemu/qemu-plugin.h "$cache/include/qemu-plugin.h.tmp"
  cp "$work"/qemu-*/COPYING "$cache/include/COPYING.qemu"
  {
    echo "qemu-plugin.h from Debian's qemu source package: $(basename "$(ls "$work"/src/*.dsc)")"
    echo "archive $(basename "$archive") sha256 $(sha256sum "$archive" | cut -d' ' -f1)"
    echo "license: GPL-2.0-or-later (SPDX line of the header; COPYING.qemu)"
  } >"$cache/include/SOURCE"
  mv "$cache/include/qemu-plugin.h.tmp" "$cache/include/qemu-plugin.h"
  rm -rf "$work"
}

case "${1:-}" in
  compiler) need_compiler ;;
  data) install_packages dataset-fashion-mnist ;;
  # The emulated-Pi tests: qemu-user-static (aarch64/armhf under binfmt), a Debian rootfs built
  # with debootstrap, a real OpenSSH client and (inside the chroot, from the rootfs) server, `ip`;
  # the cross compilers of the native runtime (aarch64 NEON build, 32-bit armv7 scalar build),
  # and the dynamic qemu-user (it accepts -plugin) with the plugin header for instruction counts.
  test) install_packages dataset-fashion-mnist qemu-user-static binfmt-support debootstrap \
          gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
          qemu-user openssh-client openssh-server iproute2
        qemu_plugin_header ;;
  # Just the instruction counter: qemu-user and the plugin header.
  qemu-plugin) install_packages qemu-user
               qemu_plugin_header ;;
  *) echo "usage: $0 compiler|data|test|qemu-plugin" >&2; exit 2 ;;
esac
