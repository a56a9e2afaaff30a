//! ACL signing of every request (Java `AclClientRPCHook`, `AclUtils`): a [`RequestHook`].
//!
//! ```text
//!  header fields + AccessKey (+ SecurityToken), sorted by key ─ values concatenated ─ + body
//!      ─ HMAC-SHA1(secret key) ─ Base64 ─► Signature; AccessKey, SecurityToken, Signature added
//! ```
//!
//! Every attempt is signed anew (its queue id and born time are signed fields). Brokers refuse a
//! bad signature or a missing permission with [`crate::Error::AccessDenied`], which is never
//! retried: every broker of a cluster shares the accounts.

use base64::Engine;
use hmac::{KeyInit, Mac};

use crate::hooks::RequestHook;

/// The ext field names the signing adds.
const ACCESS_KEY: &str = "AccessKey";
const SECURITY_TOKEN: &str = "SecurityToken";
const SIGNATURE: &str = "Signature";

/// Credentials of an ACL account (Java `SessionCredentials`).
///
/// # Example
///
/// ```no_run
/// use rocketmq_tpc::{AclCredentials, Producer};
///
/// # fn main() -> Result<(), rocketmq_tpc::Error> {
/// let producer = Producer::builder()
///     .namesrv("127.0.0.1:9876")
///     .producer_group("secured")
///     .acl(AclCredentials::new("my-access-key", "my-secret-key"))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AclCredentials {
    /// The account's access key.
    pub access_key: String,
    /// The account's secret key (never logged).
    pub secret_key: String,
    /// A security token, for accounts that use one.
    pub security_token: Option<String>,
}

impl AclCredentials {
    /// Credentials without a security token.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        AclCredentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }
}

impl std::fmt::Debug for AclCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<hidden>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// The string Java signs: the values of `fields` sorted by key (Java `String` order: UTF-16 code
/// units), `Signature` left out, then the body.
pub(crate) fn signed_content(fields: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut sorted: Vec<&(&str, &str)> = fields.iter().filter(|(k, _)| *k != SIGNATURE).collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    let mut out =
        Vec::with_capacity(fields.iter().map(|(_, v)| v.len()).sum::<usize>() + body.len());
    for (_, value) in sorted {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Base64 (standard, padded) of HMAC-SHA1 of `content` under `secret` (Java `AclSigner`).
pub(crate) fn signature(content: &[u8], secret: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(content);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl RequestHook for AclCredentials {
    fn before_request(
        &self,
        _code: i32,
        fields: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(fields.len() + 2);
        all.extend_from_slice(fields);
        all.push((ACCESS_KEY, &self.access_key));
        if let Some(token) = &self.security_token {
            all.push((SECURITY_TOKEN, token));
        }
        let signature = signature(&signed_content(&all, body), &self.secret_key);
        let mut extra = vec![(ACCESS_KEY.to_owned(), self.access_key.clone())];
        if let Some(token) = &self.security_token {
            extra.push((SECURITY_TOKEN.to_owned(), token.clone()));
        }
        extra.push((SIGNATURE.to_owned(), signature));
        extra
    }
}

/// Whether a broker's refusal is an ACL one: 4.9.x answers SYSTEM_ERROR with the AclException
/// text, rocketmq-rust NO_PERMISSION "Authentication credentials are invalid".
pub(crate) fn is_access_denied(remark: &str) -> bool {
    [
        "AclException",
        "No accessKey",
        "Check signature",
        "Authentication",
        "No permission",
        "no permission",
    ]
    .iter()
    .any(|needle| remark.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_base64_known_answer() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"what do ya want for nothing?", "Jefe"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn signs_values_sorted_by_key_then_the_body() {
        // Java TreeMap order: uppercase before lowercase ("AccessKey" < "a" < "b").
        let fields = [
            ("b", "2"),
            ("a", "1"),
            ("AccessKey", "AK"),
            ("Signature", "old"),
        ];
        assert_eq!(signed_content(&fields, b"BODY"), b"AK12BODY");
        let creds = AclCredentials {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            security_token: Some("TOKEN".into()),
        };
        let extra = creds.before_request(310, &[("b", "2"), ("a", "1")], b"BODY");
        let names: Vec<&str> = extra.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["AccessKey", "SecurityToken", "Signature"]);
        // "AccessKey" < "SecurityToken" < "a" < "b".
        assert_eq!(extra[2].1, signature(b"AKTOKEN12BODY", "SK"));
        assert!(!format!("{creds:?}").contains("SK\""));
    }

    #[test]
    fn acl_refusals_are_recognised() {
        assert!(is_access_denied(
            "org.apache.rocketmq.acl.common.AclException: Check signature failed for accessKey=x"
        ));
        assert!(is_access_denied("Authentication credentials are invalid"));
        assert!(!is_access_denied("broker busy"));
    }
}
