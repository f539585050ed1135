//! The nameserver's request handlers: one remoting code each, RocketMQ's headers and
//! bodies on the wire.
//!
//! Every handler decodes its `extFields` and body leniently (as Java does), but a missing
//! required field or an unreadable body is answered with an error response naming it —
//! never a panic and never a silently empty reply. Errors are [`RequestError`]s; each
//! becomes a response with RocketMQ's code for it (`TOPIC_NOT_EXIST`, `QUERY_NOT_FOUND`,
//! `SYSTEM_ERROR` …) and the error text as remark. Codes not listed in [`SUPPORTED_CODES`]
//! never reach this module: the remoting server answers them `REQUEST_CODE_NOT_SUPPORTED`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use flotilla_remoting::code::version;
use flotilla_remoting::names::check_topic;
use flotilla_remoting::protocol::{
    DataVersion, RegisterBrokerBody, TopicConfigSerializeWrapper, TopicRouteData, decode_body,
    encode_body,
};
use flotilla_remoting::{
    Channel, FastJsonError, HeaderError, ProcessError, ProcessResult, RemotingCommand,
    RequestProcessor, request_code, response_code,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use crate::config::{
    CONFIG_BLACK_LIST, ConfigError, NamesrvConfig, parse_properties, properties_to_string,
};
use crate::kv::{KvConfigManager, KvError, NAMESPACE_ORDER_TOPIC_CONFIG};
use crate::route::{BrokerRegistration, RouteError, RouteInfoManager};

/// Every request code the nameserver answers.
pub const SUPPORTED_CODES: &[i32] = &[
    request_code::PUT_KV_CONFIG,
    request_code::GET_KV_CONFIG,
    request_code::DELETE_KV_CONFIG,
    request_code::GET_KVLIST_BY_NAMESPACE,
    request_code::REGISTER_BROKER,
    request_code::UNREGISTER_BROKER,
    request_code::BROKER_HEARTBEAT,
    request_code::QUERY_DATA_VERSION,
    request_code::GET_ROUTEINFO_BY_TOPIC,
    request_code::GET_BROKER_CLUSTER_INFO,
    request_code::WIPE_WRITE_PERM_OF_BROKER,
    request_code::ADD_WRITE_PERM_OF_BROKER,
    request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    request_code::DELETE_TOPIC_IN_NAMESRV,
    request_code::REGISTER_TOPIC_IN_NAMESRV,
    request_code::GET_TOPICS_BY_CLUSTER,
    request_code::UPDATE_NAMESRV_CONFIG,
    request_code::GET_NAMESRV_CONFIG,
];

/// Java's hint appended to TOPIC_NOT_EXIST remarks (`FAQUrl.suggestTodo(APPLY_TOPIC_URL)`).
const APPLY_TOPIC_HINT: &str =
    "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

/// A request could not be served; it becomes an error response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A required `extFields` entry is missing or does not parse.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// A required `extFields` entry is empty.
    #[error("header field {0} must not be empty")]
    EmptyField(&'static str),
    /// The body does not decode as the expected type.
    #[error("invalid {what} body: {reason}")]
    Body {
        /// The expected body type.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// REGISTER_BROKER sent a deflated body (`compressed=true`); only JSON is supported.
    #[error("compressed RegisterBrokerBody is not supported; register with compressed=false")]
    CompressedBody,
    /// REGISTER_BROKER's `bodyCrc32` does not match the body (Java's remark, verbatim).
    #[error("crc32 not match")]
    Crc32Mismatch,
    /// The route table refused the change.
    #[error("{0}")]
    Route(#[from] RouteError),
    /// No broker group has queues for the topic (Java's remark, verbatim).
    #[error("No topic route info in name server for the topic: {0}{APPLY_TOPIC_HINT}")]
    TopicNotExist(String),
    /// GET_KV_CONFIG: no such key.
    #[error("No config item, Namespace: {namespace} Key: {key}")]
    KvNotFound {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
    },
    /// GET_KVLIST_BY_NAMESPACE: empty namespace.
    #[error("No config item, Namespace: {0}")]
    KvNamespaceNotFound(String),
    /// A topic name breaks RocketMQ's rules (`TopicValidator`); nothing was changed.
    #[error("{0}")]
    InvalidName(#[from] flotilla_remoting::names::NameError),
    /// The KV change could not be persisted (and was rolled back).
    #[error("{0}")]
    Kv(#[from] KvError),
    /// The operation is switched off by config (`enableAllTopicList`, `enableTopicList`).
    #[error("disable")]
    Disabled,
    /// UPDATE_NAMESRV_CONFIG touched a black-listed key (Java's remark, verbatim).
    #[error("Can not update config in black list.")]
    ConfigBlackListed,
    /// UPDATE_NAMESRV_CONFIG carried a bad value.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A reply body could not be encoded (a bug).
    #[error("cannot encode reply: {0}")]
    Encode(String),
}

impl RequestError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Header(e) => e.code(),
            Self::EmptyField(_) => "HEADER_FIELD_EMPTY",
            Self::Body { .. } => "BODY_INVALID",
            Self::CompressedBody => "BODY_COMPRESSED_UNSUPPORTED",
            Self::Crc32Mismatch => "BODY_CRC32_MISMATCH",
            Self::Route(e) => e.code(),
            Self::TopicNotExist(_) => "TOPIC_NOT_EXIST",
            Self::KvNotFound { .. } | Self::KvNamespaceNotFound(_) => "KV_CONFIG_NOT_FOUND",
            Self::Kv(e) => e.code(),
            Self::Disabled => "OPERATION_DISABLED",
            Self::ConfigBlackListed => "CONFIG_BLACK_LISTED",
            Self::Config(e) => e.code(),
            Self::Encode(_) => "REPLY_ENCODE_FAILED",
            Self::InvalidName(e) => e.code(),
        }
    }

    /// The RocketMQ response code this error is answered with.
    pub fn response_code(&self) -> i32 {
        match self {
            Self::TopicNotExist(_) => response_code::TOPIC_NOT_EXIST,
            Self::KvNotFound { .. } | Self::KvNamespaceNotFound(_) => {
                response_code::QUERY_NOT_FOUND
            }
            Self::ConfigBlackListed => response_code::NO_PERMISSION,
            Self::EmptyField(_) | Self::Config(_) | Self::InvalidName(_) => {
                response_code::INVALID_PARAMETER
            }
            _ => response_code::SYSTEM_ERROR,
        }
    }
}

impl From<RequestError> for ProcessError {
    fn from(e: RequestError) -> Self {
        ProcessError::new(e.response_code(), e.to_string())
    }
}

fn encode_err(e: FastJsonError) -> RequestError {
    RequestError::Encode(e.to_string())
}

/// State shared by the handlers, the expiry scan and the connection watchers.
pub(crate) struct Shared {
    pub(crate) route: Arc<RouteInfoManager>,
    pub(crate) kv: KvConfigManager,
    pub(crate) config: RwLock<NamesrvConfig>,
    /// Connections with a close watcher.
    pub(crate) watched: Mutex<HashSet<u64>>,
    /// Wakes the scan loop after its interval changed.
    pub(crate) scan_wake: Notify,
    pub(crate) stop: CancellationToken,
}

/// The nameserver's [`RequestProcessor`], registered for [`SUPPORTED_CODES`].
pub struct NamesrvProcessor {
    shared: Arc<Shared>,
}

impl NamesrvProcessor {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn handle(
        &self,
        channel: &Channel,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, RequestError> {
        match req.code {
            request_code::REGISTER_BROKER => self.register_broker(channel, req),
            request_code::UNREGISTER_BROKER => self.unregister_broker(req),
            request_code::BROKER_HEARTBEAT => self.broker_heartbeat(req),
            request_code::QUERY_DATA_VERSION => self.query_data_version(req),
            request_code::GET_ROUTEINFO_BY_TOPIC => self.route_by_topic(req),
            request_code::GET_BROKER_CLUSTER_INFO => self.cluster_info(req),
            request_code::PUT_KV_CONFIG => self.put_kv(req),
            request_code::GET_KV_CONFIG => self.get_kv(req),
            request_code::DELETE_KV_CONFIG => self.delete_kv(req),
            request_code::GET_KVLIST_BY_NAMESPACE => self.kv_list(req),
            request_code::DELETE_TOPIC_IN_NAMESRV => self.delete_topic(req),
            request_code::REGISTER_TOPIC_IN_NAMESRV => self.register_topic(req),
            request_code::WIPE_WRITE_PERM_OF_BROKER => self.write_perm(req, false),
            request_code::ADD_WRITE_PERM_OF_BROKER => self.write_perm(req, true),
            request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => self.all_topics(),
            request_code::GET_TOPICS_BY_CLUSTER => self.topics_by_cluster(req),
            request_code::UPDATE_NAMESRV_CONFIG => self.update_config(req),
            request_code::GET_NAMESRV_CONFIG => self.get_config(),
            // Only SUPPORTED_CODES are routed here.
            other => Ok(RemotingCommand::response(
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(" request type {other} not supported")),
            )),
        }
    }

    fn register_broker(
        &self,
        channel: &Channel,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, RequestError> {
        let cluster_name = non_empty(req, "clusterName")?;
        let broker_addr = non_empty(req, "brokerAddr")?;
        let broker_name = non_empty(req, "brokerName")?;
        let broker_id = req.ext_i64("brokerId")?;
        let ha_server_addr = req.ext("haServerAddr").unwrap_or_default().to_string();
        let heartbeat_timeout_millis = req.ext_i64_opt("heartbeatTimeoutMillis");
        let enable_acting_master = req.ext_bool_opt("enableActingMaster");
        let compressed = req.ext_bool("compressed");
        let body_crc32 = req.ext_i64_opt("bodyCrc32").unwrap_or(0);
        if body_crc32 != 0 && !crc32_matches(body_crc32, &req.body) {
            warn!(
                broker = broker_name,
                addr = broker_addr,
                expected = body_crc32,
                actual = crc32fast::hash(&req.body),
                "registration body crc32 mismatch"
            );
            return Err(RequestError::Crc32Mismatch);
        }
        let topic_config = if req.body.is_empty() {
            TopicConfigSerializeWrapper::default()
        } else {
            match decode_body::<RegisterBrokerBody>(&req.body) {
                Ok(b) => b.topic_config_serialize_wrapper,
                Err(_) if compressed => return Err(RequestError::CompressedBody),
                Err(e) => {
                    return Err(RequestError::Body {
                        what: "RegisterBrokerBody",
                        reason: e.to_string(),
                    });
                }
            }
        };
        // Every topic is checked before anything changes: junk is refused whole.
        for (name, tc) in &topic_config.topic_config_table {
            check_topic(name)?;
            if !tc.topic_name.is_empty() && tc.topic_name != *name {
                check_topic(&tc.topic_name)?;
            }
        }
        let reg = BrokerRegistration {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
            broker_name: broker_name.to_string(),
            broker_id,
            ha_server_addr,
            zone_name: req.ext("__ZONE_NAME").map(str::to_string),
            heartbeat_timeout_millis,
            enable_acting_master,
            topic_config,
        };
        let result = self
            .shared
            .route
            .register_broker(reg, Some(channel.clone()))?;
        self.watch(channel);
        let mut resp = RemotingCommand::success();
        if let Some(m) = result.master_addr {
            resp.put_ext("masterAddr", m);
        }
        if let Some(h) = result.ha_server_addr {
            resp.put_ext("haServerAddr", h);
        }
        if let Some(kv) = self.shared.kv.namespace(NAMESPACE_ORDER_TOPIC_CONFIG) {
            resp.body = encode_body(&kv).map_err(encode_err)?.into();
        }
        Ok(resp)
    }

    /// Unregisters the brokers of `channel` once it closes (once per connection).
    fn watch(&self, channel: &Channel) {
        if !self.shared.watched.lock().insert(channel.id()) {
            return;
        }
        let shared = self.shared.clone();
        let channel = channel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = channel.closed() => {
                    shared.watched.lock().remove(&channel.id());
                    let n = shared.route.on_channel_closed(channel.id());
                    if n > 0 {
                        info!(conn = channel.id(), remote = %channel.remote_addr(), brokers = n,
                            "brokers removed: connection closed");
                    }
                }
                () = shared.stop.cancelled() => {}
            }
        });
    }

    fn unregister_broker(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let cluster_name = req.ext_str("clusterName")?;
        let broker_addr = req.ext_str("brokerAddr")?;
        let broker_name = req.ext_str("brokerName")?;
        let broker_id = req.ext_i64("brokerId")?;
        self.shared
            .route
            .unregister_broker(cluster_name, broker_addr, broker_name, broker_id);
        Ok(RemotingCommand::success())
    }

    fn broker_heartbeat(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let cluster_name = req.ext_str("clusterName")?;
        let broker_addr = req.ext_str("brokerAddr")?;
        if !self.shared.route.heartbeat(cluster_name, broker_addr) {
            debug!(
                cluster = cluster_name,
                addr = broker_addr,
                "heartbeat from unregistered broker"
            );
        }
        Ok(RemotingCommand::success())
    }

    fn query_data_version(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let cluster_name = req.ext_str("clusterName")?;
        let broker_addr = req.ext_str("brokerAddr")?;
        let version: DataVersion = if req.body.is_empty() {
            DataVersion::default()
        } else {
            decode_body(&req.body).map_err(|e| RequestError::Body {
                what: "DataVersion",
                reason: e.to_string(),
            })?
        };
        let route = &self.shared.route;
        let changed = route.is_data_version_changed(cluster_name, broker_addr, &version);
        route.heartbeat(cluster_name, broker_addr);
        let mut resp = RemotingCommand::success().with_ext("changed", changed);
        if let Some(current) = route.broker_data_version(cluster_name, broker_addr) {
            resp.body = encode_body(&current).map_err(encode_err)?.into();
        }
        Ok(resp)
    }

    fn route_by_topic(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let topic = req.ext_str("topic")?;
        let Some(mut route) = self.shared.route.topic_route(topic) else {
            return Err(RequestError::TopicNotExist(topic.to_string()));
        };
        if self.shared.config.read().runtime.order_message_enable {
            route.order_topic_conf = self.shared.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, topic);
        }
        let body = encode_route(&route, wants_standard_json(req)).map_err(encode_err)?;
        Ok(RemotingCommand::success().with_body(body))
    }

    fn cluster_info(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let info = self.shared.route.cluster_info();
        let body = if wants_standard_json(req) {
            encode_body(&info)
        } else {
            info.encode_legacy()
        }
        .map_err(encode_err)?;
        Ok(RemotingCommand::success().with_body(body))
    }

    fn put_kv(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let namespace = req.ext_str("namespace")?;
        let key = req.ext_str("key")?;
        let value = req.ext_str("value")?;
        self.shared.kv.put(namespace, key, value)?;
        Ok(RemotingCommand::success())
    }

    fn get_kv(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let namespace = req.ext_str("namespace")?;
        let key = req.ext_str("key")?;
        match self.shared.kv.get(namespace, key) {
            Some(v) => Ok(RemotingCommand::success().with_ext("value", v)),
            None => Err(RequestError::KvNotFound {
                namespace: namespace.to_string(),
                key: key.to_string(),
            }),
        }
    }

    fn delete_kv(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let namespace = req.ext_str("namespace")?;
        let key = req.ext_str("key")?;
        self.shared.kv.delete(namespace, key)?;
        Ok(RemotingCommand::success())
    }

    fn kv_list(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let namespace = req.ext_str("namespace")?;
        match self.shared.kv.namespace(namespace) {
            Some(t) => {
                Ok(RemotingCommand::success().with_body(encode_body(&t).map_err(encode_err)?))
            }
            None => Err(RequestError::KvNamespaceNotFound(namespace.to_string())),
        }
    }

    fn delete_topic(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let topic = req.ext_str("topic")?;
        let cluster = req.ext("clusterName").filter(|c| !c.trim().is_empty());
        self.shared.route.delete_topic(topic, cluster);
        Ok(RemotingCommand::success())
    }

    fn register_topic(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let topic = req.ext_str("topic")?;
        check_topic(topic)?;
        if req.body.is_empty() {
            return Ok(RemotingCommand::success());
        }
        let route: TopicRouteData = decode_body(&req.body).map_err(|e| RequestError::Body {
            what: "TopicRouteData",
            reason: e.to_string(),
        })?;
        self.shared.route.register_topic(topic, route.queue_datas)?;
        Ok(RemotingCommand::success())
    }

    fn write_perm(
        &self,
        req: &RemotingCommand,
        add: bool,
    ) -> Result<RemotingCommand, RequestError> {
        let broker_name = req.ext_str("brokerName")?;
        let route = &self.shared.route;
        Ok(if add {
            let n = route.add_write_perm(broker_name);
            RemotingCommand::success().with_ext("addTopicCount", n)
        } else {
            let n = route.wipe_write_perm(broker_name);
            RemotingCommand::success().with_ext("wipeTopicCount", n)
        })
    }

    fn all_topics(&self) -> Result<RemotingCommand, RequestError> {
        if !self.shared.config.read().runtime.enable_all_topic_list {
            return Err(RequestError::Disabled);
        }
        let list = self.shared.route.all_topics();
        Ok(RemotingCommand::success().with_body(encode_body(&list).map_err(encode_err)?))
    }

    fn topics_by_cluster(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        if !self.shared.config.read().runtime.enable_topic_list {
            return Err(RequestError::Disabled);
        }
        let cluster = req.ext_str("cluster")?;
        let list = self.shared.route.topics_by_cluster(cluster);
        Ok(RemotingCommand::success().with_body(encode_body(&list).map_err(encode_err)?))
    }

    fn update_config(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        if req.body.is_empty() {
            return Ok(RemotingCommand::success());
        }
        let text = std::str::from_utf8(&req.body).map_err(|_| RequestError::Body {
            what: "properties",
            reason: "not UTF-8".to_string(),
        })?;
        let props = parse_properties(text);
        if props
            .keys()
            .any(|k| CONFIG_BLACK_LIST.contains(&k.as_str()))
        {
            return Err(RequestError::ConfigBlackListed);
        }
        let mut config = self.shared.config.write();
        let mut next = config.clone();
        let unknown = next.apply_properties(&props)?;
        for key in &unknown {
            warn!(key, "UPDATE_NAMESRV_CONFIG: unknown key ignored");
        }
        let interval_changed = next.runtime.scan_interval != config.runtime.scan_interval;
        self.shared.route.set_options(next.runtime.route);
        *config = next;
        drop(config);
        if interval_changed {
            self.shared.scan_wake.notify_one();
        }
        info!(keys = ?props.keys().collect::<Vec<_>>(), "namesrv config updated");
        Ok(RemotingCommand::success())
    }

    fn get_config(&self) -> Result<RemotingCommand, RequestError> {
        let text = properties_to_string(&self.shared.config.read().to_properties());
        Ok(RemotingCommand::success().with_body(text.into_bytes()))
    }
}

