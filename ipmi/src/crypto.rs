//! RMCP+ key derivation and payload protection (IPMI 2.0 §13.28–13.32):
//! RAKP-HMAC-SHA1/SHA256 authentication codes, the session integrity key
//! (SIK), K1/K2, HMAC-SHA1-96 / HMAC-SHA256-128 integrity and AES-CBC-128
//! confidentiality.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};

use crate::IpmiError;

/// 16 random bytes (RAKP random numbers, AES IVs).
pub fn random16() -> Result<[u8; 16], IpmiError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| IpmiError::Io(format!("random: {e}")))?;
    Ok(b)
}

/// A random nonzero session ID or sequence number.
pub fn random_u32() -> Result<u32, IpmiError> {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).map_err(|e| IpmiError::Io(format!("random: {e}")))?;
    Ok(u32::from_le_bytes(b) | 1)
}

/// The authentication (RAKP) algorithm of a cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAlg {
    /// RAKP-HMAC-SHA1 (algorithm 1; cipher suite 3).
    HmacSha1,
    /// RAKP-HMAC-SHA256 (algorithm 3; cipher suite 17).
    HmacSha256,
}

impl AuthAlg {
    /// Length of the RAKP4 integrity check value (and of the session
    /// integrity code): 12 bytes for SHA1, 16 for SHA256.
    pub fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1 => 12,
            Self::HmacSha256 => 16,
        }
    }

    /// HMAC over `data` with `key`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::HmacSha1 => {
                // Hmac accepts keys of any length; `new_from_slice` cannot fail.
                let mut m = match Hmac::<sha1::Sha1>::new_from_slice(key) {
                    Ok(m) => m,
                    Err(_) => return Vec::new(),
                };
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::HmacSha256 => {
                let mut m = match Hmac::<sha2::Sha256>::new_from_slice(key) {
                    Ok(m) => m,
                    Err(_) => return Vec::new(),
                };
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }
}

/// A user password (K_uid) as the RAKP HMAC key: zero-padded to 20 bytes.
pub fn password_key(password: &[u8]) -> Vec<u8> {
    let mut k = password.to_vec();
    if k.len() < 20 {
        k.resize(20, 0);
    }
    k
}

/// The values both sides exchange during RAKP 1 and 2.
#[derive(Debug, Clone)]
pub struct RakpParams<'a> {
    /// Remote console (our) session ID.
    pub console_sid: u32,
    /// Managed system (BMC) session ID.
    pub bmc_sid: u32,
    /// Remote console random number (RAKP 1).
    pub console_rand: [u8; 16],
    /// Managed system random number (RAKP 2).
    pub bmc_rand: [u8; 16],
    /// Managed system GUID (RAKP 2).
    pub bmc_guid: [u8; 16],
    /// The role byte sent in RAKP 1 (privilege level plus the name-only lookup bit).
    pub role: u8,
    /// User name.
    pub username: &'a [u8],
}

