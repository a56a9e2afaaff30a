//! `RemotingCommand`: one request or response, independent of its header encoding.

use bytes::Bytes;

use super::decode_error::DecodeError;
use super::ext_fields::ExtFields;

/// Code, language, version, opaque and flag of a decoded command, in wire order.
pub(crate) type DecodedHead = (i32, LanguageCode, i32, i32, i32);

/// Flag bit 0: the command is a response (Java `RemotingCommand.RPC_TYPE`).
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request expects no response (Java `RemotingCommand.RPC_ONEWAY`).
pub const FLAG_ONEWAY: i32 = 2;

/// How a command's header is encoded on the wire (Java `SerializeType`).
///
/// The binary form is the default of this client: it is what the Java 4.9.7 producer sends, both
/// test servers (Apache 4.9.7 and rocketmq-rust 1.0.0) accept it, and it is cheaper to write and to
/// parse than JSON (no escaping, no quoting, lengths instead of delimiters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeaderEncoding {
    /// Serialize type 0: fastjson text.
    Json,
    /// Serialize type 1: `RocketMQSerializable` binary layout.
    #[default]
    Binary,
}

impl HeaderEncoding {
    /// The serialize-type byte in the frame's type-and-length field.
    pub fn type_byte(self) -> u8 {
        match self {
            HeaderEncoding::Json => 0,
            HeaderEncoding::Binary => 1,
        }
    }
}

/// The sender's language (Java `LanguageCode`), carried by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanguageCode(pub u8);

impl LanguageCode {
    /// `JAVA` (0): what this client sends by default, understood by every server version.
    pub const JAVA: LanguageCode = LanguageCode(0);
    /// `OTHER` (7).
    pub const OTHER: LanguageCode = LanguageCode(7);
    /// `RUST` (12): only servers ≥ 4.9.4 know it.
    pub const RUST: LanguageCode = LanguageCode(12);

    const NAMES: [&'static str; 14] = [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
        "PHP", "OMS", "RUST", "NODE_JS",
    ];

    /// The enum name used in JSON headers.
    pub fn name(self) -> &'static str {
        Self::NAMES.get(self.0 as usize).copied().unwrap_or("OTHER")
    }

    /// The language for a JSON name; unknown names map to `OTHER`.
    pub fn from_name(name: &str) -> LanguageCode {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| LanguageCode(i as u8))
            .unwrap_or(LanguageCode::OTHER)
    }
}

/// A decoded or to-be-encoded RemotingCommand (Java `RemotingCommand`).
///
/// `ext_fields` keeps wire order and duplicates (the binary fast path may send a key twice);
/// [`RemotingCommand::ext`] returns the last value, as Java's `HashMap` would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code for requests, response code for responses.
    pub code: i32,
    /// Sender's language.
    pub language: LanguageCode,
    /// Sender's `MQVersion` ordinal.
    pub version: i32,
    /// Request id; a response echoes its request's opaque.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    /// Error text of a response.
    pub remark: Option<String>,
    /// Custom header fields, all values as strings.
    pub ext_fields: ExtFields,
    /// The body (may be empty).
    pub body: Bytes,
}

impl RemotingCommand {
    #[inline]
    /// A decoded command with an empty body, with `ext_fields` and the (key, value) `spans` over
    /// their text still to add (the JSON decoder passes its spans; the binary one has added
    /// them already). Both header decoders end here; `what` names the header in errors.
    pub(crate) fn decoded(
        (code, language, version, opaque, flag): DecodedHead,
        remark: Option<String>,
        mut ext_fields: ExtFields,
        spans: impl IntoIterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)>,
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        for (key, value) in spans {
            ext_fields
                .push_span(key, value)
                .map_err(|why| DecodeError::malformed(what, why))?;
        }
        Ok(RemotingCommand {
            code,
            language,
            version,
            opaque,
            flag,
            remark,
            ext_fields,
            body: Bytes::new(),
        })
    }

    /// A new request with no fields and an empty body.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn request(code: i32, opaque: i32, language: LanguageCode, version: i32) -> Self {
        RemotingCommand {
            code,
            language,
            version,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `request` with the given code.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn response_to(request: &RemotingCommand, code: i32, version: i32) -> Self {
        RemotingCommand {
            code,
            language: request.language,
            version,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
        }
    }

    /// Whether flag bit 0 (response) is set.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether flag bit 1 (oneway) is set.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The last value of ext field `key`.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key)
    }

    /// Appends an ext field.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn push_ext(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        self.ext_fields.push(key.as_ref(), value.as_ref());
    }
}
