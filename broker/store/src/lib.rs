//! Flotilla's message store: RocketMQ-compatible CommitLog, ConsumeQueues and key index on
//! memory-mapped files, with SYNC/ASYNC flushing, crash recovery, retention and the broker's
//! metadata files.
//!
//! The broker talks to [`MessageStore`]; the on-disk layout follows RocketMQ
//! (`research/protocol.md` §3) so records can be served and replicated byte for byte.
//!
//! | module | job |
//! |---|---|
//! | [`codec`] | stored-record layout, message ids, tag hash codes, properties |
//! | `mmap` | the only `unsafe`: fixed-size mapped segment files |
//! | `file_queue` | contiguous sequences of segments named by start offset |
//! | `commitlog` | append/read/scan of the CommitLog |
//! | `consume_queue` | per-queue 20-byte entries, time search |
//! | `index` | lookup by KEYS / UNIQ_KEY |
//! | `flush` | ASYNC flusher and SYNC group commit |
//! | `warmup` | background pre-faulting of CommitLog pages ahead of the writer |
//! | [`checkpoint`] | checkpoint, abort, lock and FORMAT files |
//! | `recovery` | start-up validation, truncation, re-dispatch |
//! | `retention` | file deletion and disk-full protection |
//! | [`metadata`] | `topics.json`, `subscriptionGroup.json`, `consumerOffset.json` |

pub mod checkpoint;
pub mod codec;
mod commitlog;
pub mod config;
mod consume_queue;
pub mod error;
mod file_queue;
mod flush;
mod index;
pub mod message;
pub mod metadata;
mod mmap;
mod recovery;
mod retention;
mod store;
mod warmup;

pub use checkpoint::FORMAT_VERSION;
pub use config::{Clock, DiskUsageProbe, FlushDiskType, FsDiskUsage, StoreConfig, SystemClock};
pub use consume_queue::{Boundary, CQ_ENTRY_SIZE};
pub use error::StoreError;
pub use message::{
    AppendResult, Arrival, GetMessageResult, GetStatus, MessageInner, PutResult, PutStatus,
    RecordPosition,
};
pub use mmap::MmapError;
pub use retention::RetentionReport;
pub use store::{MAX_TOPIC_LEN, MessageStore, valid_topic};