impl RequestProcessor for NamesrvProcessor {
    fn process(
        &self,
        channel: Channel,
        request: RemotingCommand,
    ) -> impl Future<Output = ProcessResult> + Send {
        let span = info_span!(
            "namesrv_request",
            code = request.code,
            request_id = request.opaque,
            resource = resource_of(&request),
        );
        let result = span.in_scope(|| match self.handle(&channel, &request) {
            Ok(resp) => Ok(Some(resp)),
            Err(e) => {
                debug!(error = %e, code = e.code(), "request failed");
                Err(ProcessError::from(e))
            }
        });
        std::future::ready(result)
    }
}

/// The resource a request is about, for its span.
fn resource_of(req: &RemotingCommand) -> &str {
    ["topic", "brokerName", "namespace", "cluster"]
        .iter()
        .find_map(|k| req.ext(k))
        .unwrap_or("")
}

fn non_empty<'a>(req: &'a RemotingCommand, key: &'static str) -> Result<&'a str, RequestError> {
    let v = req.ext_str(key)?;
    if v.trim().is_empty() {
        return Err(RequestError::EmptyField(key));
    }
    Ok(v)
}

/// Standard JSON for clients of V4_9_4 or newer, or that ask for it; Java's legacy form
/// (unquoted integer keys) otherwise.
fn wants_standard_json(req: &RemotingCommand) -> bool {
    req.version >= version::V4_9_4 || req.ext_bool("acceptStandardJsonOnly")
}

