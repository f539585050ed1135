//! The real RocketMQ client (`rocketmq-client-rust`, which none of us wrote) wrapped for tests:
//! a client runtime per test, producers and push consumers pointed at a nameserver, and a
//! [`Collector`] that records what a push consumer delivered.
//!
//! Tests that check "every acknowledged message is consumable" send through [`Client::producer`]
//! and consume through [`Client::push_consumer`] with a [`Collector`], so the whole path —
//! route lookup at the nameserver, send, store, pull, offsets — is the one a real application
//! takes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer,
    DefaultMQPushConsumerBuilder, MessageListenerConcurrently, SendStatus, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use crate::wait_until;

/// How long [`Client::shutdown`] lets the client's tasks finish before it stops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// One client runtime (threads, connections) of the real RocketMQ client.
pub struct Client {
    owner: RuntimeOwner,
    rt: Arc<ClientRuntime>,
}

impl Client {
    /// A new client runtime; `scope` names its threads.
    pub fn new(scope: &str) -> Client {
        // A test's client holds connections to brokers the test may have killed or cut
        // off; its default 30 s shutdown grace would only wait on those.
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: format!("mq-{scope}"),
            shutdown_timeout: SHUTDOWN_GRACE,
            ..Default::default()
        })
        .expect("runtime plan")
        .build()
        .expect("client runtime");
        let rt = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig {
                shutdown_timeout: SHUTDOWN_GRACE,
                ..ClientRuntimeConfig::default()
            },
            TelemetryHandle::noop(),
        )
        .expect("client runtime");
        Client { owner, rt }
    }

    /// A started producer of `group` using the nameserver list `ns` (`a:1;b:2`).
    pub async fn producer(&self, ns: &str, group: &str) -> DefaultMQProducer {
        self.producer_with_timeout(ns, group, 5000).await
    }

    /// [`Client::producer`] with a send timeout of `send_timeout_ms`.
    pub async fn producer_with_timeout(
        &self,
        ns: &str,
        group: &str,
        send_timeout_ms: u32,
    ) -> DefaultMQProducer {
        let mut p = DefaultMQProducer::builder(self.rt.clone())
            .producer_group(group.to_string())
            .name_server_addr(ns.to_string())
            .send_msg_timeout(send_timeout_ms)
            .build();
        p.start().await.expect("producer start");
        p
    }

    /// A push-consumer builder of `group` reading from the first offset.
    pub fn push_consumer(&self, ns: &str, group: &str) -> DefaultMQPushConsumerBuilder {
        DefaultMQPushConsumer::builder(self.rt.clone())
            .consumer_group(group.to_string())
            .name_server_addr(ns.to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
    }

    /// The client runtime, for builders this module does not wrap (e.g. the lite pull
    /// consumer).
    pub fn runtime(&self) -> Arc<ClientRuntime> {
        self.rt.clone()
    }

    /// Stops the runtime.
    pub async fn shutdown(self) {
        let _ = self.rt.shutdown().await;
        let _ = self.owner.shutdown_tasks().await;
        let _ = self.owner.shutdown_background();
    }
}

/// A message with a tag and a UTF-8 body.
pub fn msg(topic: &str, tag: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags(tag)
        .body_slice(body.as_bytes())
        .build_unchecked()
}

/// The body of a delivered message, as text.
pub fn body_of(m: &MessageExt) -> String {
    String::from_utf8_lossy(m.body_slice()).into_owned()
}

/// Sends `bodies` one by one (sync) and returns those the broker acknowledged with SEND_OK.
/// A send that fails is retried (routes may be refreshing after a failover) up to `tries`
/// times; bodies never acknowledged are left out of the result.
pub async fn send_all(
    producer: &DefaultMQProducer,
    topic: &str,
    bodies: impl IntoIterator<Item = String>,
    tries: usize,
) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    for body in bodies {
        for _ in 0..tries.max(1) {
            match producer.send(msg(topic, "t", &body)).await {
                Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                    acked.insert(body.clone());
                    break;
                }
                other => {
                    let why = match &other {
                        Err(e) => error_chain(e),
                        Ok(r) => format!("{r:?}"),
                    };
                    eprintln!("send of {body} to {topic} not acknowledged: {why}");
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
    }
    acked
}

/// A new producer's first `n` sends to `topic`, each tried exactly once (no retry may hide a
/// cluster that is not writable yet); returns the bodies acknowledged, each failure is
/// printed by [`send_all`].
pub async fn first_sends(ns: &str, scope: &str, topic: &str, n: usize) -> BTreeSet<String> {
    let client = Client::new(scope);
    let mut producer = client.producer(ns, &format!("pg-{scope}")).await;
    let acked = send_all(&producer, topic, (0..n).map(|i| format!("{scope}-{i}")), 1).await;
    producer.shutdown().await;
    client.shutdown().await;
    acked
}

/// An error and its sources, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Records the bodies a push consumer delivered.
#[derive(Clone, Default)]
pub struct Collector {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    /// Distinct bodies delivered so far.
    pub fn distinct(&self) -> BTreeSet<String> {
        self.seen
            .lock()
            .expect("collector lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Waits until every body in `want` has been delivered.
    pub async fn wait_for(&self, want: &BTreeSet<String>, timeout: Duration) {
        let me = self.clone();
        let result = wait_until("messages consumed", timeout, || {
            let me = me.clone();
            let want = want.clone();
            async move { want.is_subset(&me.distinct()).then_some(()) }
        })
        .await;
        if let Err(e) = result {
            let seen = self.distinct();
            let missing: Vec<_> = want.difference(&seen).collect();
            let some: Vec<_> = missing.iter().take(10).collect();
            panic!(
                "{e}: {} of {} missing, e.g. {some:?}",
                missing.len(),
                want.len()
            );
        }
    }
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut s = self.seen.lock().expect("collector lock");
        for m in msgs {
            s.push(body_of(m));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Consumes `topic` as `group` from the first offset until every body of `want` arrived.
pub async fn consume_all(
    client: &Client,
    ns: &str,
    group: &str,
    topic: &str,
    want: &BTreeSet<String>,
    timeout: Duration,
) {
    use rocketmq_client_rust::MQPushConsumer;
    let collector = Collector::default();
    let mut consumer = client.push_consumer(ns, group).build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("consumer start");
    collector.wait_for(want, timeout).await;
    consumer.shutdown().await;
}
