//! Message ids: the client-side unique id (`UNIQ_KEY`, Java `MessageClientIDSetter`) and the
//! broker's offset id (Java `MessageDecoder.createMessageId` / `decodeMessageId`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::decode_error::DecodeError;
use super::short_string::{ShortString, INLINE_CAPACITY};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The two uppercase hex digits of `b`.
fn hex_digits(b: u8) -> [u8; 2] {
    [HEX_UPPER[(b >> 4) as usize], HEX_UPPER[(b & 0xf) as usize]]
}

/// Hex digits of an IPv4 address, the pid and the instance: where an IPv4 id's time starts.
const IPV4_PREFIX_LEN: usize = 2 * (4 + 2 + 4);

/// Writes the uppercase hex digits of `bytes` (two per byte) at the start of `out`.
fn put_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&hex_digits(b));
    }
}

/// Generates `UNIQ_KEY` values with the Java layout:
/// `ip(4|16) pid(2) instance(4) millisSinceMonthStart(4) counter(2)`, uppercase hex.
///
/// Pure: the clock reading is an argument. Java uses one counter per process; here each core owns a
/// generator, so give each one a distinct `instance` value (Java puts the class loader's hash there)
/// and ids stay unique without a shared counter.
#[derive(Debug, Clone)]
pub struct UniqueIdGenerator {
    /// The id being built: the hex prefix (address, pid, instance), then the time and counter
    /// digits of the last id. Only the counter's digits change between ids of one millisecond.
    text: [u8; MAX_ID_LEN],
    /// Length of the hex prefix (20 digits for an IPv4 host, 44 for IPv6).
    prefix_len: usize,
    counter: u16,
    /// The clock reading whose time digits `text` holds (`None` before the first id).
    millis: Option<i64>,
    /// Ids made with those time digits: at most 65,536, one per counter value.
    ids_in_millis: u32,
    /// Set when a millisecond's 65,536 ids were all used and the ids went on in the next one,
    /// ahead of the clock: readings up to it stay on it, so no id repeats.
    ahead: Option<i64>,
    /// The month of the last id, `[start, end)` in unix ms (recomputed when the clock leaves it).
    month: (i64, i64),
}

/// Hex digits of an IPv6 id: 16 address bytes, 2 pid, 4 instance, 4 time, 2 counter.
const MAX_ID_LEN: usize = 2 * (16 + 2 + 4 + 4 + 2);

impl UniqueIdGenerator {
    /// A generator for this host address, process id and instance value.
    pub fn new(ip: IpAddr, pid: u32, instance: u32) -> Self {
        let mut text = [b'0'; MAX_ID_LEN];
        let mut prefix_len = 0;
        let mut put = |bytes: &[u8]| {
            put_hex(&mut text[prefix_len..], bytes);
            prefix_len += 2 * bytes.len();
        };
        match ip {
            IpAddr::V4(v4) => put(&v4.octets()),
            IpAddr::V6(v6) => put(&v6.octets()),
        }
        put(&(pid as u16).to_be_bytes());
        put(&instance.to_be_bytes());
        UniqueIdGenerator {
            text,
            prefix_len,
            counter: 0,
            millis: None,
            ids_in_millis: 0,
            ahead: None,
            month: (0, 0),
        }
    }

    /// The next id, for a clock reading of `unix_millis` (inline for an IPv4 host: no allocation).
    ///
    /// Ids of one clock reading differ by their 16-bit counter; after 65,536 of them (a huge
    /// batch prepared at one reading) the ids go on in the next millisecond, ahead of the clock,
    /// instead of repeating.
    pub fn next_id(&mut self, unix_millis: i64) -> ShortString {
        let mut unix_millis = unix_millis;
        if let Some(ahead) = self.ahead {
            if unix_millis <= ahead {
                unix_millis = ahead;
            } else {
                self.ahead = None;
            }
        }
        if self.millis == Some(unix_millis) && self.ids_in_millis > u32::from(u16::MAX) {
            unix_millis += 1;
            self.ahead = Some(unix_millis);
        }
        let time_at = self.prefix_len;
        if self.millis != Some(unix_millis) {
            if !(self.month.0..self.month.1).contains(&unix_millis) {
                self.month = month_millis(unix_millis);
            }
            // Java: (int) (now - startOfMonth); wraps after ~24.8 days exactly like Java's cast.
            let since_month = (unix_millis - self.month.0) as i32;
            put_hex(&mut self.text[time_at..], &since_month.to_be_bytes());
            self.millis = Some(unix_millis);
            self.ids_in_millis = 0;
        }
        let counter = self.counter;
        self.counter = counter.wrapping_add(1);
        self.ids_in_millis += 1;
        if time_at == IPV4_PREFIX_LEN {
            // An IPv4 host's id (32 digits) fits inline: a copy of the digits (the prefix and
            // time, written when the millisecond changed) with the counter's put in.
            const COUNTER_AT: usize = IPV4_PREFIX_LEN + 8;
            let mut head: [u8; INLINE_CAPACITY] = self.text[..INLINE_CAPACITY]
                .try_into()
                .expect("the id buffer is longer than an inline string");
            put_hex(&mut head[COUNTER_AT..], &counter.to_be_bytes());
            // SAFETY: `text` starts as ASCII `'0'`s and, like `head`, is only ever written by
            // `put_hex`, whose bytes come from `HEX_UPPER`: the whole head is ASCII (checked in
            // debug builds, which the tests below run in: `java_layout`,
            // `ids_stay_ascii_across_millis_and_wraps`).
            #[allow(unsafe_code)]
            return unsafe { ShortString::from_ascii_unchecked(&head, COUNTER_AT + 4) };
        }
        let counter_at = time_at + 8;
        put_hex(&mut self.text[counter_at..], &counter.to_be_bytes());
        let len = counter_at + 4;
        ShortString::new(std::str::from_utf8(&self.text[..len]).expect("hex digits are ASCII"))
    }
}