fn encode_route(route: &TopicRouteData, standard: bool) -> Result<Vec<u8>, FastJsonError> {
    if standard {
        route.encode_standard()
    } else {
        route.encode_legacy()
    }
}

/// Java computes `bodyCrc32` as the CRC32 masked to 31 bits (`UtilAll.crc32`); accept that
/// and the full value (signed or unsigned), which other clients send.
fn crc32_matches(sent: i64, body: &[u8]) -> bool {
    let crc = crc32fast::hash(body);
    sent == i64::from(crc & 0x7FFF_FFFF) || sent == i64::from(crc) || sent == i64::from(crc as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_accepts_java_masked_and_full_values() {
        let body = b"hello world";
        let crc = crc32fast::hash(body);
        assert!(crc32_matches(i64::from(crc & 0x7FFF_FFFF), body));
        assert!(crc32_matches(i64::from(crc), body));
        assert!(crc32_matches(i64::from(crc as i32), body));
        assert!(!crc32_matches(12345, body));
    }

    #[test]
    fn standard_json_rule() {
        let mut req = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC);
        req.version = version::V4_9_4;
        assert!(wants_standard_json(&req));
        req.version = 400;
        assert!(!wants_standard_json(&req));
        req.put_ext("acceptStandardJsonOnly", "true");
        assert!(wants_standard_json(&req));
        req.put_ext("acceptStandardJsonOnly", "false");
        assert!(!wants_standard_json(&req));
    }

    #[test]
    fn error_codes_and_remarks() {
        let e = RequestError::TopicNotExist("T".into());
        assert_eq!(e.response_code(), response_code::TOPIC_NOT_EXIST);
        assert!(
            e.to_string()
                .starts_with("No topic route info in name server for the topic: T\nSee ")
        );
        let e = RequestError::KvNotFound {
            namespace: "ns".into(),
            key: "k".into(),
        };
        assert_eq!(e.response_code(), response_code::QUERY_NOT_FOUND);
        assert_eq!(e.to_string(), "No config item, Namespace: ns Key: k");
        assert_eq!(RequestError::Crc32Mismatch.to_string(), "crc32 not match");
        assert_eq!(
            RequestError::Crc32Mismatch.response_code(),
            response_code::SYSTEM_ERROR
        );
        assert_eq!(
            RequestError::ConfigBlackListed.response_code(),
            response_code::NO_PERMISSION
        );
        let e = RequestError::from(HeaderError::Missing("topic".into()));
        assert_eq!(e.to_string(), "missing header field topic");
        assert_eq!(e.code(), "HEADER_FIELD_MISSING");
    }
}
