//! The entry points of Ingot's fuzz targets, one `pub fn <target>(data: &[u8])`
//! per target. Each feeds arbitrary bytes to one parser the way its crate
//! uses it, and must never panic, whatever the bytes: a panic is a bug in
//! the parser (or a broken invariant the entry point checks).
//!
//! They are called by the cargo-fuzz binaries in `fuzz/fuzz_targets/`
//! (nightly, libFuzzer) and by `tests/replay.rs`, which replays every file
//! of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` on stable in
//! the workspace's ordinary `cargo test`. See docs/fuzzing.md.

mod cpio;
mod disk;

use serde_json::Value;

pub use disk::{SparseDisk, sparse_encode};

/// A target's entry point.
pub type EntryPoint = fn(&[u8]);

/// Every target: its name (the file name in `fuzz/fuzz_targets/` and the
/// corpus folder) and its entry point.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("qcow2", qcow2),
    ("partition_table", partition_table),
    ("wipe_signatures", wipe_signatures),
    ("dhcp_agent", dhcp_agent),
    ("dhcp_coordinator", dhcp_coordinator),
    ("lldp", lldp),
    ("snmp_ber", snmp_ber),
    ("json_patch", json_patch),
    ("cpio", cpio),
    ("ipmi", ipmi),
];

/// The cpio writer of `ingot-initramfs`, round-tripped (it has no reader):
/// see the `cpio` module.
pub fn cpio(data: &[u8]) {
    cpio::round_trip(data);
}

/// The qcow2 reader of `ingot-image-tools` (the agent's streaming path):
/// `parse_header`, `read_layout` over random-access reads of `data` (with
/// the file length known, and unknown as over HTTP without a length), then
/// the whole file streamed through `StreamMapper` in chunks. Every piece of
/// guest data it emits must lie inside the virtual disk.
pub fn qcow2(data: &[u8]) {
    use ingot_image_tools::qcow2::{self, StreamMapper};
    let Ok(header) = qcow2::parse_header(data) else {
        return;
    };
    for file_len in [Some(data.len() as u64), None] {
        let mut ranges = SliceRanges(data);
        let Ok(layout) = qcow2::read_layout(header.clone(), &mut ranges, file_len) else {
            continue;
        };
        let size = layout.header.size;
        let mut mapper = StreamMapper::new(layout);
        let mut emit = |g: qcow2::GuestData<'_>| {
            let end = g.offset.checked_add(g.data.len() as u64);
            assert!(
                end.is_some_and(|end| end <= size),
                "guest data at {} (+{}) beyond the disk size {size}",
                g.offset,
                g.data.len()
            );
            Ok(())
        };
        // The chunking varies with the input, so that table and cluster
        // boundaries fall at every position within a chunk.
        let chunk = [1, 7, 512, 4096, 65536][data.len() % 5];
        let mut pos = 0u64;
        let mut ok = true;
        for piece in data.chunks(chunk) {
            if mapper.feed(pos, piece, &mut emit).is_err() {
                ok = false;
                break;
            }
            pos += piece.len() as u64;
        }
        if ok {
            let _ = mapper.finish(pos, &mut emit);
        }
    }
}

/// `RangeRead` over a byte slice (the file).
struct SliceRanges<'a>(&'a [u8]);

impl ingot_image_tools::source::RangeRead for SliceRanges<'_> {
    fn read_range(
        &mut self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ingot_image_tools::source::SourceError> {
        let range = usize::try_from(offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            self.0.get(start..end)
        });
        range
            .map(<[u8]>::to_vec)
            .ok_or_else(|| ingot_image_tools::source::SourceError::Range {
                what: "the fuzz input".into(),
                offset,
                len,
                reason: "beyond its end".into(),
            })
    }
}

