//! Namespaces: `namespace%resource` names for topics and groups (Java `NamespaceUtil`).
//!
//! ```text
//!  wrap("ns", "orders")          → "ns%orders"
//!  wrap("ns", "%RETRY%group")    → "%RETRY%ns%group"      (retry / DLQ prefixes stay in front)
//!  wrap("ns", "TBW102")          → "TBW102"               (system resources are never wrapped)
//!  wrap("ns", "ns%orders")       → "ns%orders"            (already wrapped)
//!  strip("ns", "ns%orders")      → "orders"
//! ```

use crate::error::Error;

const SEPARATOR: char = '%';
const RETRY_PREFIX: &str = "%RETRY%";
const DLQ_PREFIX: &str = "%DLQ%";

/// Topics the broker owns (`TopicValidator.SYSTEM_TOPIC_SET`), never wrapped.
const SYSTEM_TOPICS: &[&str] = &[
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// Java `NamespaceUtil.isSystemResource`: system topics, `rmq_sys_` topics and
/// `CID_RMQ_SYS_` groups.
fn is_system_resource(resource: &str) -> bool {
    SYSTEM_TOPICS.contains(&resource)
        || resource.starts_with("rmq_sys_")
        || resource.starts_with("CID_RMQ_SYS_")
}

/// The retry or DLQ prefix of `resource`, and the rest.
fn split_prefix(resource: &str) -> (&'static str, &str) {
    if let Some(rest) = resource.strip_prefix(RETRY_PREFIX) {
        (RETRY_PREFIX, rest)
    } else if let Some(rest) = resource.strip_prefix(DLQ_PREFIX) {
        (DLQ_PREFIX, rest)
    } else {
        ("", resource)
    }
}

/// `resource` in `namespace` (Java `NamespaceUtil.wrapNamespace`).
pub(crate) fn wrap(namespace: &str, resource: &str) -> String {
    if namespace.is_empty() || resource.is_empty() || is_system_resource(resource) {
        return resource.to_owned();
    }
    let (prefix, bare) = split_prefix(resource);
    if bare
        .strip_prefix(namespace)
        .is_some_and(|rest| rest.starts_with(SEPARATOR))
    {
        return resource.to_owned();
    }
    let mut out = String::with_capacity(resource.len() + namespace.len() + 1);
    out.push_str(prefix);
    out.push_str(namespace);
    out.push(SEPARATOR);
    out.push_str(bare);
    out
}

/// A route's topic as the caller knows it: without the producer's `namespace`, when it has one
/// (shared, not copied, when that leaves it unchanged).
pub(crate) fn caller_topic(namespace: Option<&str>, topic: &crate::Topic) -> crate::Topic {
    match namespace.map(|ns| strip(ns, topic)) {
        Some(std::borrow::Cow::Borrowed(bare)) if bare.len() == topic.len() => topic.clone(),
        Some(stripped) => crate::Topic::from(stripped.as_ref()),
        None => topic.clone(),
    }
}

/// `resource` without `namespace` (Java `NamespaceUtil.withoutNamespace(resource, namespace)`):
/// unchanged when it is not in that namespace.
pub(crate) fn strip<'a>(namespace: &str, resource: &'a str) -> std::borrow::Cow<'a, str> {
    let (prefix, bare) = split_prefix(resource);
    match bare
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(SEPARATOR))
    {
        Some(rest) if !namespace.is_empty() && !is_system_resource(resource) => {
            if prefix.is_empty() {
                std::borrow::Cow::Borrowed(rest)
            } else {
                std::borrow::Cow::Owned(format!("{prefix}{rest}"))
            }
        }
        _ => std::borrow::Cow::Borrowed(resource),
    }
}

/// Checks a namespace name: what a topic may contain, without the `%` separator.
pub(crate) fn validate(namespace: &str) -> Result<(), Error> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            reason: format!(
                "namespace {namespace:?}: 1-64 characters from [a-zA-Z0-9_|-] (no '%', which separates it)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_like_namespace_util() {
        assert_eq!(wrap("ns", "orders"), "ns%orders");
        assert_eq!(wrap("ns", "ns%orders"), "ns%orders");
        assert_eq!(wrap("ns", "%RETRY%group"), "%RETRY%ns%group");
        assert_eq!(wrap("ns", "%DLQ%group"), "%DLQ%ns%group");
        assert_eq!(wrap("ns", "%RETRY%ns%group"), "%RETRY%ns%group");
        assert_eq!(wrap("ns", "TBW102"), "TBW102");
        assert_eq!(wrap("ns", "rmq_sys_x"), "rmq_sys_x");
        assert_eq!(wrap("ns", "nsx%orders"), "ns%nsx%orders");
        assert_eq!(wrap("", "orders"), "orders");
    }

    #[test]
    fn strip_undoes_wrap() {
        for r in ["orders", "%RETRY%g", "%DLQ%g", "TBW102", "a%b"] {
            assert_eq!(strip("ns", &wrap("ns", r)), r);
        }
        assert_eq!(strip("ns", "other%orders"), "other%orders");
        assert_eq!(strip("ns", "orders"), "orders");
    }

    #[test]
    fn names() {
        assert!(validate("tenant_a-1").is_ok());
        for bad in ["", "a%b", "a b", "ü", &"x".repeat(65)] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
