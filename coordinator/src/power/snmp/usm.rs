//! SNMPv3 with the User-based Security Model (RFC 3412, RFC 3414): engine
//! discovery, key localisation, HMAC-MD5-96 / HMAC-SHA-96 and the RFC 7860
//! SHA-2 HMACs for authentication, and AES-CFB privacy (RFC 3826; 192 and
//! 256 bits with the Blumenthal key extension). DES, 3DES and the Reeder
//! (Cisco) AES-192/256 key extension are not implemented.

use aes::cipher::consts::U16;
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit};
use hmac::{Hmac, Mac};
use sha1::Digest;

use super::SnmpError;
use super::ber::{self, Reader, tag};
use super::message::{Pdu, decode_pdu, encode_pdu};

/// Authentication protocols (`snmp_auth_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// usmHMACMD5AuthProtocol
    Md5,
    /// usmHMACSHAAuthProtocol
    Sha1,
    /// usmHMAC128SHA224AuthProtocol (RFC 7860)
    Sha224,
    /// usmHMAC192SHA256AuthProtocol (RFC 7860)
    Sha256,
    /// usmHMAC256SHA384AuthProtocol (RFC 7860)
    Sha384,
    /// usmHMAC384SHA512AuthProtocol (RFC 7860)
    Sha512,
}

impl Auth {
    /// Length of msgAuthenticationParameters (the truncated HMAC).
    pub fn mac_len(self) -> usize {
        match self {
            Self::Md5 | Self::Sha1 => 12,
            Self::Sha224 => 16,
            Self::Sha256 => 24,
            Self::Sha384 => 32,
            Self::Sha512 => 48,
        }
    }
}

/// A USM user and its keys, as configured (passphrases).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Usm {
    /// msgUserName.
    pub user: String,
    /// Authentication protocol and passphrase, if any.
    pub auth: Option<(Auth, String)>,
    /// AES privacy passphrase, if any (needs `auth`).
    pub priv_aes: Option<String>,
    /// AES key size for privacy.
    pub aes: AesKey,
    /// contextEngineID; the authoritative engine's ID when empty.
    pub context_engine_id: Vec<u8>,
    /// contextName.
    pub context_name: String,
}

/// AES key sizes. 192 and 256 bits extend the localised key as
/// draft-blumenthal-aes-usm-04 (net-snmp's AES-192/AES-256, Ironic's
/// `aes192blmt`/`aes256blmt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AesKey {
    /// usmAesCfb128Protocol (RFC 3826)
    #[default]
    Aes128,
    /// AES-192, Blumenthal key extension
    Aes192,
    /// AES-256, Blumenthal key extension
    Aes256,
}

impl AesKey {
    /// Key length in octets.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }
}

/// Extends a localised key to `len` octets: append H(key so far) until
/// long enough, then truncate.
fn extend_key(auth: Auth, mut key: Vec<u8>, len: usize) -> Vec<u8> {
    fn h<D: Digest>(b: &[u8]) -> Vec<u8> {
        D::digest(b).to_vec()
    }
    while key.len() < len && !key.is_empty() {
        let more = match auth {
            Auth::Md5 => h::<md5::Md5>(&key),
            Auth::Sha1 => h::<sha1::Sha1>(&key),
            Auth::Sha224 => h::<sha2::Sha224>(&key),
            Auth::Sha256 => h::<sha2::Sha256>(&key),
            Auth::Sha384 => h::<sha2::Sha384>(&key),
            Auth::Sha512 => h::<sha2::Sha512>(&key),
        };
        key.extend_from_slice(&more);
    }
    key.truncate(len);
    key
}

/// What discovery learns about the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Engine {
    /// snmpEngineID.
    pub id: Vec<u8>,
    /// snmpEngineBoots.
    pub boots: i64,
    /// snmpEngineTime.
    pub time: i64,
}

const FLAG_AUTH: u8 = 1;
const FLAG_PRIV: u8 = 2;
const FLAG_REPORTABLE: u8 = 4;
const MAX_MAC_LEN: usize = 48;

