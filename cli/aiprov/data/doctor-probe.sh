#!/bin/sh
# aiprov doctor's probe: read-only questions to one host, answered as
# "### section" blocks that cli/aiprov/doctor.py parses. It changes nothing:
# no installs, no GPU settings, no files outside Ansible's own temporary dir.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
section() { echo "### $1"; }

section os-release
cat /etc/os-release 2>/dev/null
section kernel
uname -r
section secure-boot
# 5 bytes: 4 of attributes, then 1 (on) or 0 (off). Absent: BIOS boot or no efivarfs.
od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null
section nouveau
[ -e /sys/module/nouveau/initstate ] && echo loaded
section proc-driver-version
cat /proc/driver/nvidia/version 2>/dev/null
section gpus
nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id,persistence_mode,driver_version \
  --format=csv,noheader,nounits 2>/dev/null
section pci
# NVIDIA PCI functions and their class (0x0302xx GPU, 0x0680xx NVSwitch), from
# sysfs: pciutils is not on every host.
for dev in /sys/bus/pci/devices/*; do
  [ "$(cat "$dev/vendor" 2>/dev/null)" = 0x10de ] && echo "${dev##*/} $(cat "$dev/class")"
done
section fabricmanager
systemctl is-active nvidia-fabricmanager 2>/dev/null
section nvcc
# The same environment a login shell gets (the cuda_toolkit role's profile.d file).
[ -r /etc/profile.d/aiprov-cuda.sh ] && . /etc/profile.d/aiprov-cuda.sh
for nvcc in nvcc "${CUDA_HOME:-/nonexistent}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
  if command -v "$nvcc" >/dev/null 2>&1; then
    command -v "$nvcc"
    "$nvcc" --version 2>/dev/null
    break
  fi
done
section end
