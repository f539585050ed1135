//! ACL 1.0 request signatures, as RocketMQ clients sign their requests.
//!
//! A RocketMQ broker with `aclEnable=true` only serves requests that carry an `AccessKey`
//! and a `Signature` in their `extFields`. The signature is what Java's `AclClientRPCHook`
//! computes and its `PlainAccessValidator` checks again on the server:
//!
//! 1. put `AccessKey` (and `SecurityToken`, when there is one) into the `extFields`;
//! 2. take every `extFields` entry except `Signature`, sorted by key in Java's `String`
//!    order (UTF-16 code units, a `TreeMap`), and concatenate the **values** (UTF-8);
//! 3. append the body bytes;
//! 4. `Signature = Base64(HmacSHA1(secretKey, content))`.
//!
//! Both sides live here, so the client that signs (our brokers registering with
//! nameservers, the agent's local admin calls) and the server that checks (broker and
//! nameserver ACL, in `flotilla-acl`) cannot drift apart. Verification compares MACs in
//! constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::command::RemotingCommand;

/// `extFields` key of the account (`SessionCredentials.ACCESS_KEY`).
pub const ACCESS_KEY: &str = "AccessKey";
/// `extFields` key of the signature (`SessionCredentials.SIGNATURE`).
pub const SIGNATURE: &str = "Signature";
/// `extFields` key of the optional security token (`SessionCredentials.SECURITY_TOKEN`).
pub const SECURITY_TOKEN: &str = "SecurityToken";

type HmacSha1 = Hmac<Sha1>;

/// Credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The text is not a JSON object with `accessKey` and `secretKey`.
    #[error("credentials must be JSON like {{\"accessKey\":\"…\",\"secretKey\":\"…\"}}: {0}")]
    Malformed(String),
    /// `accessKey` or `secretKey` is blank.
    #[error("credentials need a non-blank accessKey and secretKey")]
    Blank,
}

impl CredentialsError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "CREDENTIALS_MALFORMED",
            Self::Blank => "CREDENTIALS_BLANK",
        }
    }
}

