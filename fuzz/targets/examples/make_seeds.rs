//! Writes the seed corpora that are made from the crates' own test fixtures
//! (the byte sequences of their unit tests, and messages their encoders
//! make), and converts disk images to the sparse format of the disk targets.
//! `fuzz/make-seeds.sh` runs it; see docs/fuzzing.md.
//!
//! - `make_seeds <fuzz dir>`: dhcp_agent, dhcp_coordinator, lldp, snmp_ber,
//!   ipmi, json_patch, cpio.
//! - `make_seeds --sparse <image> <out>`: one disk image as a sparse seed.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ingot_coordinator::power::snmp::{ber, message, usm};
use ingot_ipmi::{message as ipmi_message, packet, v15};

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) -> Result<()> {
    let d = dir.join("corpus").join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), data).with_context(|| format!("{target}/{name}"))
}

/// A DHCP reply to `mac` with `options` (as in the agent's unit tests).
fn dhcp_reply(kind: u8, mac: [u8; 6], options: &[u8]) -> Vec<u8> {
    use ingot_agent::net::dhcp_packet;
    let mut m = dhcp_packet::request(dhcp_packet::DISCOVER, 0xdead_beef, mac, None, None, 0);
    m[0] = 2;
    m[16..20].copy_from_slice(&[10, 0, 0, 5]);
    m.truncate(240);
    m.extend_from_slice(&[53, 1, kind]);
    m.extend_from_slice(options);
    m.push(255);
    m
}

/// The reply as a server sends it: IPv4 and UDP to port 68.
fn to_client(payload: &[u8]) -> Vec<u8> {
    let mut p = ingot_agent::net::dhcp_packet::ip_udp_between(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::BROADCAST,
        payload,
    );
    p[20..24].copy_from_slice(&[0, 67, 0, 68]);
    p
}

fn dhcp(dir: &Path) -> Result<()> {
    use ingot_agent::net::dhcp_packet::{ACK, NAK, OFFER};
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let offer = dhcp_reply(
        OFFER,
        mac,
        &[
            1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 6, 8, 10, 0, 0, 53, 10, 0, 0, 54, 51, 4, 0,
            0, 14, 16, 54, 4, 10, 0, 0, 1,
        ],
    );
    let ack = dhcp_reply(
        ACK,
        mac,
        &[
            51, 4, 0, 0, 0, 120, 58, 4, 0, 0, 0, 3, 59, 4, 0, 0, 0, 6, 26, 2, 5, 220, 12, 5, b'n',
            b'o', b'd', b'e', b'0', 15, 3, b'l', b'a', b'b', 0, 0,
        ],
    );
    let nak = dhcp_reply(NAK, mac, &[54, 4, 10, 0, 0, 1]);
    write(dir, "dhcp_agent", "offer-ip", &to_client(&offer))?;
    write(dir, "dhcp_agent", "ack-ip", &to_client(&ack))?;
    write(dir, "dhcp_agent", "nak-ip", &to_client(&nak))?;
    write(dir, "dhcp_agent", "offer-bootp", &offer)?;
    // What the coordinator's server receives: the agent's own requests, and
    // a PXE firmware's DISCOVER (class identifier, architecture, iPXE).
    use ingot_agent::net::dhcp_packet::{DISCOVER, REQUEST, renew_request, request};
    let discover = request(DISCOVER, 0x1234_5678, mac, None, None, 3);
    write(dir, "dhcp_coordinator", "agent-discover", &discover)?;
    let selecting = request(
        REQUEST,
        0x1234_5678,
        mac,
        Some(Ipv4Addr::new(10, 0, 0, 5)),
        Some(Ipv4Addr::new(10, 0, 0, 1)),
        4,
    );
    write(dir, "dhcp_coordinator", "agent-request", &selecting)?;
    let renew = renew_request(0x1234_5679, mac, Ipv4Addr::new(10, 0, 0, 5), 60);
    write(dir, "dhcp_coordinator", "agent-renew", &renew)?;
    let mut pxe = discover[..240].to_vec();
    pxe.extend_from_slice(&[53, 1, DISCOVER]);
    pxe.extend_from_slice(&[60, 20]);
    pxe.extend_from_slice(b"PXEClient:Arch:00007");
    pxe.extend_from_slice(&[93, 2, 0, 7, 97, 17, 0]);
    pxe.extend_from_slice(&[0x11; 16]);
    pxe.extend_from_slice(&[77, 4, b'i', b'P', b'X', b'E', 175, 3, 0x13, 1, 1]);
    pxe.extend_from_slice(&[55, 4, 1, 3, 66, 67, 255]);
    write(dir, "dhcp_coordinator", "pxe-discover", &pxe)
}

