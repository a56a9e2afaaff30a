//! Loading a [`ProducerConfig`] from TOML. The keys are the config types' own fields (serde on
//! [`ProducerConfig`], [`CoreConfig`], [`crate::AutoBatch`], [`crate::FaultTable`],
//! [`crate::TlsOptions`]), so the file and the code cannot drift. What this file adds is the
//! layout of cores:
//!
//! - `[core_defaults]` is the field `core` (every core without its own entry);
//! - each `[[core]]` entry names its `cpu` and starts from `[core_defaults]`;
//! - in either, `auto_batch = true` with flat `linger`, `batch_max_messages`, `batch_max_bytes`
//!   keys is the same as an `[core_defaults.auto_batch]` table with `linger`, `max_messages`,
//!   `max_bytes`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::config::{CoreConfig, CoreSelection, ProducerConfig};
use crate::error::Error;

fn bad(reason: String) -> Error {
    Error::InvalidConfig { reason }
}

/// The flat auto-batch keys of a core table and the `AutoBatch` fields they stand for.
const FLAT_BATCH_KEYS: [(&str, &str); 3] = [
    ("linger", "linger"),
    ("batch_max_messages", "max_messages"),
    ("batch_max_bytes", "max_bytes"),
];

impl ProducerConfig {
    /// Reads a TOML file; [`ProducerConfig::from_toml_str`] describes the format.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the file, and the key when one is wrong.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ProducerConfig, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text).map_err(|e| match e {
            Error::InvalidConfig { reason } => bad(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// Parses TOML text over the defaults and validates the result.
    ///
    /// Every field of [`ProducerConfig`] is a key of the same name (`namesrv` for
    /// `namesrv_addrs`, as `"a:9876;b:9876"` or a list). `[core_defaults]` sets
    /// [`ProducerConfig::core`], `[[core]]` entries set the cores of individual CPUs (and, when
    /// present, choose the CPUs unless `cores` says otherwise). Durations are `"250us"`,
    /// `"5ms"`, `"3s"`, `"1m"`; sizes are bytes or `"64KiB"`, `"1MiB"`. Unknown keys and
    /// impossible values are errors that name the key.
    ///
    /// ```
    /// use rocketmq_tpc::ProducerConfig;
    ///
    /// let config = ProducerConfig::from_toml_str(r#"
    /// producer_group = "orders"
    /// namesrv = "10.0.0.1:9876;10.0.0.2:9876"
    /// send_timeout = "3s"            # durations: "250us", "5ms", "3s", "1m"
    /// compress_over = "4KiB"         # sizes: bytes, or "64KiB", "1MiB"
    ///
    /// [core_defaults]                # every core without its own entry
    /// max_inflight = 8192
    /// io_memory = "1MiB"
    ///
    /// [[core]]                       # one producer core on CPU 0 with its own settings
    /// cpu = 0
    /// auto_batch = true
    /// linger = "100us"
    ///
    /// [[core]]
    /// cpu = 1
    /// "#)?;
    /// assert_eq!(config.producer_group, "orders");
    /// assert_eq!(config.core_for(0).max_inflight, 8192);
    /// # Ok::<(), rocketmq_tpc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the key that is unknown or wrong.
    pub fn from_toml_str(text: &str) -> Result<ProducerConfig, Error> {
        let mut table: Table = toml::from_str(text)
            .map_err(|e| bad(e.message().to_owned() + &location(text, e.span())))?;
        let entries = match table.remove("core") {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(bad("core: give each core as a [[core]] entry".into())),
        };
        let defaults = match table.remove("core_defaults") {
            None => Table::new(),
            Some(Value::Table(defaults)) => defaults,
            Some(_) => return Err(bad("core_defaults must be a table".into())),
        };
        if defaults.contains_key("cpu") {
            return Err(bad(
                "core_defaults.cpu: CPUs are chosen with [[core]] entries or `cores`".into(),
            ));
        }
        let file_chose_cores = table.contains_key("cores");
        let mut config: ProducerConfig = typed(table, "")?;
        config.core = core_from(defaults.clone(), "core_defaults")?;
        let mut per_cpu = BTreeMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let name = format!("core[{i}]");
            let Value::Table(mut entry) = entry else {
                return Err(bad(format!("{name} must be a table ([[core]])")));
            };
            let cpu = match entry.remove("cpu") {
                Some(Value::Integer(cpu)) => usize::try_from(cpu)
                    .map_err(|_| bad(format!("{name}.cpu = {cpu} is not a CPU number")))?,
                Some(other) => {
                    return Err(bad(format!("{name}.cpu = {other} is not a CPU number")))
                }
                None => {
                    return Err(bad(format!(
                        "{name}.cpu is missing: every [[core]] names its CPU"
                    )))
                }
            };
            if per_cpu.contains_key(&cpu) {
                return Err(bad(format!("{name}.cpu = {cpu} appears twice")));
            }
            let mut merged = defaults.clone();
            merged.extend(entry);
            per_cpu.insert(cpu, core_from(merged, &name)?);
        }
        if !file_chose_cores && !per_cpu.is_empty() {
            config.cores = CoreSelection::List(per_cpu.keys().copied().collect());
        }
        config.per_cpu = per_cpu;
        config.validate_values()?;
        Ok(config)
    }
}

/// A core's settings from its table, after folding the flat auto-batch keys.
fn core_from(mut table: Table, name: &str) -> Result<CoreConfig, Error> {
    fold_auto_batch(&mut table, name)?;
    typed(table, name)
}

/// `auto_batch = true` plus flat `linger` / `batch_max_*` keys becomes an `auto_batch` table;
/// `auto_batch = false` turns batching off whatever else is set.
fn fold_auto_batch(table: &mut Table, name: &str) -> Result<(), Error> {
    let mut flat = Table::new();
    for (key, field) in FLAT_BATCH_KEYS {
        if let Some(value) = table.remove(key) {
            flat.insert(field.to_owned(), value);
        }
    }
    match table.remove("auto_batch") {
        Some(Value::Boolean(false)) => {}
        Some(Value::Boolean(true)) => {
            table.insert("auto_batch".into(), Value::Table(flat));
        }
        Some(Value::Table(mut batch)) => {
            batch.extend(flat);
            table.insert("auto_batch".into(), Value::Table(batch));
        }
        Some(other) => {
            return Err(bad(format!(
                "{name}.auto_batch = {other}: use true, false or a table"
            )))
        }
        None if !flat.is_empty() => {
            return Err(bad(format!(
                "{name}: linger / batch_max_* are set but auto_batch is not true"
            )))
        }
        None => {}
    }
    Ok(())
}

/// Deserializes `table` into `T`, naming the key of the first error (`prefix.key`).
fn typed<T: DeserializeOwned>(table: Table, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let key = match (prefix, path.as_str()) {
            (p, ".") => p.to_owned(),
            ("", path) => path.to_owned(),
            (p, path) => format!("{p}.{path}"),
        };
        let inner = e.into_inner().to_string();
        match key.is_empty() {
            true => bad(inner),
            false => bad(format!("{key}: {inner}")),
        }
    })
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