/// RFC 3414 A.2: passphrase to a key localised to an engine.
pub fn localize(auth: Auth, pass: &str, engine_id: &[u8]) -> Vec<u8> {
    fn run<D: Digest>(pass: &[u8], engine_id: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        let mut chunk = [0u8; 64];
        let mut idx = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in chunk.iter_mut() {
                *b = pass[idx % pass.len()];
                idx += 1;
            }
            d.update(chunk);
        }
        let ku = d.finalize();
        let mut d = D::new();
        d.update(&ku);
        d.update(engine_id);
        d.update(&ku);
        d.finalize().to_vec()
    }
    if pass.is_empty() {
        return Vec::new();
    }
    match auth {
        Auth::Md5 => run::<md5::Md5>(pass.as_bytes(), engine_id),
        Auth::Sha1 => run::<sha1::Sha1>(pass.as_bytes(), engine_id),
        Auth::Sha224 => run::<sha2::Sha224>(pass.as_bytes(), engine_id),
        Auth::Sha256 => run::<sha2::Sha256>(pass.as_bytes(), engine_id),
        Auth::Sha384 => run::<sha2::Sha384>(pass.as_bytes(), engine_id),
        Auth::Sha512 => run::<sha2::Sha512>(pass.as_bytes(), engine_id),
    }
}

