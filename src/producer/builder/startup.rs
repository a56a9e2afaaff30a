//! [`ProducerBuilder::build`]: validating the configuration, deriving what every core shares
//! (client id, connection settings, broker-request handler) and starting the cores and stats
//! reporters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ProducerBuilder;
use crate::config::CoreSelection;
use crate::engine::broker_requests::BrokerRequests;
use crate::engine::connection::ConnSettings;
use crate::engine::core::{spawn_core, Shared};
use crate::engine::inbox::Inbox;
use crate::error::Error;
use crate::producer::{CoreSlot, Inner, Producer};
use crate::protocol::frame::MAX_FRAME_BYTES;
use crate::route::RouteTable;
use crate::stats_reporter::StatsReporter;

impl ProducerBuilder {
    /// Validates the configuration and starts the cores. Does not contact the NameServer: the
    /// first send fetches its route (and fails within its budget if none answers).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad settings, [`Error::Startup`] when an executor cannot start
    /// (CPU not available, io_uring refused, locked memory below glommio's minimum).
    pub fn build(self) -> Result<Producer, Error> {
        let mut config = self.config;
        config.validate()?;
        let mut hooks = self.hooks;
        if let Some(topic) = &config.trace_topic {
            crate::message::validate_topic(topic)?;
            hooks.send.push(Arc::new(crate::trace::TraceHook::new(
                topic.clone(),
                config.producer_group.clone(),
            )));
        }
        if let Some(namespace) = &config.namespace {
            // The group is registered, sent and checked back in its namespace (Java
            // `ClientConfig.withNamespace(producerGroup)`).
            config.producer_group = crate::namespace::wrap(namespace, &config.producer_group);
        }
        let cpus = resolve_cpus(&config.cores)?;
        // Message ids and the client id carry this host's address (Java `UtilAll.getIP`), so ids
        // from two hosts cannot collide and brokers can tell clients apart.
        let ip = crate::client_address::client_ip(config.client_ip);
        config.client_ip = Some(ip);
        let instance = config.instance_name.clone().unwrap_or_else(|| {
            format!(
                "{}#{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )
        });
        let client_id = format!("{ip}@{instance}");
        let hooks = Arc::new(hooks);
        let max_topics = config.max_topics;
        let broker_requests = Arc::new(BrokerRequests::new(
            config.producer_group.clone(),
            config.namespace.clone(),
        ));
        let conn_settings = ConnSettings {
            encoding: config.header_encoding,
            language: config.language,
            version: config.version,
            max_frame_bytes: MAX_FRAME_BYTES,
            max_in_flight: config.core.max_inflight_per_connection,
            broker_requests: Some(Arc::clone(&broker_requests)),
            hooks: Arc::clone(&hooks),
            resolver: self
                .resolver
                .map(|r| r.0)
                .unwrap_or_else(crate::engine::resolve::system_resolver),
            tls: config
                .tls
                .as_ref()
                .map(crate::tls::TlsSetup::new)
                .transpose()?,
            max_queued_bytes: config.core.max_buffered_bytes,
            // Capped like every deadline (see `deadline_after`): the writer adds it to now.
            stall_timeout: config
                .attempt_timeout
                .min(crate::engine::deadline::FAR_FUTURE),
        };
        let shared = Arc::new(Shared {
            config,
            routes: RouteTable::with_max_topics(max_topics),
            client_id,
            closing: Default::default(),
            shutdown_deadline: Mutex::new(None),
            conn_settings,
            broker_requests,
            hooks,
            delivery: self.delivery.map(|d| d.0),
        });
        let mut cores = Vec::with_capacity(cpus.len());
        for (index, cpu) in cpus.into_iter().enumerate() {
            let inbox = Arc::new(Inbox::new(
                shared.config.core_for(cpu).inbox_capacity,
                shared.delivery.clone(),
            ));
            match spawn_core(index, cpu, Arc::clone(&shared), Arc::clone(&inbox)) {
                Ok(join) => cores.push(CoreSlot {
                    inbox,
                    join: Mutex::new(Some(join)),
                }),
                Err(e) => {
                    let partial = Inner {
                        shared,
                        cores,
                        shutdown_done: Mutex::new(None),
                        reporters: Mutex::default(),
                    };
                    partial.shutdown(Duration::ZERO);
                    return Err(e);
                }
            }
        }
        tracing::info!(cores = cores.len(), client_id = %shared.client_id, "producer started");
        let producer = Producer {
            inner: Arc::new(Inner {
                shared,
                cores,
                shutdown_done: Mutex::new(None),
                reporters: Mutex::default(),
            }),
        };
        for subscription in self.stats_subscriptions {
            // The reporter holds the producer weakly: dropping the last handle still shuts it down.
            let weak = Arc::downgrade(&producer.inner);
            let snapshot = move || weak.upgrade().map(|inner| Producer { inner }.stats());
            let reporter = StatsReporter::start(subscription, snapshot)?;
            producer
                .inner
                .reporters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(reporter);
        }
        Ok(producer)
    }
}

fn resolve_cpus(selection: &CoreSelection) -> Result<Vec<usize>, Error> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if available.is_empty() {
        return Err(Error::Startup {
            reason: "cannot read the CPUs this process may run on".into(),
        });
    }
    match selection {
        CoreSelection::All => Ok(available),
        CoreSelection::Count(n) if *n <= available.len() => Ok(available[..*n].to_vec()),
        CoreSelection::Count(n) => Err(Error::InvalidConfig {
            reason: format!(
                "cores = {n}, but this process may only use {} CPUs ({available:?})",
                available.len()
            ),
        }),
        CoreSelection::List(list) => {
            if let Some(cpu) = list.iter().find(|c| !available.contains(c)) {
                return Err(Error::InvalidConfig {
                    reason: format!("CPU {cpu} is not one this process may use ({available:?})"),
                });
            }
            Ok(list.clone())
        }
    }
}