fn lldp(dir: &Path) -> Result<()> {
    // The agent's unit test frame, and one with a VLAN tag and more TLVs.
    let mut f = vec![
        0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x52, 0x54, 0, 1, 2, 3, 0x88, 0xcc,
    ];
    let tlvs: &[u8] = &[
        0x02, 0x07, 0x04, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, // chassis ID, MAC
        0x04, 0x05, 0x05, b'E', b't', b'h', b'1', // port ID, ifname
        0x06, 0x02, 0x00, 0x78, // TTL 120
    ];
    f.extend_from_slice(tlvs);
    f.extend_from_slice(&[0, 0]);
    write(dir, "lldp", "frame", &f)?;
    let mut tagged = f[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x88, 0xcc]);
    tagged.extend_from_slice(tlvs);
    // System name, and an organisationally specific TLV (802.1 port VLAN).
    tagged.extend_from_slice(&[0x0a, 0x04, b's', b'w', b'-', b'1']);
    tagged.extend_from_slice(&[0xfe, 0x06, 0x00, 0x80, 0xc2, 0x01, 0x00, 0x64, 0, 0]);
    write(dir, "lldp", "frame-vlan", &tagged)
}

fn snmp(dir: &Path) -> Result<()> {
    // snmpd's v2c answer (the coordinator's SNMP unit tests): outlet 2 is 2.
    const RESPONSE_INT: [u8; 52] = [
        0x30, 0x32, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2, 0x25,
        0x02, 0x04, 0x04, 0x44, 0x09, 0x6f, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x17, 0x30,
        0x15, 0x06, 0x10, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x0c, 0x03, 0x03,
        0x01, 0x01, 0x04, 0x02, 0x02, 0x01, 0x02,
    ];
    // noSuchInstance for outlet 9.
    const RESPONSE_NO_SUCH: [u8; 51] = [
        0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2, 0x24,
        0x02, 0x04, 0x64, 0x0f, 0x8f, 0x74, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x16, 0x30,
        0x14, 0x06, 0x10, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x0c, 0x03, 0x03,
        0x01, 0x01, 0x04, 0x09, 0x81, 0x00,
    ];
    write(dir, "snmp_ber", "v2c-response-int", &RESPONSE_INT)?;
    write(dir, "snmp_ber", "v2c-response-nosuch", &RESPONSE_NO_SUCH)?;
    let oid = ber::parse_oid(".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1")?;
    let engine = usm::Engine {
        id: ingot_fuzz_targets::SNMP_ENGINE_ID.to_vec(),
        boots: 7,
        time: 1234,
    };
    let pdu = message::Pdu {
        kind: message::PduKind::Set,
        request_id: 42,
        oid: &oid,
        value: message::Value::Integer(2),
    };
    // v3 messages with the keys the target decodes with: authenticated and
    // encrypted, and the discovery message (neither).
    let users = [
        ("v3-sha1-aes128", usm::Auth::Sha1, usm::AesKey::Aes128),
        ("v3-sha512-aes256", usm::Auth::Sha512, usm::AesKey::Aes256),
    ];
    for ((name, auth, aes), keys) in users.iter().zip(ingot_fuzz_targets::snmp_keys()) {
        let u = ingot_fuzz_targets::snmp_user(*auth, *aes);
        let msg = usm::encode(42, &u, "ops", &engine, keys, &pdu, 99)?;
        write(dir, "snmp_ber", name, &msg)?;
    }
    let u = ingot_fuzz_targets::snmp_user(usm::Auth::Sha1, usm::AesKey::Aes128);
    let plain = usm::encode(
        1,
        &u,
        "",
        &usm::Engine::default(),
        &usm::Keys::none(),
        &pdu,
        0,
    )?;
    write(dir, "snmp_ber", "v3-discovery", &plain)
}

fn ipmi(dir: &Path) -> Result<()> {
    // Get Channel Authentication Capabilities as ipmitool sends it, and a
    // Chassis Status response (the coordinator's IPMI unit tests).
    let caps = ipmi_message::ipmi_request(0x06, 0, 0x38, &[0x8E, 0x04]);
    write(
        dir,
        "ipmi",
        "v15-get-channel-auth-caps",
        &packet::v15_unauthenticated(&caps),
    )?;
    let mut status = vec![0x81, 0x04, 0x00, 0x20, 0x08, 0x01, 0x00, 0x01, 0x00, 0x00];
    status[2] = ipmi_message::checksum(&status[0..2]);
    let c = ipmi_message::checksum(&status[3..]);
    status.push(c);
    write(
        dir,
        "ipmi",
        "v15-chassis-status",
        &packet::v15_unauthenticated(&status),
    )?;
    let md5 = v15::packet(
        v15::AuthType::Md5,
        &v15::password16("secret"),
        0x0102_0304,
        5,
        &status,
    );
    write(dir, "ipmi", "v15-md5-chassis-status", &md5)?;
    let [sha1, sha256] = ingot_fuzz_targets::ipmi_keys();
    for (name, keys) in [("v20-sha1-aes", &sha1), ("v20-sha256-aes", &sha256)] {
        let p = packet::v20_packet(
            packet::payload::IPMI,
            0xA0B0_C0D0,
            7,
            &status,
            Some((keys, [3; 16])),
        );
        write(dir, "ipmi", name, &p)?;
    }
    // An Open Session Response and a SOL payload, in clear.
    let open = [
        0, 0, 4, 0, 0xd0, 0xc0, 0xb0, 0xa0, 1, 2, 3, 4, 0, 0, 0, 8, 1, 0, 0, 0,
    ];
    let p = packet::v20_packet(packet::payload::OPEN_SESSION_RSP, 0, 0, &open, None);
    write(dir, "ipmi", "v20-open-session-response", &p)?;
    let sol = [1, 0, 0, 0, b'l', b'o', b'g', b'i', b'n', b':'];
    let p = packet::v20_packet(1, 0xA0B0_C0D0, 9, &sol, Some((&sha1, [5; 16])));
    write(dir, "ipmi", "v20-sol", &p)?;
    Ok(())
}

