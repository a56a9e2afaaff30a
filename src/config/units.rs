//! Human units in config files: durations (`"250us"`, `"3s"`), sizes (`4096`, `"64KiB"`) and the
//! names of enum settings, as serde adapters on the config types' own fields.

use std::net::IpAddr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::config::CoreSelection;
use crate::protocol::compression::CompressionType;
use crate::protocol::{HeaderEncoding, LanguageCode};

/// Parses `"250us"`, `"5ms"`, `"3s"`, `"1.5s"`, `"2m"`, `"1h"` (`µs` accepted for `us`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like \"5ms\" or \"3s\""))?;
    let seconds = match unit.trim() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a valid duration"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long for a duration"))
}

/// Parses a size: `"64KiB"`, `"1MiB"`, `"4k"`, `"1m"`, or a plain number of bytes.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a size like 4096 or \"64KiB\""))?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrList {
    Text(String),
    List(Vec<String>),
}

/// A duration written as text (`"3s"`).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(de::Error::custom)
}

/// A list of durations (`["50ms", "1s"]`).
pub(crate) fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| parse_duration(t).map_err(de::Error::custom))
        .collect()
}

/// A size in bytes, or as text with a unit (`"64KiB"`).
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => {
            usize::try_from(n).map_err(|_| de::Error::custom(format!("{n} is too large")))
        }
        NumberOrText::Text(t) => parse_size(&t).map_err(de::Error::custom),
    }
}

/// NameServer addresses: `"a:9876;b:9876"` (Java's `namesrvAddr`) or a list.
pub(crate) fn namesrv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = match TextOrList::deserialize(d)? {
        TextOrList::Text(t) => t.split(';').map(str::to_owned).collect(),
        TextOrList::List(list) => list,
    };
    Ok(list
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `"binary"` (or `"rocketmq"`) or `"json"`.
pub(crate) fn header_encoding<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderEncoding, D::Error> {
    let text = String::deserialize(d)?;
    match text.to_ascii_lowercase().as_str() {
        "binary" | "rocketmq" => Ok(HeaderEncoding::Binary),
        "json" => Ok(HeaderEncoding::Json),
        _ => Err(de::Error::custom(format!(
            "{text:?}: use \"binary\" or \"json\""
        ))),
    }
}

/// `"zlib"`, `"lz4"` or `"zstd"`.
pub(crate) fn compress_type<'de, D: Deserializer<'de>>(d: D) -> Result<CompressionType, D::Error> {
    let text = String::deserialize(d)?;
    CompressionType::from_name(&text)
        .ok_or_else(|| de::Error::custom(format!("{text:?}: use \"zlib\", \"lz4\" or \"zstd\"")))
}

/// A language name as Java's `LanguageCode` spells it (`"JAVA"`, `"RUST"`, …).
pub(crate) fn language<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    let text = String::deserialize(d)?;
    let code = LanguageCode::from_name(&text.to_ascii_uppercase());
    if code.name() != text.to_ascii_uppercase() {
        return Err(de::Error::custom(format!(
            "{text:?} is not a RocketMQ language name (JAVA, CPP, GO, RUST, OTHER, …)"
        )));
    }
    Ok(code)
}

/// `"all"`, a count of CPUs, or a list of CPU numbers.
pub(crate) fn cores<'de, D: Deserializer<'de>>(d: D) -> Result<CoreSelection, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cores {
        Count(usize),
        List(Vec<usize>),
        Text(String),
    }
    match Cores::deserialize(d)? {
        Cores::Count(n) => Ok(CoreSelection::Count(n)),
        Cores::List(list) => Ok(CoreSelection::List(list)),
        Cores::Text(t) if t == "all" => Ok(CoreSelection::All),
        Cores::Text(t) => Err(de::Error::custom(format!(
            "{t:?}: use \"all\", a count, or a list of CPU numbers"
        ))),
    }
}

/// An optional IP address as text.
pub(crate) fn ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map(Some)
        .map_err(|_| de::Error::custom(format!("{text:?} is not an IP address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("4 furlongs").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
    }
}