/// An ACL 1.0 account to sign requests with (Java's `SessionCredentials`).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredentials {
    /// The account (`AccessKey`).
    pub access_key: String,
    /// The shared secret the signature is keyed with; never sent.
    pub secret_key: String,
    /// Sent as `SecurityToken` when present.
    pub security_token: Option<String>,
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl SessionCredentials {
    /// Credentials without a security token.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }

    /// Reads RocketMQ 5's credentials JSON (`innerClientAuthenticationCredentials`):
    /// `{"accessKey":"…","secretKey":"…"}`, optionally with `"securityToken"`.
    pub fn from_json(text: &str) -> Result<Self, CredentialsError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CredentialsError::Malformed(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| CredentialsError::Malformed("not an object".into()))?;
        let field = |k: &str| {
            obj.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
        };
        let (Some(ak), Some(sk)) = (field("accessKey"), field("secretKey")) else {
            return Err(CredentialsError::Blank);
        };
        if ak.is_empty() || sk.is_empty() {
            return Err(CredentialsError::Blank);
        }
        Ok(Self {
            access_key: ak.to_string(),
            secret_key: sk.to_string(),
            security_token: field("securityToken")
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    /// Signs `cmd` as `AclClientRPCHook.doBeforeRequest` does: adds `AccessKey` (and
    /// `SecurityToken`), then `Signature` over every other field and the body.
    pub fn sign(&self, cmd: &mut RemotingCommand) {
        cmd.ext_fields
            .insert(ACCESS_KEY.to_string(), self.access_key.clone());
        if let Some(t) = &self.security_token {
            cmd.ext_fields.insert(SECURITY_TOKEN.to_string(), t.clone());
        }
        cmd.ext_fields.remove(SIGNATURE);
        let content = signed_content(
            cmd.ext_fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &cmd.body,
        );
        cmd.ext_fields.insert(
            SIGNATURE.to_string(),
            calculate_signature(&self.secret_key, &content),
        );
    }
}

/// The bytes a signature covers: the values of `fields` (without `Signature`) in Java's
/// key order, then `body`.
pub fn signed_content<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = fields
        .into_iter()
        .filter(|(k, _)| *k != SIGNATURE)
        .collect();
    // Java's String.compareTo: lexicographic over UTF-16 code units (differs from Rust's
    // byte order only for characters above U+FFFF against U+E000..U+FFFF).
    sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let len = sorted.iter().map(|(_, v)| v.len()).sum::<usize>() + body.len();
    let mut out = Vec::with_capacity(len);
    for (_, v) in sorted {
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// `Base64(HmacSHA1(secret_key, content))` (Java's `AclSigner.calSignature`).
pub fn calculate_signature(secret_key: &str, content: &[u8]) -> String {
    STANDARD.encode(mac(secret_key, content).finalize().into_bytes())
}

/// Whether `signature` is `Base64(HmacSHA1(secret_key, content))`, compared in constant
/// time. A signature that is not Base64 does not match.
pub fn verify_signature(secret_key: &str, content: &[u8], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(secret_key, content).verify_slice(&given).is_ok()
}

fn mac(secret_key: &str, content: &[u8]) -> HmacSha1 {
    // HMAC takes keys of any length (longer ones are hashed first), so this cannot fail.
    let mut m = match <HmacSha1 as KeyInit>::new_from_slice(secret_key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable_hmac_key(),
    };
    m.update(content);
    m
}

#[cold]
fn unreachable_hmac_key() -> ! {
    // `Hmac::new_from_slice` documents "HMAC can take key of any size".
    panic!("HMAC accepts keys of every length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?") =
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79; Base64 of those 20 bytes.
        assert_eq!(
            calculate_signature("Jefe", b"what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
        assert!(verify_signature(
            "Jefe",
            b"what do ya want for nothing?",
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        ));
        assert!(!verify_signature(
            "Jefe",
            b"what do ya want",
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        ));
        assert!(!verify_signature("Jefe", b"x", "not base64!"));
    }

    #[test]
    fn content_is_values_in_java_key_order_then_body() {
        let mut cmd = RemotingCommand::request(17);
        cmd.put_ext("topic", "TopicA");
        cmd.put_ext("clusterName", "DefaultCluster");
        cmd.body = bytes::Bytes::from_static(b"hello");
        SessionCredentials::new("RocketMQ", "12345678").sign(&mut cmd);
        // Keys sorted: AccessKey < clusterName < topic (upper case before lower case); the
        // values concatenated: "RocketMQ" "DefaultCluster" "TopicA", then the body. The
        // expected value is HmacSHA1 under "12345678", computed outside this code (Python's
        // hmac module) for this fixed input.
        let content = signed_content(
            cmd.ext_fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &cmd.body,
        );
        assert_eq!(content, b"RocketMQDefaultClusterTopicAhello");
        assert_eq!(cmd.ext(SIGNATURE), Some("Azor90MWEIvXzD4HhtgvuH4kShI="));
        assert_eq!(cmd.ext(ACCESS_KEY), Some("RocketMQ"));
        // Re-signing replaces the old signature instead of signing it.
        SessionCredentials::new("RocketMQ", "12345678").sign(&mut cmd);
        assert_eq!(cmd.ext(SIGNATURE), Some("Azor90MWEIvXzD4HhtgvuH4kShI="));
    }

    #[test]
    fn utf16_order_differs_from_byte_order_above_the_bmp() {
        // U+FF5E (3 UTF-8 bytes, one UTF-16 unit 0xFF5E) sorts after U+1F600 (a surrogate
        // pair starting 0xD83D) in Java, before it in byte order.
        let c = signed_content([("\u{FF5E}", "a"), ("\u{1F600}", "b")], b"");
        assert_eq!(c, b"ba");
    }

    #[test]
    fn credentials_json_and_debug_redacts() {
        let c = SessionCredentials::from_json(r#"{"accessKey":"admin01","secretKey":"s3cret99"}"#)
            .unwrap();
        assert_eq!(c, SessionCredentials::new("admin01", "s3cret99"));
        assert!(!format!("{c:?}").contains("s3cret99"));
        assert_eq!(
            SessionCredentials::from_json(r#"{"accessKey":"a"}"#),
            Err(CredentialsError::Blank)
        );
        assert!(SessionCredentials::from_json("nope").is_err());
    }
}