fn json_patch(dir: &Path) -> Result<()> {
    // Patches of the coordinator's API tests.
    let patches: [(&str, &str); 6] = [
        (
            "deploy-fields",
            r#"[{"op": "add", "path": "/instance_info/image_source", "value": "http://127.0.0.1:8088/images/img.raw"},
{"op": "add", "path": "/instance_info/image_checksum", "value": "8a5cbde26b52efe94b95bc77565a7fa84039a39401a7b5dd127497ee17d361bb"},
{"op": "add", "path": "/instance_uuid", "value": "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11"}]"#,
        ),
        (
            "root-device",
            r#"[{"op": "replace", "path": "/properties/root_device", "value": {"name": "nvme0n1", "size": ">= 50"}}]"#,
        ),
        (
            "nested",
            r#"[{"op":"add","path":"/instance_info/image_source","value":"http://x"},{"op":"replace","path":"/name","value":"b"},{"op":"remove","path":"/instance_info/image_source"},{"op":"add","path":"/extra/list/-","value":3},{"op":"add","path":"/extra/list/0","value":0},{"op":"remove","path":"/extra/list/1"}]"#,
        ),
        (
            "remove-root",
            r#"[{"op":"remove","path":"/automated_clean"},{"op":"remove","path":"/extra/nothing"}]"#,
        ),
        (
            "escaped-pointer",
            r#"[{"op":"add","path":"/extra/a~1b~0c","value":[true,null,1.5e3]}]"#,
        ),
        (
            "refused",
            r#"[{"op":"copy","from":"/driver_info/ipmi_password","path":"/extra/p"}]"#,
        ),
    ];
    for (name, p) in patches {
        write(dir, "json_patch", name, p.as_bytes())?;
    }
    let mut with_doc = br#"[{"op":"replace","path":"/a/0/b","value":{}}]"#.to_vec();
    with_doc.push(0);
    with_doc.extend_from_slice(br#"{"a":[{"b":1},2]}"#);
    write(dir, "json_patch", "own-document", &with_doc)
}

fn cpio(dir: &Path) -> Result<()> {
    // The ramdisk builder's entries: init, device nodes, a module, firmware.
    let mut d = Vec::new();
    let mut entry = |kind: u8, perm: u16, path: &str, data: &[u8]| {
        d.push(kind);
        d.extend_from_slice(&perm.to_le_bytes());
        d.push(path.len() as u8);
        d.extend_from_slice(path.as_bytes());
        d.push(data.len() as u8);
        d.extend_from_slice(data);
    };
    entry(1, 0o755, "init", b"\x7fELF\x02\x01\x01");
    entry(3, 0o600, "dev/console", &[5, 1]);
    entry(3, 0o666, "dev/null", &[1, 3]);
    entry(0, 0o755, "proc", b"");
    entry(2, 0o777, "bin/sh", b"/init");
    entry(
        1,
        0o644,
        "lib/modules/6.1.0/kernel/drivers/net/virtio_net.ko",
        b"mod",
    );
    entry(1, 0o644, "lib/firmware/bnx2/bnx2-mips-09-6.2.1a.fw", b"fw");
    write(dir, "cpio", "ramdisk-entries", &d)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, image, out] if flag == "--sparse" => {
            let data = std::fs::read(image).with_context(|| image.clone())?;
            std::fs::write(out, ingot_fuzz_targets::sparse_encode(&data))
                .with_context(|| out.clone())
        }
        [dir] => {
            let dir = Path::new(dir);
            dhcp(dir)?;
            lldp(dir)?;
            snmp(dir)?;
            ipmi(dir)?;
            json_patch(dir)?;
            cpio(dir)
        }
        _ => bail!("usage: make_seeds <fuzz dir> | make_seeds --sparse <image> <out>"),
    }
}
