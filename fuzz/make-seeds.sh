#!/usr/bin/env bash
# Regenerates the seed corpora of fuzz/corpus/ from the same tools and
# fixtures the crates' tests use: qemu-img images as image-tools' gen.sh makes
# them (smaller), sfdisk/sgdisk tables as agent/tests/partition_table.rs,
# mkfs.* file systems as agent/tests/wipe_metadata.rs, and the unit tests'
# packets (through examples/make_seeds.rs). The committed seeds were made by
# this script; rerun it (as root: none of it needs a loop device) after a
# format change. Crash inputs live in fuzz/regressions/, which it leaves alone.
# Needs: qemu-utils, fdisk, gdisk, e2fsprogs, dosfstools, xfsprogs,
# btrfs-progs, cryptsetup-bin, genisoimage (the ones missing are skipped).
set -euo pipefail
fuzz=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

seeds() { cargo run -q --manifest-path "$fuzz/../Cargo.toml" -p ingot-fuzz-targets --example make_seeds -- "$@"; }
have() { command -v "$1" >/dev/null; }
# sparse TARGET NAME IMAGE: a disk image as a sparse seed.
sparse() { mkdir -p "$fuzz/corpus/$1" && seeds --sparse "$3" "$fuzz/corpus/$1/$2"; }

seeds "$fuzz"

# qcow2: a small disk with data islands, in every variant the reader handles
# and a few it refuses.
mkdir -p "$fuzz/corpus/qcow2"
q() { cp "$1" "$fuzz/corpus/qcow2/$1"; }
truncate -s 100000 disk.raw # not a multiple of any cluster size
dd if=/dev/urandom of=disk.raw bs=1K count=3 conv=notrunc status=none
dd if=/dev/urandom of=disk.raw bs=1K count=2 seek=40 conv=notrunc status=none
head -c 8192 /dev/zero | tr '\0' '\252' | dd of=disk.raw bs=1K seek=64 conv=notrunc status=none
dd if=/dev/urandom of=disk.raw bs=1 count=160 seek=99840 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 -o cluster_size=512 disk.raw v3-512.qcow2 && q v3-512.qcow2
qemu-img convert -q -f raw -O qcow2 -o cluster_size=512,compat=0.10 disk.raw v2-512.qcow2 && q v2-512.qcow2
qemu-img convert -q -f raw -O qcow2 -c -o cluster_size=4096 disk.raw zlib-4k.qcow2 && q zlib-4k.qcow2
qemu-img convert -q -f raw -O qcow2 -c -o cluster_size=4096,compression_type=zstd disk.raw zstd-4k.qcow2 && q zstd-4k.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4096 reverse.qcow2 100000
qemu-io -f qcow2 -c "write -P 0xbb 80k 8k" -c "write -P 0xaa 0 4k" -c "write -z 80k 4k" reverse.qcow2 >/dev/null && q reverse.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 empty.qcow2 64M && q empty.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 -b v3-512.qcow2 -F qcow2 overlay.qcow2 && q overlay.qcow2
cp v3-512.qcow2 corrupt.qcow2
printf '\x00\x00\x00\x28' | dd of=corrupt.qcow2 bs=1 seek=20 conv=notrunc status=none && q corrupt.qcow2
head -c $(($(stat -c %s v3-512.qcow2) - 2048)) v3-512.qcow2 >truncated.qcow2 && q truncated.qcow2

# Partition tables: DOS with logical partitions, GPT, a GPT image written to
# a larger disk (what fit_gpt_to_disk fixes), a hybrid MBR.
truncate -s 8M dos.img
printf 'label: dos\n1MiB,2MiB,83\n,1MiB,82\n,,5\n,1MiB,83\n,,83\n' | sfdisk -q dos.img
truncate -s 8M gpt.img
sgdisk -n 1:2048:+2M -t 1:ef00 -c 1:esp -n 2:0:+1M -t 2:8200 -n 3:0:0 gpt.img >/dev/null
truncate -s 4M small-gpt.img
sgdisk -n 1:2048:+1M -n 2:0:0 small-gpt.img >/dev/null
cp small-gpt.img grown-gpt.img && truncate -s 16M grown-gpt.img
cp gpt.img hybrid.img && sgdisk -h 1 hybrid.img >/dev/null
for t in partition_table wipe_signatures; do
	for i in dos gpt small-gpt grown-gpt hybrid; do sparse "$t" "$i" "$i.img"; done
done

# File systems and other signatures, whole disks and inside partitions.
fs() { # NAME SIZE COMMAND...
	local name=$1 size=$2
	shift 2
	have "$1" || { echo "skipped $name: no $1"; return 0; }
	rm -f "$name.img" && truncate -s "$size" "$name.img"
	"$@" "$name.img" >/dev/null 2>&1 || { echo "skipped $name: $1 failed"; return 0; }
	sparse wipe_signatures "$name" "$name.img"
}
fs ext4 8M mkfs.ext4 -q -F
fs vfat 8M mkfs.vfat
fs fat32 40M mkfs.vfat -F 32
fs xfs 300M mkfs.xfs -q -f
fs btrfs 128M mkfs.btrfs -q -f
fs swap 1M mkswap
if have cryptsetup; then
	for v in luks1 luks2; do
		truncate -s 20M $v.img
		printf 'pass' | cryptsetup luksFormat -q --type $v --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - $v.img >/dev/null 2>&1 || continue
		# The key material is random: keep the headers (LUKS2 has two in
		# its first 32 KiB, LUKS1 one in 4 KiB) and zero the rest.
		keep=1 && [ $v = luks2 ] && keep=8
		dd if=/dev/zero of=$v.img bs=4K seek=$keep count=$((5120 - keep)) conv=notrunc status=none
		sparse wipe_signatures $v $v.img
	done
fi
if have genisoimage; then
	mkdir -p iso && echo hello >iso/a.txt
	genisoimage -quiet -o iso9660.img iso && sparse wipe_signatures iso9660 iso9660.img
fi
# ext4 inside partition 1 of a DOS disk, vfat inside a GPT partition.
cp dos.img nested-dos.img
truncate -s 2M part.img && mkfs.ext4 -q -F part.img && dd if=part.img of=nested-dos.img bs=1M seek=1 conv=notrunc status=none
sparse wipe_signatures nested-dos nested-dos.img
cp gpt.img nested-gpt.img
truncate -s 2M esp.img && mkfs.vfat esp.img >/dev/null && dd if=esp.img of=nested-gpt.img bs=1M seek=1 conv=notrunc status=none
sparse wipe_signatures nested-gpt nested-gpt.img
du -sh "$fuzz"/corpus/*
