//! `flotilla-intent-store`: the control plane's intent store, with etcd's semantics.
//!
//! Intent (clusters, nodes, desired state, operations) and observed state live in a key-value
//! store with revisions, compare-and-swap transactions, prefix watches from a revision and
//! leases (principle 8 of `DESIGN.md`). This crate defines that interface once,
//! [`IntentStore`], and provides two backends:
//!
//! - [`EmbeddedStore`] (`--store embedded:<dir>`, the default): a redb file with a revision
//!   log, watch fan-out and lease expiry, for one machine;
//! - [`EtcdStore`] (`--etcd-endpoints a,b,c`): a real etcd cluster, for high availability.
//!
//! On top of the trait, [`election`] implements leader election whose key revision is the
//! control-plane epoch, and the fencing compare that guards every intent write with it;
//! [`keys`] builds the keys of the store layout; [`StoreSpec`] turns the command-line flags
//! into an `Arc<dyn IntentStore>`.
//!
//! ```no_run
//! # async fn demo() -> flotilla_intent_store::Result<()> {
//! use flotilla_intent_store::{keys, Op, StoreSpec, Txn};
//! let store = StoreSpec::parse("embedded:/var/lib/flotilla/store")?.open().await?;
//! let lease = store.lease_grant(10).await?;
//! let leader = store.campaign(keys::LEADER_ELECTION, b"cp-1".to_vec(), lease.id).await?;
//! let key = keys::cluster("prod")?;
//! store
//!     .txn(Txn::new().fenced_by(&leader).and_then([Op::put(key, b"...".to_vec())]))
//!     .await?
//!     .into_success()?;
//! # Ok(()) }
//! ```
//!
//! The conformance suite (`tests/conformance.rs`) runs the same checks against both backends,
//! the etcd one against a real `etcd` server started by the test; [`testing`] (feature
//! `testing`, for tests only) starts that server, for this crate's tests and the control
//! plane's.

pub mod election;
pub mod embedded;
pub mod error;
pub mod etcd;
pub mod keys;
pub mod spec;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use election::{Leader, LeaderKey};
pub use embedded::{EmbeddedOptions, EmbeddedStore, LeasesOnReopen};
pub use error::{Result, StoreError};
pub use etcd::EtcdStore;
pub use spec::StoreSpec;
pub use store::{IntentStore, WatchStream};
pub use types::{
    Compare, EventKind, KeyValue, Lease, LeaseId, LeaseInfo, Op, OpResponse, RangeRequest,
    RangeResponse, Txn, TxnResponse, WatchEvent,
};
