//! Sans-IO RocketMQ remoting protocol: bytes in, values out.
//!
//! Nothing here touches a socket, a clock or a global: times, opaques, ids and limits are
//! arguments, so every decoder can be fuzzed and property-tested on its own. Layouts follow the
//! Java sources of Apache RocketMQ 4.9.7 / 5.3 (each file names the class it mirrors).

pub mod batch;
pub mod binary_response;
pub mod command;
pub mod compression;
pub mod decode_error;
pub mod ext_fields;
pub mod frame;
pub mod header_binary;
pub mod header_json;
pub mod heartbeat;
pub mod message_id;
pub mod properties;
pub mod request_code;
pub mod response_code;
pub mod route_data;
pub mod send_request_header;
pub mod send_response_header;
mod short_copy;
pub mod short_string;
pub mod stored_message;
pub mod transaction;

pub use command::{HeaderEncoding, LanguageCode, RemotingCommand};
pub use decode_error::DecodeError;
pub use request_code::RequestCode;
pub use response_code::ResponseCode;
pub use short_string::ShortString;