/// The agent's partition-table code on a disk image: `ptable::mbr` and
/// `ptable::gpt` (read at 512- and 4096-byte sectors), then
/// `fit_gpt_to_disk` as after a whole-disk image write (on a private memfd);
/// and the wipe's own lenient reader, `wipe::partitions::read_layout`.
/// `data` is a [`SparseDisk`]. After a successful fit the primary GPT must
/// read back as valid.
pub fn partition_table(data: &[u8]) {
    use ingot_agent::ptable::{fit, gpt, mbr};
    use ingot_agent::wipe::partitions;
    let Some(disk) = SparseDisk::decode(data) else {
        return;
    };
    for lbs in [512, 4096] {
        let _ = partitions::read_layout(&disk, lbs);
    }
    // A memfd is sparse: a disk of a terabyte costs only its extents.
    let Some(file) = disk.to_memfd(1 << 40) else {
        return;
    };
    let size = disk.size().min(1 << 40);
    if let Ok(Some(sector0)) = mbr::read(&file) {
        let _ = mbr::disk_identifier(&sector0);
        let _ = mbr::primaries(&sector0);
        let _ = mbr::is_protective(&sector0);
    }
    for sector in [512, 4096] {
        if let Ok(Some(g)) = gpt::Gpt::read(&file, sector, size) {
            let _ = g.disk_guid();
            let _ = g.partitions();
            let _ = g.end_layout(size);
            let _ = gpt::header_at(&file, sector, g.backup_lba());
        }
    }
    let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", file_fd(&file)));
    if let Ok(Some(_)) = fit::fit_gpt_to_disk(&path) {
        let after = gpt::Gpt::read(&file, 512, size);
        assert!(
            matches!(after, Ok(Some(_))),
            "the GPT fitted to the disk does not read back: {after:?}"
        );
    }
}

fn file_fd(f: &std::fs::File) -> i32 {
    use std::os::fd::AsRawFd;
    f.as_raw_fd()
}

/// The wipe's signature probers as `wipe_metadata` runs them: the partition
/// tables (`read_layout`), then every container (the whole disk and each
/// partition) through `signatures::probe`, then the erase ranges merged.
/// `data` is a [`SparseDisk`]. Every erase range must lie inside the disk.
pub fn wipe_signatures(data: &[u8]) {
    use ingot_agent::wipe::{metadata, partitions, signatures};
    let Some(disk) = SparseDisk::decode(data) else {
        return;
    };
    let size = disk.size();
    let Ok(layout) = partitions::read_layout(&disk, 512) else {
        return;
    };
    let mut containers = vec![(0, size, true)];
    // Each container costs a 1.5 MiB read (its head and tail): a crafted
    // table of 4096 partitions is slow by design, not a bug worth a timeout.
    containers.extend(
        layout
            .partitions
            .iter()
            .take(16)
            .map(|p| (p.offset, p.size, false)),
    );
    let mut ranges: Vec<(u64, u64)> = layout.regions.clone();
    for (off, len, whole) in containers {
        if let Ok(hits) = signatures::probe(&disk, off, len, whole) {
            for h in hits {
                for &(o, l) in &h.erase {
                    assert!(
                        o.checked_add(l).is_some_and(|end| end <= size),
                        "{} erase range {o} (+{l}) beyond the disk ({size} bytes)",
                        h.name
                    );
                }
                ranges.extend(h.erase);
            }
        }
    }
    for (o, l) in metadata::merge_ranges(ranges, 4096, size) {
        assert!(
            o.checked_add(l).is_some_and(|end| end <= size),
            "merged range {o} (+{l}) beyond the disk ({size} bytes)"
        );
    }
}

/// The agent's DHCP client parser: `udp_to_client` on a raw IPv4 packet,
/// then `parse_reply` on its payload (and on `data` itself), for the MAC
/// the packet is addressed to.
pub fn dhcp_agent(data: &[u8]) {
    use ingot_agent::net::dhcp_packet;
    let reply = |m: &[u8]| {
        let mac: [u8; 6] = m
            .get(28..34)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default();
        let _ = dhcp_packet::parse_reply(m, mac);
    };
    if let Some(udp) = dhcp_packet::udp_to_client(data) {
        reply(udp);
    }
    reply(data);
}

/// The coordinator's DHCP server: `dhcp::wire::decode` (its bounds-checked
/// sanitiser, then `dhcproto`, which can panic on what the sanitiser lets
/// through) and `dhcp::policy::client`, what the server reads from a request.
pub fn dhcp_coordinator(data: &[u8]) {
    use ingot_coordinator::dhcp::{policy, wire};
    if let Some(m) = wire::decode(data) {
        let _ = policy::client(&m);
        let _ = m.opts().msg_type();
    }
}

