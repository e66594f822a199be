//! Known-value tests: a cipher suite 3 session of `ipmitool -I lanplus -C 3`
//! (user `admin`, password `password`) with OpenIPMI's ipmi_sim, captured on
//! loopback. Our RAKP codes, session integrity key, K1/K2, integrity check
//! and decryption must reproduce what both real implementations exchanged.

use crate::crypto::{self, AuthAlg, RakpParams};
use crate::packet::{self, Incoming, SessionKeys, payload};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

const RAKP1: &str = "0600ff070612000000000000000021000000000082010000962a54c18c3efcbe3cc2fda57f1aeb251400000561646d696e";
const RAKP2: &str = "0600ff07061300000000000000003c0000000000a4a3a2a0a0de3691c85cda099a25fe712cceaabba123456789abcdefa123456789abcdefa81b835133423f13938ddc36743ff8038732615e";
const RAKP3: &str =
    "0600ff07061400000000000000001c00000000008201000086fa46fc81bde429933c72bcf6f640befb49cd01";
const RAKP4: &str = "0600ff0706150000000000000000140000000000a4a3a2a0a62d13241c2b3b4b6552097b";
/// ipmitool's first request in the session and ipmi_sim's answer.
const REQ: &str = "0600ff0706c0820100000300000020003420bb044f2a21c17a63c2beb8bbcdacdbb7ee9d8da32a8cab3fb265309c89d4ffff0207fbdb531a9b4199974ad04a6a";
const RSP: &str = "0600ff0706c0a4a3a2a00100000020003b01a40131e908293fcaef8a267937fa8f57479469741d16085aea6f40f9d63effff02077993a74b9161320310571f53";

fn v20(p: &str) -> (u8, u32, Vec<u8>) {
    match packet::parse_packet(&h(p), None) {
        Some(Incoming::V20 {
            payload_type,
            session_id,
            payload,
        }) => (payload_type, session_id, payload),
        other => panic!("not RMCP+: {other:?}"),
    }
}

fn params() -> RakpParams<'static> {
    let (t1, _, r1) = v20(RAKP1);
    let (t2, _, r2) = v20(RAKP2);
    assert_eq!((t1, t2), (payload::RAKP1, payload::RAKP2));
    let mut p = RakpParams {
        console_sid: u32::from_le_bytes([r2[4], r2[5], r2[6], r2[7]]),
        bmc_sid: u32::from_le_bytes([r1[4], r1[5], r1[6], r1[7]]),
        console_rand: [0; 16],
        bmc_rand: [0; 16],
        bmc_guid: [0; 16],
        role: r1[24],
        username: b"admin",
    };
    p.console_rand.copy_from_slice(&r1[8..24]);
    p.bmc_rand.copy_from_slice(&r2[8..24]);
    p.bmc_guid.copy_from_slice(&r2[24..40]);
    assert_eq!(p.console_sid, 0xA0A2_A3A4);
    assert_eq!(p.bmc_sid, 0x182);
    assert_eq!(p.role, 0x14, "administrator with name-only lookup");
    p
}

#[test]
fn rakp_codes_match_a_real_exchange() {
    let p = params();
    let kuid = crypto::password_key(b"password");
    let (_, _, r2) = v20(RAKP2);
    assert_eq!(p.rakp2_auth(AuthAlg::HmacSha1, &kuid), r2[40..60]);
    let (_, _, r3) = v20(RAKP3);
    assert_eq!(p.rakp3_auth(AuthAlg::HmacSha1, &kuid), r3[8..28]);
    let sik = p.sik(AuthAlg::HmacSha1, &kuid);
    let (_, _, r4) = v20(RAKP4);
    assert_eq!(p.rakp4_icv(AuthAlg::HmacSha1, &sik), r4[8..20]);
    // A wrong password does not reproduce the BMC's code.
    let wrong = crypto::password_key(b"passwore");
    assert_ne!(p.rakp2_auth(AuthAlg::HmacSha1, &wrong), r2[40..60]);
}

#[test]
fn session_keys_verify_and_decrypt_real_packets() {
    let p = params();
    let kuid = crypto::password_key(b"password");
    let sik = p.sik(AuthAlg::HmacSha1, &kuid);
    let (k1, aes) = crypto::derive_keys(AuthAlg::HmacSha1, &sik);
    let keys = SessionKeys {
        alg: AuthAlg::HmacSha1,
        k1,
        aes,
    };
    // ipmitool's request: Set Session Privilege Level (App 0x3B) to admin.
    let Some(Incoming::V20 {
        payload_type,
        session_id,
        payload: req,
    }) = packet::parse_packet(&h(REQ), Some(&keys))
    else {
        panic!("request did not verify");
    };
    assert_eq!((payload_type, session_id), (payload::IPMI, p.bmc_sid));
    assert_eq!(req, packet::ipmi_request(0x06, req[4] >> 2, 0x3B, &[0x04]));
    // ipmi_sim's answer: completion 0, privilege 4.
    let Some(Incoming::V20 { payload: rsp, .. }) = packet::parse_packet(&h(RSP), Some(&keys))
    else {
        panic!("response did not verify");
    };
    let r = packet::parse_ipmi_response(&rsp).expect("response");
    assert_eq!(
        (r.netfn, r.cmd, r.completion, r.data.as_slice()),
        (0x07, 0x3B, 0, &[0x04][..])
    );
    // Re-encoding with ipmitool's IV gives its packet byte for byte.
    let raw = h(REQ);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&raw[16..32]);
    let again = packet::v20_packet(payload::IPMI, p.bmc_sid, 3, &req, Some((&keys, iv)));
    assert_eq!(hex::encode(again), REQ);
    // A flipped bit fails the integrity check.
    let mut bad = raw.clone();
    bad[40] ^= 1;
    assert!(packet::parse_packet(&bad, Some(&keys)).is_none());
}
