#!/usr/bin/env bash
# Build a Debian image with systemd as PID 1 for podman, with debootstrap (no
# container registry is needed). Used by `aiprov sandbox` and by Molecule.
#
#   build-image.sh SUITE [IMAGE_NAME]      SUITE: bookworm | trixie
#
# The image is cached: it is rebuilt only when this script changes (the
# script's sha256 is stored as an image label) or AIPROV_IMAGE_REBUILD=1.
# Environment: DEBIAN_MIRROR (default: the build machine's own Debian mirror,
# else http://deb.debian.org/debian), CONTAINERS_CONF (podman settings).
set -euo pipefail

suite=${1:?usage: build-image.sh bookworm|trixie [IMAGE_NAME]}
case "$suite" in
  bookworm) default_name=aiprov-debian12 ;;
  trixie) default_name=aiprov-debian13 ;;
  *) echo "build-image.sh: unsupported suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
image=${2:-$default_name}
script_sum=$(sha256sum "$0" | cut -d' ' -f1)

existing=$(podman image inspect --format '{{ index .Labels "aiprov.build" }}' "localhost/$image:latest" 2>/dev/null || true)
if [[ "$existing" == "$script_sum" && "${AIPROV_IMAGE_REBUILD:-0}" != 1 ]]; then
  echo "image localhost/$image:latest is up to date"
  exit 0
fi

mirror=${DEBIAN_MIRROR:-}
if [[ -z "$mirror" ]]; then
  mirror=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

root=$(mktemp -d /var/tmp/aiprov-rootfs.XXXXXX)
trap 'rm -rf "$root" "$root.log"' EXIT
# Three tries: a lookup or a download that fails once must not fail a build.
for try in 1 2 3; do
  echo "debootstrap $suite from $mirror into $root (try $try)"
  if debootstrap --variant=minbase \
    --components=main,contrib,non-free,non-free-firmware \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,openssh-server \
    "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
    break
  fi
  tail -n 30 "$root.log" >&2
  ((try < 3)) || exit 1
  rm -rf "$root" && mkdir "$root"
  sleep 10
done
rm -f "$root.log"

# apt sources for the image: the same mirror, with security updates.
components="main contrib non-free non-free-firmware"
[[ "$suite" == bookworm ]] && components="main contrib non-free non-free-firmware"
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite $components
deb $mirror $suite-updates $components
SOURCES

# Test hosts download many packages over one link: let apt ride out a short
# outage (its own default gives up after three quick retries). The base role
# writes its own setting (80aiprov-retries) on top.
echo 'Acquire::Retries "10";' >"$root/etc/apt/apt.conf.d/79aiprov-test-retries"

# A container boots with an empty machine-id and without the units that need
# real hardware or a console.
: >"$root/etc/machine-id"
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-remount-fs.service systemd-firstboot.service sys-kernel-debug.mount \
  sys-kernel-config.mount sys-kernel-tracing.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# sshd ships off and without host keys: every container would otherwise share
# the keys made at build time. `aiprov sandbox up --ssh` makes a host's own keys
# (ssh-keygen -A) and starts it; hosts reached through podman never run it.
systemctl --root="$root" --quiet disable ssh.service
rm -f "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" --numeric-owner -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL aiprov.build=$script_sum" \
  - "localhost/$image:latest"
echo "built localhost/$image:latest"