/// The agent's LLDP parser: a whole Ethernet frame, and the bytes as an
/// LLDPDU.
pub fn lldp(data: &[u8]) {
    use ingot_agent::inventory::lldp;
    let _ = lldp::parse_frame(data);
    let _ = lldp::parse_tlvs(data);
}

/// The coordinator's SNMP decoders: a v1/v2c `Response`, an SNMPv3 message
/// through the USM without keys and with the keys of a user with
/// authentication and privacy (so that authenticated and encrypted seeds
/// reach the ScopedPDU), and every TLV nested in `data` through the BER
/// reader.
pub fn snmp_ber(data: &[u8]) {
    use ingot_coordinator::power::snmp::message::Response;
    use ingot_coordinator::power::snmp::usm;
    let _ = Response::decode(data);
    let _ = usm::decode(data, &usm::Keys::none());
    for keys in snmp_keys() {
        let _ = usm::decode(data, keys);
    }
    walk_ber(data, 0);
}

/// The users whose keys [`snmp_ber`] decodes with (localising a passphrase
/// hashes a megabyte: done once). Their engine is the seeds' engine.
pub fn snmp_keys() -> &'static [ingot_coordinator::power::snmp::usm::Keys] {
    use ingot_coordinator::power::snmp::usm::{AesKey, Auth, Keys};
    static KEYS: std::sync::OnceLock<Vec<Keys>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        [(Auth::Sha1, AesKey::Aes128), (Auth::Sha512, AesKey::Aes256)]
            .into_iter()
            .map(|(auth, aes)| {
                let u = snmp_user(auth, aes);
                Keys::new(&u, SNMP_ENGINE_ID)
            })
            .collect()
    })
}

/// The snmpEngineID of the seeds (the coordinator's USM test's engine).
pub const SNMP_ENGINE_ID: &[u8] = &[0x80, 0, 0x1f, 0x88, 4, 1, 2, 3];

/// The USM user of the seeds: `ops`, passphrases `auth-pass` and `priv-pass`.
pub fn snmp_user(
    auth: ingot_coordinator::power::snmp::usm::Auth,
    aes: ingot_coordinator::power::snmp::usm::AesKey,
) -> ingot_coordinator::power::snmp::usm::Usm {
    ingot_coordinator::power::snmp::usm::Usm {
        user: "ops".into(),
        auth: Some((auth, "auth-pass".into())),
        priv_aes: Some("priv-pass".into()),
        aes,
        context_engine_id: Vec::new(),
        context_name: String::new(),
    }
}

fn walk_ber(buf: &[u8], depth: u32) {
    use ingot_coordinator::power::snmp::ber::{self, Reader};
    let mut r = Reader::new(buf);
    while let Ok((tag, content)) = r.any() {
        let _ = ber::decode_integer(content);
        if let Some(arcs) = ber::decode_oid(content) {
            let _ = ber::format_oid(&arcs);
        }
        // Constructed (SEQUENCE, PDUs) and OCTET STRING (the USM's
        // security parameters) may hold more TLVs.
        if depth < 16 && (tag & 0x20 != 0 || tag == 0x04) {
            walk_ber(content, depth + 1);
        }
    }
}

/// The coordinator's JSON Patch: `patch::parse` on the request body, then
/// `patch::apply` to a node-like document. `data` is the patch; after a NUL
/// byte, an optional document (a JSON object) replaces the built-in one.
pub fn json_patch(data: &[u8]) {
    use ingot_coordinator::api::patch;
    let (body, doc) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(ops) = patch::parse(body) else {
        return;
    };
    let mut doc = match doc {
        Some(d) => match serde_json::from_slice::<Value>(d) {
            Ok(Value::Object(m)) => m,
            _ => return,
        },
        None => node_document(),
    };
    // One operation at a time, to check what each one did (`apply` stops
    // at the first that fails, as here).
    for op in &ops {
        let before = Value::Object(doc.clone());
        if patch::apply(&mut doc, std::slice::from_ref(op), |_| Value::Null).is_err() {
            break;
        }
        check_patch_op(&before, &Value::Object(doc.clone()), op);
    }
    let _ = serde_json::to_vec(&doc);
}

