//! Scratch nameserver for local development only (not committed).
use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_remoting::protocol::*;
use flotilla_remoting::{RemotingCommand, RemotingServer, processor_fn, response_code};
use parking_lot::Mutex;

#[derive(Default)]
struct State {
    brokers: BTreeMap<String, (String, String, RegisterBrokerBody)>,
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9876".into());
    let st = Arc::new(Mutex::new(State::default()));
    let p = processor_fn(move |_ch, req: RemotingCommand| {
        let st = st.clone();
        async move {
            match req.code {
                103 => {
                    let body: RegisterBrokerBody = decode_body(&req.body)?;
                    let name = req.ext("brokerName").unwrap_or("").to_string();
                    let a = req.ext("brokerAddr").unwrap_or("").to_string();
                    let c = req.ext("clusterName").unwrap_or("").to_string();
                    st.lock().brokers.insert(name, (a, c, body));
                    Ok(Some(RemotingCommand::success()))
                }
                104 => {
                    let name = req.ext("brokerName").unwrap_or("").to_string();
                    st.lock().brokers.remove(&name);
                    Ok(Some(RemotingCommand::success()))
                }
                105 => {
                    let topic = req.ext("topic").unwrap_or("").to_string();
                    let s = st.lock();
                    let mut r = TopicRouteData::default();
                    for (name, (a, c, b)) in &s.brokers {
                        if let Some(tc) = b.topic_config_serialize_wrapper.topic_config_table.get(&topic) {
                            r.queue_datas.push(QueueData { broker_name: name.clone(), read_queue_nums: tc.read_queue_nums, write_queue_nums: tc.write_queue_nums, perm: tc.perm, topic_sys_flag: tc.topic_sys_flag });
                            let mut addrs = BTreeMap::new();
                            addrs.insert(0, a.clone());
                            r.broker_datas.push(BrokerData { cluster: c.clone(), broker_name: name.clone(), broker_addrs: addrs, zone_name: None, enable_acting_master: false });
                        }
                    }
                    if r.queue_datas.is_empty() {
                        return Ok(Some(RemotingCommand::response(response_code::TOPIC_NOT_EXIST, Some(format!("No topic route info in name server for the topic: {topic}")))));
                    }
                    Ok(Some(RemotingCommand::success().with_body(r.encode_standard()?)))
                }
                106 => {
                    let s = st.lock();
                    let mut ci = ClusterInfo::default();
                    for (name, (a, c, _)) in &s.brokers {
                        let mut addrs = BTreeMap::new();
                        addrs.insert(0, a.clone());
                        ci.broker_addr_table.insert(name.clone(), BrokerData { cluster: c.clone(), broker_name: name.clone(), broker_addrs: addrs, zone_name: None, enable_acting_master: false });
                        ci.cluster_addr_table.entry(c.clone()).or_default().insert(name.clone());
                    }
                    Ok(Some(RemotingCommand::success().with_body(encode_body(&ci)?)))
                }
                _ => Ok(Some(RemotingCommand::success())),
            }
        }
    });
    let s = RemotingServer::builder().default_processor(Arc::new(p)).bind(addr).await.unwrap();
    eprintln!("dev namesrv on {}", s.local_addr());
    tokio::signal::ctrl_c().await.unwrap();
}
