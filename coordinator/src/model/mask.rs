//! Masking secrets in documents the API shows: values under secret-looking
//! keys at every depth (`driver_info.redfish.password`, `snmp_community`,
//! `snmp_auth_key`, `agent_secret_token`, …) become [`MASK`], and passwords
//! in URLs (`https://user:password@host/…`) become `***`, in any string.

use serde_json::Value;

/// The mask Ironic shows instead of secrets.
pub const MASK: &str = "******";

/// The key fragments that mark a secret (compared with ASCII case ignored),
/// those that begin with the lowercase byte `c`: a key is compared only
/// with the fragments of the letter at hand. The tests hold the whole list
/// (`SECRET_FRAGMENTS`) and check that the two agree.
fn fragments_at(c: u8) -> &'static [&'static str] {
    match c {
        b'p' => &["password", "passwd", "pswd", "passphrase", "private"],
        b's' => &["secret"],
        b't' => &["token"],
        b'c' => &["community", "credential"],
        b'k' => &["key_contents"],
        _ => &[],
    }
}

/// True for a key whose value is a secret (ASCII case ignored; no
/// allocation: the list renderer asks for every key of every document).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.as_bytes();
    let ends = |suffix: &[u8]| {
        k.len() >= suffix.len() && k[k.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    // One pass over the key: a fragment is compared only where its first
    // letter is (the list renderer calls this for every key it writes).
    let at = |i: usize, f: &[u8]| {
        k.get(i..i.saturating_add(f.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(f))
    };
    k.iter().enumerate().any(|(i, c)| {
        fragments_at(c.to_ascii_lowercase())
            .iter()
            .any(|f| at(i, f.as_bytes()))
    }) || k.eq_ignore_ascii_case(b"key")
        || ends(b"_key")
        || ends(b"-key")
        || k.eq_ignore_ascii_case(b"configdrive")
}

/// `s` with the password of every `scheme://user:password@` masked, or
/// `None` when it has none.
pub fn mask_url_credentials(s: &str) -> Option<String> {
    if !s.contains("://") || !s.contains('@') {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                        changed = true;
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Masks secrets in `v` at every depth (without recursion).
pub fn mask_value(v: &mut Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if is_secret_key(k) && !x.is_null() {
                        *x = Value::String(MASK.to_owned());
                    } else {
                        stack.push(x);
                    }
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::String(s) => {
                if let Some(masked) = mask_url_credentials(s) {
                    *s = masked;
                }
            }
            _ => {}
        }
    }
}

/// Masks secrets in every value of a map.
pub fn mask_map(m: &mut serde_json::Map<String, Value>) {
    let mut v = Value::Object(std::mem::take(m));
    mask_value(&mut v);
    if let Value::Object(back) = v {
        *m = back;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Key fragments that mark a secret (compared lowercased), as one list.
    const SECRET_FRAGMENTS: [&str; 10] = [
        "password",
        "passwd",
        "pswd",
        "passphrase",
        "secret",
        "token",
        "community",
        "credential",
        "private",
        "key_contents",
    ];

    use serde_json::json;

    #[test]
    fn nested_and_near_secrets_are_masked() {
        let mut v = json!({
            "redfish": {"password": "p1", "address": "https://bmc"},
            "snmp_community": "public",
            "snmp_auth_key": "k1",
            "snmp_priv_key": "k2",
            "snmp_auth_protocol": "sha",
            "list": [{"ipmi_password": "p2"}, "http://u:p3@host/x"],
            "image_source": "https://glance:p4@img.example/a.qcow2?x=y",
            "plain": "user@example.com",
            "empty_password": null,
        });
        mask_value(&mut v);
        let s = v.to_string();
        for secret in ["p1", "public", "k1", "k2", "p2", "p3", "p4"] {
            assert!(!s.contains(&format!("\"{secret}\"")), "{secret} in {s}");
            assert!(!s.contains(&format!(":{secret}@")), "{secret} in {s}");
        }
        assert_eq!(v["redfish"]["address"], "https://bmc");
        assert_eq!(v["snmp_auth_protocol"], "sha");
        assert_eq!(v["list"][1], "http://u:***@host/x");
        assert_eq!(
            v["image_source"],
            "https://glance:***@img.example/a.qcow2?x=y"
        );
        assert_eq!(v["plain"], "user@example.com");
        assert_eq!(v["empty_password"], Value::Null);
    }

    #[test]
    fn fragments_are_found_by_their_first_letter() {
        for f in SECRET_FRAGMENTS {
            assert!(fragments_at(f.as_bytes()[0]).contains(&f), "{f}");
        }
        for c in 0..=u8::MAX {
            for f in fragments_at(c) {
                assert!(SECRET_FRAGMENTS.contains(f) && f.as_bytes()[0] == c, "{f}");
            }
        }
    }

    #[test]
    fn secret_keys_as_the_lowercasing_test_found_them() {
        let old = |key: &str| {
            let k = key.to_ascii_lowercase();
            SECRET_FRAGMENTS.iter().any(|f| k.contains(f))
                || k == "key"
                || k.ends_with("_key")
                || k.ends_with("-key")
                || k == "configdrive"
        };
        for key in [
            "",
            "k",
            "key",
            "KEY",
            "Key",
            "a_key",
            "A_KEY",
            "a-Key",
            "keys",
            "key_id",
            "ipmi_password",
            "IPMI_PASSWORD",
            "snmp_community",
            "agent_secret_token",
            "Private",
            "ssh_key_contents",
            "configdrive",
            "ConfigDrive",
            "configdrives",
            "passwd",
            "pswd",
            "passphrase",
            "credentials",
            "tokenless",
            "monkey",
            "é_key",
            "clé",
            "pass",
            "address",
            "deploy_kernel",
            "_key",
            "-key",
        ] {
            assert_eq!(is_secret_key(key), old(key), "{key}");
        }
    }

    #[test]
    fn url_masking_handles_several_urls_and_no_password() {
        assert_eq!(mask_url_credentials("http://host/x"), None);
        assert_eq!(mask_url_credentials("http://user@host/x"), None);
        assert_eq!(
            mask_url_credentials("a http://u:p@h b https://v:q@i/").as_deref(),
            Some("a http://u:***@h b https://v:***@i/")
        );
    }
}
