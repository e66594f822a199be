//! BER and message tests against byte sequences captured with net-snmp
//! 5.9.3 (`snmpget -d`, `snmpset -d`), and the PDU family table.
#![allow(clippy::unwrap_used)]

use super::ber::{self, Reader};
use super::message::{PduKind, Request, Response, Value, Version};
use super::pdu;
use crate::power::PowerState;

fn oid(s: &str) -> Vec<u32> {
    ber::parse_oid(s).unwrap()
}

const RPDU_1: &str = ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1";

/// `snmpget -v2c -c public … .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1`
const GET_V2C: [u8; 51] = [
    0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x24, 0x02,
    0x04, 0x32, 0x83, 0xda, 0x9b, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x16, 0x30, 0x14, 0x06,
    0x10, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x0c, 0x03, 0x03, 0x01, 0x01, 0x04,
    0x01, 0x05, 0x00,
];

/// `snmpset -v1 -c private … .1.3.6.1.4.1.318.1.1.4.4.2.1.3.12 i 2`
const SET_V1: [u8; 52] = [
    0x30, 0x32, 0x02, 0x01, 0x00, 0x04, 0x07, b'p', b'r', b'i', b'v', b'a', b't', b'e', 0xa3, 0x24,
    0x02, 0x04, 0x46, 0x75, 0xab, 0x43, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x16, 0x30, 0x14,
    0x06, 0x0f, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x04, 0x04, 0x02, 0x01, 0x03,
    0x0c, 0x02, 0x01, 0x02,
];

/// snmpd's v2c answer: outlet 2 reads INTEGER 2.
const RESPONSE_INT: [u8; 52] = [
    0x30, 0x32, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2, 0x25, 0x02,
    0x04, 0x04, 0x44, 0x09, 0x6f, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x17, 0x30, 0x15, 0x06,
    0x10, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x0c, 0x03, 0x03, 0x01, 0x01, 0x04,
    0x02, 0x02, 0x01, 0x02,
];

/// snmpd's v2c answer for outlet 9: noSuchInstance.
const RESPONSE_NO_SUCH: [u8; 51] = [
    0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2, 0x24, 0x02,
    0x04, 0x64, 0x0f, 0x8f, 0x74, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x16, 0x30, 0x14, 0x06,
    0x10, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x0c, 0x03, 0x03, 0x01, 0x01, 0x04,
    0x09, 0x81, 0x00,
];

/// snmpd's v1 answer to a set with the read-only community: noSuchName, index 1.
const RESPONSE_V1_ERROR: [u8; 52] = [
    0x30, 0x32, 0x02, 0x01, 0x00, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2, 0x25, 0x02,
    0x04, 0x75, 0x75, 0x37, 0x26, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01, 0x30, 0x17, 0x30, 0x15, 0x06,
    0x10, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x3e, 0x01, 0x01, 0x0c, 0x03, 0x03, 0x01, 0x01, 0x04,
    0x02, 0x02, 0x01, 0x01,
];

#[test]
fn get_request_matches_net_snmp() {
    let o = oid(RPDU_1);
    let req = Request {
        version: Version::V2c,
        community: "public",
        kind: PduKind::Get,
        request_id: 0x3283_da9b,
        oid: &o,
        value: Value::Null,
    };
    assert_eq!(req.encode(), GET_V2C);
}

#[test]
fn set_request_matches_net_snmp() {
    let o = oid(".1.3.6.1.4.1.318.1.1.4.4.2.1.3.12");
    let req = Request {
        version: Version::V1,
        community: "private",
        kind: PduKind::Set,
        request_id: 0x4675_ab43,
        oid: &o,
        value: Value::Integer(2),
    };
    assert_eq!(req.encode(), SET_V1);
}

#[test]
fn response_with_integer_decodes() {
    let r = Response::decode(&RESPONSE_INT).unwrap();
    assert_eq!(r.version, 1);
    assert_eq!(r.community, b"public");
    assert_eq!(r.request_id, 0x0444_096f);
    assert_eq!(r.error_status, 0);
    assert_eq!(
        r.bindings,
        vec![(
            oid(".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.2"),
            Value::Integer(2)
        )]
    );
}

#[test]
fn response_with_exception_and_v1_error_decode() {
    let r = Response::decode(&RESPONSE_NO_SUCH).unwrap();
    assert_eq!(r.bindings[0].1, Value::NoSuch(0x81));
    let r = Response::decode(&RESPONSE_V1_ERROR).unwrap();
    assert_eq!(r.version, 0);
    assert_eq!((r.error_status, r.error_index), (2, 1));
    assert_eq!(r.bindings[0].1, Value::Integer(1));
}