/// The HMAC of `msg`, truncated to the protocol's MAC length.
fn mac(auth: Auth, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, SnmpError> {
    macro_rules! hmac_with {
        ($d:ty) => {{
            let mut m = <Hmac<$d> as Mac>::new_from_slice(key)
                .map_err(|e| SnmpError::Encode(format!("HMAC key: {e}")))?;
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }};
    }
    let mut full = match auth {
        Auth::Md5 => hmac_with!(md5::Md5),
        Auth::Sha1 => hmac_with!(sha1::Sha1),
        Auth::Sha224 => hmac_with!(sha2::Sha224),
        Auth::Sha256 => hmac_with!(sha2::Sha256),
        Auth::Sha384 => hmac_with!(sha2::Sha384),
        Auth::Sha512 => hmac_with!(sha2::Sha512),
    };
    full.truncate(auth.mac_len());
    Ok(full)
}

/// AES in CFB-128 mode (RFC 3826 §3.1.3); the key's length (16, 24 or 32
/// octets) picks AES-128, -192 or -256; `decrypt` picks the direction.
pub fn aes_cfb(
    key: &[u8],
    iv: &[u8; 16],
    data: &[u8],
    decrypt: bool,
) -> Result<Vec<u8>, SnmpError> {
    fn run<C: BlockEncrypt + KeyInit + BlockSizeUser<BlockSize = U16>>(
        key: &[u8],
        iv: &[u8; 16],
        data: &[u8],
        decrypt: bool,
    ) -> Result<Vec<u8>, SnmpError> {
        let cipher =
            C::new_from_slice(key).map_err(|e| SnmpError::Encode(format!("AES key: {e}")))?;
        let mut feedback = *iv;
        let mut out = Vec::with_capacity(data.len());
        for chunk in data.chunks(16) {
            let mut block = aes::Block::from(feedback);
            cipher.encrypt_block(&mut block);
            let start = out.len();
            out.extend(chunk.iter().zip(block.iter()).map(|(d, k)| d ^ k));
            let cipher_text = if decrypt { chunk } else { &out[start..] };
            feedback[..cipher_text.len()].copy_from_slice(cipher_text);
        }
        Ok(out)
    }
    match key.len() {
        24 => run::<aes::Aes192>(key, iv, data, decrypt),
        32 => run::<aes::Aes256>(key, iv, data, decrypt),
        _ => run::<aes::Aes128>(key.get(..16).unwrap_or(key), iv, data, decrypt),
    }
}

fn aes_iv(engine: &Engine, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(engine.boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(engine.time as u32).to_be_bytes());
    let n = salt.len().min(8);
    iv[8..8 + n].copy_from_slice(&salt[..n]);
    iv
}

/// Keys localised to one engine.
#[derive(Debug, Clone)]
pub struct Keys {
    auth: Option<(Auth, Vec<u8>)>,
    privacy: Option<Vec<u8>>,
}

impl Keys {
    /// Localises `usm`'s passphrases to `engine_id`.
    pub fn new(usm: &Usm, engine_id: &[u8]) -> Self {
        let auth = usm
            .auth
            .as_ref()
            .map(|(a, p)| (*a, localize(*a, p, engine_id)));
        let privacy = match (&usm.auth, &usm.priv_aes) {
            (Some((a, _)), Some(p)) => Some(extend_key(
                *a,
                localize(*a, p, engine_id),
                usm.aes.key_len(),
            )),
            _ => None,
        };
        Self { auth, privacy }
    }

    /// Keys of the discovery message: none.
    pub fn none() -> Self {
        Self {
            auth: None,
            privacy: None,
        }
    }
}

/// Encodes a v3 message. `salt` feeds the AES IV (unique per message).
pub fn encode(
    msg_id: i32,
    usm: &Usm,
    user: &str,
    engine: &Engine,
    keys: &Keys,
    pdu: &Pdu<'_>,
    salt: u64,
) -> Result<Vec<u8>, SnmpError> {
    let mut flags = FLAG_REPORTABLE;
    if keys.auth.is_some() {
        flags |= FLAG_AUTH;
    }
    if keys.privacy.is_some() {
        flags |= FLAG_PRIV;
    }
    // ScopedPDU.
    let mut scoped = Vec::new();
    let ctx_engine = if usm.context_engine_id.is_empty() {
        &engine.id
    } else {
        &usm.context_engine_id
    };
    ber::push_tlv(&mut scoped, tag::OCTET_STRING, ctx_engine);
    ber::push_tlv(&mut scoped, tag::OCTET_STRING, usm.context_name.as_bytes());
    encode_pdu(&mut scoped, pdu);
    let mut scoped_tlv = Vec::new();
    ber::push_tlv(&mut scoped_tlv, tag::SEQUENCE, &scoped);

    let salt_bytes = salt.to_be_bytes();
    let (data, priv_params): (Vec<u8>, &[u8]) = match &keys.privacy {
        Some(k) => {
            let enc = aes_cfb(k, &aes_iv(engine, &salt_bytes), &scoped_tlv, false)?;
            let mut tlv = Vec::new();
            ber::push_tlv(&mut tlv, tag::OCTET_STRING, &enc);
            (tlv, &salt_bytes)
        }
        None => (scoped_tlv, &[]),
    };

    let mut sp = Vec::new();
    ber::push_tlv(&mut sp, tag::OCTET_STRING, &engine.id);
    ber::push_tlv(&mut sp, tag::INTEGER, &ber::integer_content(engine.boots));
    ber::push_tlv(&mut sp, tag::INTEGER, &ber::integer_content(engine.time));
    ber::push_tlv(&mut sp, tag::OCTET_STRING, user.as_bytes());
    let mac_placeholder = keys.auth.as_ref().map_or(0, |(a, _)| a.mac_len());
    ber::push_tlv(
        &mut sp,
        tag::OCTET_STRING,
        &[0u8; MAX_MAC_LEN][..mac_placeholder],
    );
    ber::push_tlv(&mut sp, tag::OCTET_STRING, priv_params);
    let mut sp_tlv = Vec::new();
    ber::push_tlv(&mut sp_tlv, tag::SEQUENCE, &sp);

    let mut global = Vec::new();
    ber::push_tlv(
        &mut global,
        tag::INTEGER,
        &ber::integer_content(i64::from(msg_id)),
    );
    ber::push_tlv(&mut global, tag::INTEGER, &ber::integer_content(65_507));
    ber::push_tlv(&mut global, tag::OCTET_STRING, &[flags]);
    ber::push_tlv(&mut global, tag::INTEGER, &[3]);

    let mut body = Vec::new();
    ber::push_tlv(&mut body, tag::INTEGER, &[3]);
    ber::push_tlv(&mut body, tag::SEQUENCE, &global);
    ber::push_tlv(&mut body, tag::OCTET_STRING, &sp_tlv);
    body.extend_from_slice(&data);
    let mut out = Vec::new();
    ber::push_tlv(&mut out, tag::SEQUENCE, &body);

    if let Some((auth, key)) = &keys.auth {
        let mac = mac(*auth, key, &out)?;
        // The placeholder is the only run of twelve zero octets written as an
        // OCTET STRING of length 12 directly after the user name.
        let pos = mac_offset(&out, mac.len())?;
        out[pos..pos + mac.len()].copy_from_slice(&mac);
    }
    Ok(out)
}

fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// Offset of msgAuthenticationParameters' content in a v3 message.
fn mac_offset(buf: &[u8], len: usize) -> Result<usize, SnmpError> {
    let sp = security_params(buf)?;
    let mut r = Reader::new(sp);
    let mut seq = Reader::new(r.expect(tag::SEQUENCE, "UsmSecurityParameters")?);
    seq.octets("engine id")?;
    seq.integer("engine boots")?;
    seq.integer("engine time")?;
    seq.octets("user name")?;
    let mac = seq.octets("authentication parameters")?;
    if mac.len() != len {
        return Err(SnmpError::Decode(format!("MAC of {} octets", mac.len())));
    }
    Ok(offset_in(buf, mac))
}

fn security_params(buf: &[u8]) -> Result<&[u8], SnmpError> {
    let mut outer = Reader::new(buf);
    let mut msg = Reader::new(outer.expect(tag::SEQUENCE, "message")?);
    if msg.integer("version")? != 3 {
        return Err(SnmpError::Decode("not an SNMPv3 message".into()));
    }
    msg.expect(tag::SEQUENCE, "msgGlobalData")?;
    msg.octets("msgSecurityParameters")
}

/// A decoded v3 answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// msgID.
    pub msg_id: i64,
    /// The agent's engine as it reported it.
    pub engine: Engine,
    /// PDU tag (Response 0xa2, Report 0xa8).
    pub pdu_tag: u8,
    /// The PDU.
    pub pdu: super::message::Response,
}

