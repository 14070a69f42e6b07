#!/bin/sh
# aiprov's GPU host probe: read-only questions to one host, answered as
# "### section" blocks that cli/aiprov/gpu_probe.py and doctor.py parse. It
# changes nothing: no installs, no GPU settings, no files outside Ansible's own
# temporary dir. `aiprov doctor` asks every section; the nvidia_driver role
# names the ones it reads (gpu_probe.DRIVER_SECTIONS). "### end" closes a
# complete answer.
#
#   doctor-probe.sh [SECTION...]
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ALL="os-release kernel secure-boot nouveau proc-driver-version gpus pci fabricmanager nvcc"
for name in "$@"; do
  case " $ALL " in
    *" $name "*) ;;
    *) echo "doctor-probe.sh: no section '$name' (sections: $ALL)" >&2; exit 2 ;;
  esac
done
WANTED=" ${*:-$ALL} "
# Print the header of section $1 and succeed when it was asked for.
section() {
  case "$WANTED" in
    *" $1 "*) echo "### $1" ;;
    *) return 1 ;;
  esac
}

if section os-release; then
  cat /etc/os-release 2>/dev/null
fi
if section kernel; then
  uname -r
fi
if section secure-boot; then
  # 5 bytes: 4 of attributes, then 1 (on) or 0 (off). Absent: BIOS boot or no efivarfs.
  od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null
fi
if section nouveau; then
  [ -e /sys/module/nouveau/initstate ] && echo loaded
fi
if section proc-driver-version; then
  cat /proc/driver/nvidia/version 2>/dev/null
fi
if section gpus; then
  nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id,persistence_mode,driver_version \
    --format=csv,noheader,nounits 2>/dev/null
fi
if section pci; then
  # NVIDIA PCI functions, their class (0x0302xx GPU, 0x0680xx NVSwitch) and
  # device id (the model, known before any driver), from sysfs: pciutils is not
  # on every host.
  for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor" 2>/dev/null)" = 0x10de ] &&
      echo "${dev##*/} $(cat "$dev/class") $(cat "$dev/device" 2>/dev/null)"
  done
fi
if section fabricmanager; then
  systemctl is-active nvidia-fabricmanager 2>/dev/null
fi
if section nvcc; then
  # The same environment a login shell gets (the cuda_toolkit role's profile.d file).
  [ -r /etc/profile.d/aiprov-cuda.sh ] && . /etc/profile.d/aiprov-cuda.sh
  for nvcc in nvcc "${CUDA_HOME:-/nonexistent}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
    if command -v "$nvcc" >/dev/null 2>&1; then
      command -v "$nvcc"
      "$nvcc" --version 2>/dev/null
      break
    fi
  done
fi
echo "### end"
exit 0