#[test]
fn truncated_and_wrong_messages_are_errors() {
    for n in 0..RESPONSE_INT.len() {
        assert!(Response::decode(&RESPONSE_INT[..n]).is_err(), "prefix {n}");
    }
    // A request is not a response.
    assert!(Response::decode(&GET_V2C).is_err());
    // A length that claims more than the buffer holds.
    let mut bad = RESPONSE_INT;
    bad[1] = 0x7f;
    assert!(Response::decode(&bad).is_err());
}

#[test]
fn integers_use_minimal_twos_complement() {
    let cases: [(i64, &[u8]); 10] = [
        (0, &[0x00]),
        (1, &[0x01]),
        (127, &[0x7f]),
        (128, &[0x00, 0x80]),
        (256, &[0x01, 0x00]),
        (-1, &[0xff]),
        (-128, &[0x80]),
        (-129, &[0xff, 0x7f]),
        (0x3283_da9b, &[0x32, 0x83, 0xda, 0x9b]),
        (0x7fff_ffff, &[0x7f, 0xff, 0xff, 0xff]),
    ];
    for (v, bytes) in cases {
        assert_eq!(ber::integer_content(v), bytes, "{v}");
        assert_eq!(ber::decode_integer(bytes), Some(v), "{v}");
    }
    assert_eq!(ber::decode_integer(&[0xff, 0xff, 0xff, 0xff]), Some(-1));
    assert_eq!(ber::decode_integer(&[]), None);
}

#[test]
fn oids_and_long_lengths_round_trip() {
    // 318 = 0x82 0x3e; 13742 and 21317 need two octets, 4294967295 five.
    for s in [
        ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1",
        ".1.3.6.1.4.1.13742.6.4.1.2.1.3.1.24",
        ".1.3.6.1.4.1.21317.1.3.2.2.2.2.3.0",
        ".2.999.4294967295",
        ".0.39",
    ] {
        let arcs = oid(s);
        assert_eq!(ber::decode_oid(&ber::oid_content(&arcs)).unwrap(), arcs);
        assert_eq!(ber::format_oid(&arcs), s);
    }
    assert_eq!(
        ber::oid_content(&oid("1.3.6.1.4.1.318")),
        [0x2b, 6, 1, 4, 1, 0x82, 0x3e]
    );
    for bad in ["", "1", "1.40", "3.1", "1.3.x", "1..3"] {
        assert!(ber::parse_oid(bad).is_err(), "{bad:?}");
    }
    // An OID whose last sub-identifier is unterminated.
    assert_eq!(ber::decode_oid(&[0x2b, 0x82]), None);

    let long = vec![0xabu8; 300];
    let mut out = Vec::new();
    ber::push_tlv(&mut out, 0x04, &long);
    assert_eq!(&out[..4], [0x04, 0x82, 0x01, 0x2c]);
    let mut r = Reader::new(&out);
    assert_eq!(r.octets("long").unwrap(), &long[..]);
    assert!(r.is_empty());
}

#[test]
fn families_build_ironic_oids() {
    let apc = pdu::find("apc_rackpdu").unwrap();
    assert_eq!(ber::format_oid(&apc.status_oid(1)), RPDU_1);
    assert_eq!(apc.switch(1, PowerState::Off), (oid(RPDU_1), 2));
    assert_eq!(apc.state_of(1), Some(PowerState::On));

    let aten = pdu::find("aten").unwrap();
    assert_eq!(
        ber::format_oid(&aten.status_oid(3)),
        ".1.3.6.1.4.1.21317.1.3.2.2.2.2.3.0"
    );
    assert_eq!(aten.switch(3, PowerState::On).1, 2);

    let eaton = pdu::find("eatonpower").unwrap();
    let (on_oid, on_val) = eaton.switch(5, PowerState::On);
    let (off_oid, off_val) = eaton.switch(5, PowerState::Off);
    assert_eq!(ber::format_oid(&on_oid), ".1.3.6.1.4.1.534.6.6.7.6.6.1.4.5");
    assert_eq!(
        ber::format_oid(&off_oid),
        ".1.3.6.1.4.1.534.6.6.7.6.6.1.3.5"
    );
    assert_eq!((on_val, off_val), (0, 0));
    assert_eq!(eaton.state_of(3), None, "pending on");

    let raritan = pdu::find("raritan_pdu2").unwrap();
    assert_eq!(
        ber::format_oid(&raritan.switch(2, PowerState::On).0),
        ".1.3.6.1.4.1.13742.6.4.1.2.1.2.1.2"
    );
    assert_eq!(raritan.state_of(8), Some(PowerState::Off));

    let sentry4 = pdu::find("servertech_sentry4").unwrap();
    assert_eq!(sentry4.state_of(11), Some(PowerState::On));
    assert_eq!(sentry4.state_of(10), Some(PowerState::Off));
    assert_eq!(sentry4.state_of(8), None);

    assert_eq!(
        pdu::find("apc").unwrap().status,
        pdu::find("apc_masterswitch").unwrap().status
    );
    assert_eq!(pdu::find("apc_masterswitchplus").unwrap().off.value, 3);
    for name in [
        "apc",
        "apc_masterswitch",
        "apc_masterswitchplus",
        "apc_rackpdu",
        "aten",
        "cyberpower",
        "eatonpower",
        "teltronix",
        "baytech_mrp27",
        "servertech_sentry3",
        "servertech_sentry4",
        "raritan_pdu2",
        "vertivgeist_pdu",
    ] {
        let f = pdu::find(name).unwrap();
        assert!(
            f.status_on.iter().all(|v| !f.status_off.contains(v)),
            "{name}: on and off overlap"
        );
    }
    assert!(pdu::find("auto").is_none());
}

