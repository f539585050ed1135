//! Fenced writes: every intent write goes through [`Writer::txn`], which guards it with the
//! leader's epoch (a compare on the leader key's create revision, principle 4).
//!
//! A replica that is not the leader gets [`WriteError::NotLeader`] without touching the store;
//! one that *believes* it leads but was deposed (stale view) fails the fence compare, steps
//! down and gets the same error. Callers' own compares failing is a [`WriteError::Conflict`]
//! carrying the failure branch's responses, so they can tell "already exists" from "stale
//! etag".

use std::sync::Arc;

use flotilla_intent_store::{IntentStore, Op, OpResponse, StoreError, Txn, TxnResponse};

use crate::errors::ApiError;
use crate::leader::LeaderHandle;

/// Why a fenced write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This replica is not the leader (or found out it was deposed).
    #[error("not the leader")]
    NotLeader,
    /// The caller's compares failed; `responses` are the failure branch's results (the
    /// caller's own ops only).
    #[error("transaction compares failed")]
    Conflict {
        /// Failure-branch responses, in the caller's order.
        responses: Vec<OpResponse>,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl WriteError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::NotLeader => "NOT_LEADER",
            WriteError::Conflict { .. } => "TXN_CONFLICT",
            WriteError::Store(e) => e.code(),
        }
    }
}

/// Writes guarded by the leader's epoch.
#[derive(Clone)]
pub struct Writer {
    store: Arc<dyn IntentStore>,
    leader: LeaderHandle,
}

impl Writer {
    /// A writer over `store` fenced by `leader`.
    pub fn new(store: Arc<dyn IntentStore>, leader: LeaderHandle) -> Self {
        Self { store, leader }
    }

    /// The store (for reads).
    pub fn store(&self) -> &Arc<dyn IntentStore> {
        &self.store
    }

    /// The leadership handle.
    pub fn leader(&self) -> &LeaderHandle {
        &self.leader
    }

    /// Runs `txn` fenced by the current epoch; `Ok` only when it committed.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, WriteError> {
        let Some(key) = self.leader.current() else {
            return Err(WriteError::NotLeader);
        };
        let caller_failure_ops = txn.failure.len();
        let txn = txn.fenced_by(&key).or_else([Op::get(key.key.clone())]);
        let resp = self.store.txn(txn).await?;
        if resp.succeeded {
            return Ok(resp);
        }
        let fence_holds = matches!(
            resp.responses.get(caller_failure_ops),
            Some(OpResponse::Get(Some(kv))) if kv.create_revision == key.revision
        );
        if !fence_holds {
            self.leader
                .step_down("fenced write found the leader key gone");
            return Err(WriteError::NotLeader);
        }
        let mut responses = resp.responses;
        responses.truncate(caller_failure_ops);
        Err(WriteError::Conflict { responses })
    }

    /// Maps a write error to an API error (NOT_LEADER names the leader).
    pub async fn api_error(&self, e: WriteError, what: &str) -> ApiError {
        match e {
            WriteError::NotLeader => ApiError::NotLeader {
                leader: self.leader.leader_name().await,
            },
            WriteError::Conflict { .. } => ApiError::ConcurrentModification(what.to_string()),
            WriteError::Store(e) => ApiError::Store(e),
        }
    }

    /// NOT_LEADER unless this replica currently leads.
    pub async fn require_leader(&self) -> Result<i64, ApiError> {
        match self.leader.epoch() {
            Some(e) => Ok(e),
            None => Err(ApiError::NotLeader {
                leader: self.leader.leader_name().await,
            }),
        }
    }
}
