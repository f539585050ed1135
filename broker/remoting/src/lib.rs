//! The RocketMQ remoting protocol, shared by the Flotilla broker, nameserver, agent and
//! `flotilla bench`.
//!
//! - [`codec`]: the frame codec (JSON and ROCKETMQ headers, 16 MiB cap, no panics on input);
//! - [`command`]: [`RemotingCommand`] and typed `extFields` accessors;
//! - [`lenient`]: Java's decoding leniency (booleans, numbers, enum names and ordinals) for
//!   headers and bodies, shared by broker and nameserver;
//! - [`code`]: request/response codes, permissions, languages, versions;
//! - [`protocol`] and [`fastjson`]: bodies with RocketMQ's JSON names, and a reader/writer
//!   for fastjson's non-standard map keys;
//! - [`channel`], [`client`], [`server`], [`processor`]: the transport — a pooled client with
//!   opaque matching and timeouts, and a server dispatching by code to
//!   [`RequestProcessor`]s, both able to carry requests in either direction; a server
//!   [`RequestHook`] checks every request first (ACL);
//! - [`signing`]: ACL 1.0 signatures (`AccessKey`, `Signature`), made by the client when it
//!   has [`SessionCredentials`] and checked by `flotilla-acl`.

pub mod channel;
pub mod client;
pub mod code;
pub mod codec;
pub mod command;
pub mod error;
pub mod fastjson;
pub mod lenient;
pub mod names;
pub mod processor;
pub mod protocol;
pub mod server;
pub mod signing;

pub use channel::{Channel, ChannelConfig};
pub use client::{ClientConfig, RemotingClient};
pub use code::{LanguageCode, perm, request_code, response_code, version};
pub use codec::{CodecError, RemotingCodec};
pub use command::{HeaderError, RemotingCommand, SerializeType};
pub use error::RemotingError;
pub use fastjson::FastJsonError;
pub use processor::{
    ProcessError, ProcessResult, RequestHook, RequestProcessor, RpcObserver, RpcResult, RpcSample,
    mark_long_polling, processor_fn,
};
pub use server::{RemotingServer, ServerBuilder, ServerConfig};
pub use signing::SessionCredentials;