/// What RFC 6902 (and Ironic, through python-jsonpatch) says an operation
/// that succeeded did, checked with serde_json's RFC 6901 pointers.
fn check_patch_op(before: &Value, after: &Value, op: &ingot_coordinator::api::patch::PatchOp) {
    let Some((parent, last)) = op.path.rsplit_once('/') else {
        return;
    };
    let len = |v: &Value, p: &str| match v.pointer(p) {
        Some(Value::Array(a)) => Some(a.len()),
        _ => None,
    };
    let (len_before, len_after) = (len(before, parent), len(after, parent));
    match op.op.as_str() {
        "add" | "replace" => {
            let want = op.value.as_ref();
            let got = match after.pointer(parent) {
                Some(Value::Array(a)) if last == "-" && op.op == "add" => a.last(),
                _ => after.pointer(&op.path),
            };
            assert_eq!(got, want, "{op:?}: the value is not at the path");
            if let (Some(b), Some(a)) = (len_before, len_after) {
                let grew = if op.op == "add" { 1 } else { 0 };
                assert_eq!(a, b + grew, "{op:?}: the array's length");
            }
        }
        "remove" if parent.is_empty() => {
            assert_eq!(after.pointer(&op.path), Some(&Value::Null), "{op:?}");
        }
        "remove" => match (len_before, len_after) {
            (Some(b), Some(a)) => assert_eq!(a + 1, b, "{op:?}: the array's length"),
            _ => assert!(after.pointer(&op.path).is_none(), "{op:?}: still there"),
        },
        _ => {}
    }
}

fn node_document() -> serde_json::Map<String, Value> {
    let v = serde_json::json!({
        "name": "node-0",
        "driver": "ipmi",
        "driver_info": {"ipmi_address": "10.0.0.9", "ipmi_password": "******"},
        "instance_info": {},
        "properties": {"root_device": {"name": "/dev/sda"}, "capabilities": "boot_mode:uefi"},
        "extra": {"list": [1, 2, {"a": []}]},
        "automated_clean": null,
        "traits": []
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// `ingot-ipmi`'s decoders (the coordinator's IPMI): RMCP/RMCP+ packets (`parse_packet`
/// without keys, and with HMAC-SHA1 and HMAC-SHA256 session keys), IPMI 1.5
/// packets, LAN response messages and SOL payloads, also on each payload a
/// packet yields.
pub fn ipmi(data: &[u8]) {
    use ingot_ipmi::{message, packet, sol, v15};
    let payloads = |p: Option<packet::Incoming>| match p {
        Some(packet::Incoming::V15(m)) => Some(m),
        Some(packet::Incoming::V20 { payload, .. }) => Some(payload),
        None => None,
    };
    let mut inner = Vec::new();
    inner.extend(payloads(packet::parse_packet(data, None)));
    for keys in ipmi_keys() {
        inner.extend(payloads(packet::parse_packet(data, Some(&keys))));
    }
    if let Some(p) = v15::parse(data) {
        inner.push(p.msg);
    }
    inner.push(data.to_vec());
    for m in &inner {
        let _ = message::parse_ipmi_response(m);
        let _ = message::completed_data(m);
        let _ = sol::SolPacket::decode(m);
    }
}

/// The session keys [`ipmi`] checks integrity and decrypts with (those the
/// seeds were made with).
pub fn ipmi_keys() -> [ingot_ipmi::packet::SessionKeys; 2] {
    use ingot_ipmi::crypto::AuthAlg;
    use ingot_ipmi::packet::SessionKeys;
    [
        SessionKeys {
            alg: AuthAlg::HmacSha1,
            k1: vec![0x11; 20],
            aes: [0x22; 16],
        },
        SessionKeys {
            alg: AuthAlg::HmacSha256,
            k1: vec![0x33; 32],
            aes: [0x44; 16],
        },
    ]
}