#[test]
fn driver_info_is_parsed_like_ironic() {
    use super::driver::outlet;
    use crate::power::PowerError;
    let info = |v: serde_json::Value| v.as_object().unwrap().clone();

    let o = outlet(&info(serde_json::json!({
        "snmp_driver": "apc_rackpdu", "snmp_address": "10.0.0.9", "snmp_outlet": 4,
        "snmp_version": "2c", "snmp_community": "c", "snmp_community_write": "w",
    })))
    .unwrap();
    assert_eq!(
        (o.agent.port, o.index, o.agent.version),
        (161, 4, Version::V2c)
    );
    assert_eq!(
        (
            o.agent.read_community.as_str(),
            o.agent.write_community.as_str()
        ),
        ("c", "w")
    );

    let o = outlet(&info(serde_json::json!({
        "snmp_driver": "aten", "snmp_address": "pdu", "snmp_outlet": "2", "snmp_port": "1161",
    })))
    .unwrap();
    assert_eq!((o.agent.port, o.agent.version), (1161, Version::V1));
    assert_eq!(o.agent.read_community, "public");

    for (bad, want) in [
        (
            serde_json::json!({"snmp_driver": "apc"}),
            "Missing are: snmp_address, snmp_outlet",
        ),
        (
            serde_json::json!({"snmp_driver": "nope", "snmp_address": "a", "snmp_outlet": 1}),
            "unknown driver",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 0}),
            "snmp_outlet",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_port": 70000}),
            "snmp_port",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_version": "3"}),
            "Missing are: snmp_user",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_version": "3", "snmp_user": "u", "snmp_auth_key": "short"}),
            "at least 8",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_version": "3", "snmp_user": "u", "snmp_auth_key": "12345678", "snmp_auth_protocol": "sha3"}),
            "'sha3' is not supported",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_version": "3", "snmp_user": "u", "snmp_auth_key": "12345678", "snmp_priv_key": "12345678"}),
            "'des' is not supported",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_version": "3", "snmp_user": "u", "snmp_priv_protocol": "aes", "snmp_priv_key": "12345678"}),
            "needs authentication",
        ),
        (
            serde_json::json!({"snmp_driver": "apc", "snmp_address": "a", "snmp_outlet": 1, "snmp_version": "2"}),
            "unknown SNMP version",
        ),
    ] {
        match outlet(&info(bad.clone())) {
            Err(PowerError::InvalidDriverInfo(m)) => assert!(m.contains(want), "{bad}: {m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn usm_v3_user_is_parsed() {
    use super::driver::outlet;
    use super::usm::Auth;
    let info = serde_json::json!({
        "snmp_driver": "apc_rackpdu", "snmp_address": "pdu", "snmp_outlet": 1,
        "snmp_version": "3", "snmp_user": "ops", "snmp_auth_protocol": "sha",
        "snmp_auth_key": "auth-pass", "snmp_priv_protocol": "aes", "snmp_priv_key": "priv-pass",
        "snmp_context_engine_id": "0x8000", "snmp_context_name": "ctx",
    });
    let o = outlet(info.as_object().unwrap()).unwrap();
    let u = o.agent.usm.unwrap();
    assert_eq!(u.user, "ops");
    assert_eq!(u.auth, Some((Auth::Sha1, "auth-pass".into())));
    assert_eq!(u.priv_aes.as_deref(), Some("priv-pass"));
    assert_eq!(u.context_engine_id, [0x80, 0x00]);
    // An auth key alone means MD5, as in Ironic.
    let info = serde_json::json!({
        "snmp_driver": "apc", "snmp_address": "pdu", "snmp_outlet": 1,
        "snmp_version": "3", "snmp_user": "ops", "snmp_auth_key": "auth-pass",
    });
    let u = outlet(info.as_object().unwrap())
        .unwrap()
        .agent
        .usm
        .unwrap();
    assert_eq!(u.auth.map(|a| a.0), Some(Auth::Md5));
}

/// RFC 3414 appendix A.3: "maplesyrup" localised to engine ID
/// 00 00 00 00 00 00 00 00 00 00 00 02.
#[test]
fn usm_keys_match_rfc3414_vectors() {
    use super::usm::{Auth, localize};
    let engine = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    assert_eq!(
        hex::encode(localize(Auth::Md5, "maplesyrup", &engine)),
        "526f5eed9fcce26f8964c2930787d82b"
    );
    assert_eq!(
        hex::encode(localize(Auth::Sha1, "maplesyrup", &engine)),
        "6695febc9288e36282235fc7151f128497b38f3f"
    );
}

/// NIST SP 800-38A F.3.13 (CFB128-AES128.Encrypt), two blocks, and a
/// partial last block round trip.
#[test]
fn aes_cfb_matches_nist_vector() {
    use super::usm::aes_cfb;
    let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
    let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
        .unwrap()
        .try_into()
        .unwrap();
    let plain =
        hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51").unwrap();
    let enc = aes_cfb(&key, &iv, &plain, false).unwrap();
    assert_eq!(
        hex::encode(&enc),
        "3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b"
    );
    assert_eq!(aes_cfb(&key, &iv, &enc, true).unwrap(), plain);
    let odd = &plain[..21];
    let enc = aes_cfb(&key, &iv, odd, false).unwrap();
    assert_eq!(enc, &aes_cfb(&key, &iv, &plain, false).unwrap()[..21]);
    assert_eq!(aes_cfb(&key, &iv, &enc, true).unwrap(), odd);
    // F.3.17 (CFB128-AES256.Encrypt), first block.
    let key256 =
        hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").unwrap();
    assert_eq!(
        hex::encode(aes_cfb(&key256, &iv, &plain[..16], false).unwrap()),
        "dc7e84bfda79164b7ecd8486985d3860"
    );
}

#[test]
fn usm_message_round_trips_and_rejects_a_bad_mac() {
    use super::message::Pdu;
    use super::usm::{self, Auth, Engine, Keys, Usm};
    let u = Usm {
        user: "ops".into(),
        auth: Some((Auth::Sha1, "auth-pass".into())),
        priv_aes: Some("priv-pass".into()),
        aes: usm::AesKey::Aes128,
        context_engine_id: Vec::new(),
        context_name: String::new(),
    };
    let engine = Engine {
        id: vec![0x80, 0, 0x1f, 0x88, 4, 1, 2, 3],
        boots: 7,
        time: 1234,
    };
    let keys = Keys::new(&u, &engine.id);
    let o = oid(RPDU_1);
    let pdu = Pdu {
        kind: PduKind::Set,
        request_id: 42,
        oid: &o,
        value: Value::Integer(2),
    };
    let msg = usm::encode(42, &u, "ops", &engine, &keys, &pdu, 99).unwrap();
    // Encrypted: the OID does not appear in clear.
    assert!(!msg.windows(4).any(|w| w == [0x82, 0x3e, 0x01, 0x01]));
    let a = usm::decode(&msg, &keys).unwrap();
    assert_eq!((a.msg_id, a.pdu_tag), (42, 0xa3));
    assert_eq!(a.engine, engine);
    assert_eq!(a.pdu.bindings, vec![(o.clone(), Value::Integer(2))]);
    // One flipped bit anywhere in the ciphertext fails the MAC.
    let mut bad = msg.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(usm::decode(&bad, &keys).is_err());
    // Discovery message: no auth, no priv, empty engine and user.
    let plain = usm::encode(1, &u, "", &Engine::default(), &Keys::none(), &pdu, 0).unwrap();
    let a = usm::decode(&plain, &Keys::none()).unwrap();
    assert_eq!(a.pdu.request_id, 42);
}
