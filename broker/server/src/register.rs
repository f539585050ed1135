//! Registration with nameservers, and the live nameserver list.
//!
//! Producers and consumers find this broker only through nameservers, so the registrar
//! sends REGISTER_BROKER (JSON RegisterBrokerBody; topic perms masked by
//! `brokerPermission`) to every nameserver at start, every `registerNameServerPeriod`, and
//! at once when topics, the broker permission or the nameserver list change. It remembers
//! which nameservers accepted the last registration (`flotillaRegisteredNameservers` in
//! runtime info). When UPDATE_BROKER_CONFIG changes `namesrvAddr`, removed nameservers get
//! UNREGISTER_BROKER and are never contacted again, new ones are registered within a
//! second — no restart (Java applies it only every 120 s).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flotilla_remoting::protocol::{RegisterBrokerBody, encode_body};
use flotilla_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, request_code, response_code,
};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::broker::Broker;
use crate::topic_config::wire_wrapper;

/// Registration failures (logged; the loop retries within seconds, then every period).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The nameserver could not be reached or timed out.
    #[error("nameserver {addr}: {source}")]
    Remoting {
        /// Nameserver.
        addr: String,
        /// Cause.
        #[source]
        source: flotilla_remoting::RemotingError,
    },
    /// The nameserver refused the registration.
    #[error("nameserver {addr} answered {code}: {remark}")]
    Refused {
        /// Nameserver.
        addr: String,
        /// Response code.
        code: i32,
        /// Remark.
        remark: String,
    },
    /// The body could not be encoded.
    #[error("cannot encode the registration body: {0}")]
    Encode(String),
}

impl RegisterError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Remoting { .. } => "REGISTER_UNREACHABLE",
            Self::Refused { .. } => "REGISTER_REFUSED",
            Self::Encode(_) => "REGISTER_ENCODE",
        }
    }
}

/// The registration loop's state.
pub struct Registrar {
    client: RemotingClient,
    wake: Arc<Notify>,
    registered: Mutex<BTreeSet<String>>,
}

impl Default for Registrar {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Registrar {
    /// A registrar with its own connection pool, signing its requests with `credentials`
    /// (`innerClientAuthenticationCredentials`) when given, for nameservers with ACL on.
    pub fn new(credentials: Option<flotilla_remoting::SessionCredentials>) -> Self {
        let cfg = ClientConfig {
            connect_timeout: Duration::from_secs(2),
            oneway_timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        };
        let client = RemotingClient::new(cfg);
        client.set_credentials(credentials);
        Self {
            client,
            wake: Arc::new(Notify::new()),
            registered: Mutex::new(BTreeSet::new()),
        }
    }

    /// Asks the loop to register now.
    pub fn trigger(&self) {
        self.wake.notify_one();
    }

    /// Nameservers that accepted the latest registration.
    pub fn registered(&self) -> Vec<String> {
        self.registered.lock().iter().cloned().collect()
    }

    /// The nameserver list changed: forget and unregister from removed ones.
    pub fn namesrvs_changed(&self, broker: &Broker, old: &[String], new: &[String]) {
        let removed: Vec<String> = old.iter().filter(|a| !new.contains(a)).cloned().collect();
        {
            let mut reg = self.registered.lock();
            for a in &removed {
                reg.remove(a);
            }
        }
        let cfg = broker.config();
        for addr in removed {
            let client = self.client.clone();
            let cmd = unregister_cmd(&cfg, broker.effective_role().1);
            tokio::spawn(async move {
                match client.invoke(&addr, cmd, Duration::from_secs(3)).await {
                    Ok(r) => {
                        tracing::info!(addr, code = r.code, "unregistered from removed nameserver")
                    }
                    Err(e) => {
                        tracing::warn!(addr, error = %e, "cannot unregister from removed nameserver")
                    }
                }
                client.close_addr(&addr);
            });
        }
        self.trigger();
    }

    /// Unregisters from every nameserver (clean shutdown).
    pub async fn unregister_all(&self, broker: &Broker) {
        let cfg = broker.config();
        let broker_id = broker.effective_role().1;
        let futs = cfg.namesrv_addr.iter().map(|addr| {
            let cmd = unregister_cmd(&cfg, broker_id);
            let client = self.client.clone();
            async move {
                let _ = client.invoke(addr, cmd, Duration::from_secs(2)).await;
            }
        });
        futures::future::join_all(futs).await;
        self.registered.lock().clear();
    }