/// Decodes (and, with keys, authenticates and decrypts) a v3 message.
pub fn decode(buf: &[u8], keys: &Keys) -> Result<Answer, SnmpError> {
    let mut outer = Reader::new(buf);
    let mut msg = Reader::new(outer.expect(tag::SEQUENCE, "message")?);
    if msg.integer("version")? != 3 {
        return Err(SnmpError::Decode("not an SNMPv3 message".into()));
    }
    let mut global = Reader::new(msg.expect(tag::SEQUENCE, "msgGlobalData")?);
    let msg_id = global.integer("msgID")?;
    global.integer("msgMaxSize")?;
    let flags = global.octets("msgFlags")?.first().copied().unwrap_or(0);
    let mut sp_outer = Reader::new(msg.octets("msgSecurityParameters")?);
    let mut sp = Reader::new(sp_outer.expect(tag::SEQUENCE, "UsmSecurityParameters")?);
    let engine = Engine {
        id: sp.octets("engine id")?.to_vec(),
        boots: sp.integer("engine boots")?,
        time: sp.integer("engine time")?,
    };
    sp.octets("user name")?;
    let mac = sp.octets("authentication parameters")?;
    let salt = sp.octets("privacy parameters")?;

    if flags & FLAG_AUTH != 0 {
        if let Some((auth, key)) = &keys.auth {
            let pos = offset_in(buf, mac);
            let mut copy = buf.to_vec();
            copy[pos..pos + mac.len()].fill(0);
            if mac.len() != auth.mac_len() || self::mac(*auth, key, &copy)? != mac {
                return Err(SnmpError::Decode("wrong MAC on the agent's answer".into()));
            }
        }
    }
    let plain;
    let scoped: &[u8] = if flags & FLAG_PRIV != 0 {
        let key = keys
            .privacy
            .as_ref()
            .ok_or_else(|| SnmpError::Decode("encrypted answer without a privacy key".into()))?;
        let enc = msg.octets("encryptedPDU")?;
        plain = aes_cfb(key, &aes_iv(&engine, salt), enc, true)?;
        let mut r = Reader::new(&plain);
        r.expect(tag::SEQUENCE, "ScopedPDU")?
    } else {
        msg.expect(tag::SEQUENCE, "ScopedPDU")?
    };
    let mut sr = Reader::new(scoped);
    sr.octets("contextEngineID")?;
    sr.octets("contextName")?;
    let (pdu_tag, content) = sr.any()?;
    let pdu = decode_pdu(3, Vec::new(), content)?;
    Ok(Answer {
        msg_id,
        engine,
        pdu_tag,
        pdu,
    })
}

/// Names the USM error a Report carries (RFC 3414 usmStats*).
pub fn report_reason(oid: &[u32]) -> &'static str {
    const USM_STATS: [u32; 9] = [1, 3, 6, 1, 6, 3, 15, 1, 1];
    if oid.len() > USM_STATS.len() && oid[..USM_STATS.len()] == USM_STATS {
        match oid[USM_STATS.len()] {
            1 => "unsupported security level",
            2 => "not in time window",
            3 => "unknown user name",
            4 => "unknown engine ID",
            5 => "wrong digest (authentication key)",
            6 => "decryption error (privacy key)",
            _ => "USM error",
        }
    } else {
        "report"
    }
}