impl RakpParams<'_> {
    fn user(&self, out: &mut Vec<u8>) {
        out.push(self.role);
        out.push(self.username.len() as u8);
        out.extend_from_slice(self.username);
    }

    /// The key exchange authentication code the BMC sends in RAKP 2:
    /// HMAC_Kuid(SIDm | SIDc | Rm | Rc | GUIDc | ROLEm | ULENGTHm | UNAMEm).
    pub fn rakp2_auth(&self, alg: AuthAlg, kuid: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(58 + self.username.len());
        d.extend_from_slice(&self.console_sid.to_le_bytes());
        d.extend_from_slice(&self.bmc_sid.to_le_bytes());
        d.extend_from_slice(&self.console_rand);
        d.extend_from_slice(&self.bmc_rand);
        d.extend_from_slice(&self.bmc_guid);
        self.user(&mut d);
        alg.hmac(kuid, &d)
    }

    /// The code we send in RAKP 3: HMAC_Kuid(Rc | SIDm | ROLEm | ULENGTHm | UNAMEm).
    pub fn rakp3_auth(&self, alg: AuthAlg, kuid: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(22 + self.username.len());
        d.extend_from_slice(&self.bmc_rand);
        d.extend_from_slice(&self.console_sid.to_le_bytes());
        self.user(&mut d);
        alg.hmac(kuid, &d)
    }

    /// The session integrity key: HMAC_KG(Rm | Rc | ROLEm | ULENGTHm | UNAMEm),
    /// where KG is the BMC key or, when unset, K_uid.
    pub fn sik(&self, alg: AuthAlg, kg: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(34 + self.username.len());
        d.extend_from_slice(&self.console_rand);
        d.extend_from_slice(&self.bmc_rand);
        self.user(&mut d);
        alg.hmac(kg, &d)
    }

    /// The integrity check value the BMC sends in RAKP 4:
    /// HMAC_SIK(Rm | SIDc | GUIDc), truncated to the ICV length.
    pub fn rakp4_icv(&self, alg: AuthAlg, sik: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(36);
        d.extend_from_slice(&self.console_rand);
        d.extend_from_slice(&self.bmc_sid.to_le_bytes());
        d.extend_from_slice(&self.bmc_guid);
        let mut h = alg.hmac(sik, &d);
        h.truncate(alg.icv_len());
        h
    }
}

/// K1 (integrity key) and K2 (first 16 bytes: AES key) from the SIK:
/// HMAC_SIK of twenty 0x01 and twenty 0x02 bytes.
pub fn derive_keys(alg: AuthAlg, sik: &[u8]) -> (Vec<u8>, [u8; 16]) {
    let k1 = alg.hmac(sik, &[1u8; 20]);
    let k2 = alg.hmac(sik, &[2u8; 20]);
    let mut aes_key = [0u8; 16];
    aes_key.copy_from_slice(&k2[..16]);
    (k1, aes_key)
}

/// AES-CBC-128 with the IPMI pad (1, 2, 3, …, then the pad length): returns
/// IV | ciphertext.
pub fn encrypt(key: &[u8; 16], iv: &[u8; 16], payload: &[u8]) -> Vec<u8> {
    let pad = (16 - (payload.len() + 1) % 16) % 16;
    let mut buf = Vec::with_capacity(payload.len() + pad + 1);
    buf.extend_from_slice(payload);
    buf.extend((1..=pad).map(|i| i as u8));
    buf.push(pad as u8);
    let len = buf.len();
    let enc = cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into());
    // The buffer is a whole number of blocks, so NoPadding cannot fail.
    if enc.encrypt_padded_mut::<NoPadding>(&mut buf, len).is_err() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(16 + len);
    out.extend_from_slice(iv);
    out.extend_from_slice(&buf);
    out
}

/// Reverses [`encrypt`]; `None` when the data is not IV plus whole blocks or the pad is wrong.
pub fn decrypt(key: &[u8; 16], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 32 || data.len() % 16 != 0 {
        return None;
    }
    let (iv, ct) = data.split_at(16);
    let mut buf = ct.to_vec();
    let iv: [u8; 16] = iv.try_into().ok()?;
    let dec = cbc::Decryptor::<aes::Aes128>::new(key.into(), (&iv).into());
    let plain_len = dec.decrypt_padded_mut::<NoPadding>(&mut buf).ok()?.len();
    buf.truncate(plain_len);
    let pad = *buf.last()? as usize;
    if pad + 1 > buf.len() {
        return None;
    }
    buf.truncate(buf.len() - pad - 1);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_rfc2202_vector() {
        // RFC 2202 test case 2.
        let h = AuthAlg::HmacSha1.hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(h), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn aes_round_trip_and_pad() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        for len in [0usize, 1, 14, 15, 16, 31, 40] {
            let p: Vec<u8> = (0..len as u8).collect();
            let c = encrypt(&key, &iv, &p);
            assert_eq!(c.len() % 16, 0);
            assert_eq!(&c[..16], &iv);
            assert_eq!(decrypt(&key, &c).as_deref(), Some(&p[..]));
        }
    }
}