/// Unix milliseconds of the start (00:00 UTC, day 1) of the month containing `unix_millis`.
///
/// Java uses the JVM's default time zone; this client uses UTC (ids only need to be unique).
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn start_of_month_millis(unix_millis: i64) -> i64 {
    month_millis(unix_millis).0
}

/// The month containing `unix_millis` as `[start, start of the next month)` in unix ms (UTC).
fn month_millis(unix_millis: i64) -> (i64, i64) {
    let days = unix_millis.div_euclid(86_400_000);
    let (year, month, _) = civil_from_days(days);
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    (
        days_from_civil(year, month, 1) * 86_400_000,
        days_from_civil(next_year, next_month, 1) * 86_400_000,
    )
}

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The parts of a broker offset message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMessageId {
    /// Store host address and port.
    pub store_host: SocketAddr,
    /// Commit-log physical offset.
    pub commit_log_offset: i64,
}

/// Decodes an offset message id: 32 hex chars = IPv4, 56 = IPv6 (Java `decodeMessageId`).
pub fn decode_offset_message_id(id: &str) -> Result<OffsetMessageId, DecodeError> {
    let bytes = decode_hex(id)?;
    let ip_len = match bytes.len() {
        16 => 4,
        28 => 16,
        n => {
            return Err(DecodeError::malformed(
                "offset message id",
                format!("{n} bytes, expected 16 or 28"),
            ))
        }
    };
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&bytes[..16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let port = i32::from_be_bytes(bytes[ip_len..ip_len + 4].try_into().expect("4 bytes"));
    let offset = i64::from_be_bytes(bytes[ip_len + 4..ip_len + 12].try_into().expect("8 bytes"));
    let port = u16::try_from(port)
        .map_err(|_| DecodeError::malformed("offset message id", format!("port {port}")))?;
    Ok(OffsetMessageId {
        store_host: SocketAddr::new(ip, port),
        commit_log_offset: offset,
    })
}

fn decode_hex(s: &str) -> Result<Vec<u8>, DecodeError> {
    if s.len() % 2 != 0 {
        return Err(DecodeError::malformed("hex id", "odd length"));
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(DecodeError::malformed("hex id", "non-hex character")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_layout() {
        // Protocol notes §11 example: 10.0.0.1, pid 1234, hash 0x12345678.
        let mut gen = UniqueIdGenerator::new("10.0.0.1".parse().unwrap(), 1234, 0x1234_5678);
        // 2026-11-01T00:00:01.000Z
        let t = days_from_civil(2026, 11, 1) * 86_400_000 + 1000;
        let a = gen.next_id(t);
        let b = gen.next_id(t);
        assert_eq!(a, "0A00000104D212345678000003E80000");
        assert_eq!(b, "0A00000104D212345678000003E80001");
        let v6 = UniqueIdGenerator::new("::1".parse().unwrap(), 1, 1).next_id(t);
        assert_eq!(v6.len(), 56);
    }

    #[test]
    fn ids_stay_ascii_across_millis_and_wraps() {
        // Each id against a separate formatting of its fields, over counter wraps, clock steps,
        // pids with letter digits and one over 16 bits (the inline ids are built unchecked:
        // debug builds assert ASCII).
        let t = days_from_civil(2026, 11, 1) * 86_400_000;
        for (pid, instance) in [(0u32, 0u32), (0xABCD, 0xFFFF_FFFF), (70_000, 0x0102_0304)] {
            let mut gen = UniqueIdGenerator::new("192.168.7.254".parse().unwrap(), pid, instance);
            for n in 0..70_000u32 {
                let millis = t + i64::from(n / 300);
                let id = gen.next_id(millis);
                let want = format!(
                    "C0A807FE{:04X}{instance:08X}{:08X}{:04X}",
                    pid as u16,
                    (millis - t) as i32,
                    n as u16
                );
                assert!(id.is_inline());
                assert_eq!(id, want.as_str(), "id {n}");
            }
        }
    }

    #[test]
    fn time_digits_follow_each_clock_reading() {
        let mut gen = UniqueIdGenerator::new("10.0.0.1".parse().unwrap(), 1234, 0x1234_5678);
        let t = days_from_civil(2026, 11, 1) * 86_400_000 + 1000;
        assert_eq!(gen.next_id(t), "0A00000104D212345678000003E80000");
        assert_eq!(gen.next_id(t + 1), "0A00000104D212345678000003E90001");
        assert_eq!(gen.next_id(t + 1), "0A00000104D212345678000003E90002");
        // A clock that steps back is taken as it is.
        assert_eq!(gen.next_id(t), "0A00000104D212345678000003E80003");
        let mut v6 = UniqueIdGenerator::new("::1".parse().unwrap(), 1, 1);
        let a = v6.next_id(t);
        let b = v6.next_id(t + 1);
        assert_eq!(&a[..44], &b[..44]);
        assert_eq!(&a[44..], "000003E80000");
        assert_eq!(&b[44..], "000003E90001");
    }

    #[test]
    fn more_ids_than_counter_values_in_one_reading_never_repeat() {
        let mut gen = UniqueIdGenerator::new("10.0.0.1".parse().unwrap(), 1, 1);
        let t = days_from_civil(2026, 11, 1) * 86_400_000 + 1000;
        let since = |id: &str| i64::from(u32::from_str_radix(&id[20..28], 16).unwrap());
        let n = 65_536 * 2 + 10;
        let ids: Vec<String> = (0..n).map(|_| gen.next_id(t).to_string()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), n, "an id repeated");
        assert_eq!(since(&ids[65_535]), 1000);
        assert_eq!(
            since(&ids[65_536]),
            1001,
            "the next millisecond, ahead of the clock"
        );
        assert_eq!(since(&ids[n - 1]), 1002);
        // Readings up to the millisecond the ids went ahead to stay on it; later ones move on.
        assert_eq!(since(&gen.next_id(t + 1)), 1002);
        assert_eq!(since(&gen.next_id(t + 5)), 1005);
        assert_eq!(
            since(&gen.next_id(t)),
            1000,
            "without ids ahead, a reading is taken as is"
        );
    }

    #[test]
    fn month_start() {
        let t = days_from_civil(2024, 2, 29) * 86_400_000 + 5;
        assert_eq!(
            start_of_month_millis(t),
            days_from_civil(2024, 2, 1) * 86_400_000
        );
        assert_eq!(start_of_month_millis(0), 0);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        let dec = days_from_civil(2025, 12, 31) * 86_400_000;
        assert_eq!(
            month_millis(dec),
            (
                days_from_civil(2025, 12, 1) * 86_400_000,
                days_from_civil(2026, 1, 1) * 86_400_000
            )
        );
    }

    #[test]
    fn cached_month_follows_the_clock_across_a_month_boundary() {
        let mut gen = UniqueIdGenerator::new("10.0.0.1".parse().unwrap(), 1, 1);
        let nov_end = days_from_civil(2026, 12, 1) * 86_400_000 - 1;
        // The field is Java's `(int)` of the milliseconds since the month began (it wraps).
        let since = |id: &str| u32::from_str_radix(&id[20..28], 16).unwrap() as i32;
        let nov = days_from_civil(2026, 11, 1) * 86_400_000;
        let a = gen.next_id(nov_end);
        assert_eq!(since(&a), (nov_end - nov) as i32);
        let b = gen.next_id(nov_end + 1);
        assert_eq!(since(&b), 0);
        let c = gen.next_id(nov_end - 10);
        assert_eq!(since(&c), (nov_end - 10 - nov) as i32);
    }

    #[test]
    fn offset_id() {
        // Protocol notes §11: 127.0.0.1:10911, offset 0.
        let id = decode_offset_message_id("7F00000100002A9F0000000000000000").unwrap();
        assert_eq!(id.store_host, "127.0.0.1:10911".parse().unwrap());
        assert_eq!(id.commit_log_offset, 0);
        assert!(decode_offset_message_id("7F").is_err());
        assert!(decode_offset_message_id("ZZ00000100002A9F0000000000000000").is_err());
        assert!(decode_offset_message_id("é").is_err());
    }
}