    /// Registers with every configured nameserver once, in parallel.
    pub async fn register_all(&self, broker: &Broker) {
        let cfg = broker.config();
        let wrapper = wire_wrapper(&broker.topics.snapshot(), cfg.broker_permission);
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: wrapper,
            filter_server_list: Vec::new(),
        };
        let body = match encode_body(&body) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode registration body");
                return;
            }
        };
        let timeout = cfg
            .register_broker_timeout
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(500));
        // The id of the role this broker has now (DLedger: 0 while leader, else a slave id).
        let broker_id = broker.effective_role().1;
        let futs = cfg.namesrv_addr.iter().map(|addr| {
            let cmd = RemotingCommand::request(request_code::REGISTER_BROKER)
                .with_ext("brokerName", &cfg.broker_name)
                .with_ext("brokerAddr", cfg.broker_addr())
                .with_ext("clusterName", &cfg.broker_cluster_name)
                .with_ext("haServerAddr", cfg.ha_server_addr())
                .with_ext("brokerId", broker_id)
                .with_ext(
                    "heartbeatTimeoutMillis",
                    cfg.channel_expired_timeout.as_millis(),
                )
                .with_ext("enableActingMaster", false)
                .with_ext("compressed", false)
                .with_ext("bodyCrc32", 0)
                .with_body(body.clone());
            let client = self.client.clone();
            async move {
                let r = match client.invoke(addr, cmd, timeout).await {
                    // A slave learns its master's addresses from the reply (classic HA).
                    Ok(resp) if resp.code == response_code::SUCCESS => Ok((
                        resp.ext("masterAddr").map(str::to_string),
                        resp.ext("haServerAddr").map(str::to_string),
                    )),
                    Ok(resp) => Err(RegisterError::Refused {
                        addr: addr.clone(),
                        code: resp.code,
                        remark: resp.remark.unwrap_or_default(),
                    }),
                    Err(source) => Err(RegisterError::Remoting {
                        addr: addr.clone(),
                        source,
                    }),
                };
                (addr.clone(), r)
            }
        });
        let results = futures::future::join_all(futs).await;
        // The list may have changed while we were registering: only record current members.
        let current = broker.config().namesrv_addr.clone();
        let mut reg = self.registered.lock();
        reg.retain(|a| current.contains(a));
        for (addr, r) in results {
            match r {
                Ok((master, ha)) => {
                    broker
                        .ha
                        .on_register_reply(master.as_deref(), ha.as_deref());
                    if current.contains(&addr) && reg.insert(addr.clone()) {
                        tracing::info!(addr, "registered with nameserver");
                    }
                }
                Err(e) => {
                    if reg.remove(&addr) {
                        tracing::warn!(addr, error = %e, code = e.code(), "registration failed");
                    } else {
                        tracing::debug!(addr, error = %e, code = e.code(), "registration failed");
                    }
                }
            }
        }
    }

    /// The loop: register now, then on every period, trigger or topic change, and soon again
    /// while some nameserver has not accepted the registration.
    pub async fn run(broker: Arc<Broker>) {
        let wake = broker.registrar.wake.clone();
        let topics_changed = broker.topics.changed.clone();
        // A nameserver that did not accept the last registration (not up yet, restarting,
        // unreachable) is retried soon, backing off to the period: a broker started next to
        // its nameserver must not stay invisible to clients for a whole period.
        let mut retry = Duration::from_millis(250);
        loop {
            broker.registrar.register_all(&broker).await;
            let cfg = broker.config();
            let registered = broker.registrar.registered();
            let all_registered = cfg.namesrv_addr.iter().all(|a| registered.contains(a));
            let period = if all_registered {
                retry = Duration::from_millis(250);
                cfg.register_name_server_period
            } else {
                let p = retry.min(cfg.register_name_server_period);
                retry = (retry * 2).min(Duration::from_secs(5));
                p
            };
            tokio::select! {
                () = broker.stop.cancelled() => return,
                () = wake.notified() => {}
                () = topics_changed.notified() => {}
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}

fn unregister_cmd(cfg: &crate::config::BrokerConfig, broker_id: i64) -> RemotingCommand {
    RemotingCommand::request(request_code::UNREGISTER_BROKER)
        .with_ext("brokerName", &cfg.broker_name)
        .with_ext("brokerAddr", cfg.broker_addr())
        .with_ext("clusterName", &cfg.broker_cluster_name)
        .with_ext("brokerId", broker_id)
}
