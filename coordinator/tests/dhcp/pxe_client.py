#!/usr/bin/env python3
"""A minimal PXE firmware stand-in for coordinator/tests/dhcp.rs (proxy mode):
broadcasts a DISCOVER with vendor class PXEClient and architecture ARCH from
MAC, prints every OFFER seen within 3 s as `offer <yiaddr> <file> <class>`,
then sends a REQUEST to SERVER:4011 and prints the ACK as `ack <file>`.
Usage: pxe_client.py IFACE MAC ARCH SERVER"""
import socket, struct, sys, time

iface, mac, arch, server = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
hw = bytes.fromhex(mac.replace(":", ""))

def packet(kind):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234abcd, 0, 0x8000,
                      b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, hw + b"\0" * 10, b"", b"")
    opts = bytes([99, 130, 83, 99, 53, 1, kind])
    cls = b"PXEClient:Arch:%05d:UNDI:002001" % arch
    opts += bytes([60, len(cls)]) + cls + bytes([93, 2]) + struct.pack("!H", arch) + bytes([255])
    return hdr + opts

def parse(data):
    yiaddr = socket.inet_ntoa(data[16:20])
    opts, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        opts[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return yiaddr, opts

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
s.sendto(packet(1), ("255.255.255.255", 67))
end = time.time() + 3
while time.time() < end:
    s.settimeout(max(0.05, end - time.time()))
    try:
        data, _ = s.recvfrom(4096)
    except socket.timeout:
        break
    yiaddr, opts = parse(data)
    if opts.get(53) == b"\x02":
        print("offer", yiaddr, opts.get(67, b"-").decode(), opts.get(60, b"-").decode(), flush=True)
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.settimeout(3)
r.sendto(packet(3), (server, 4011))
try:
    data, _ = r.recvfrom(4096)
    yiaddr, opts = parse(data)
    if opts.get(53) == b"\x05":
        print("ack", opts.get(67, b"-").decode(), flush=True)
except socket.timeout:
    pass
