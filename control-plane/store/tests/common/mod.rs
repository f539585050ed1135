//! Test helpers: store fixtures for both backends and watch reads; the real etcd server and
//! the bounded waits come from [`flotilla_intent_store::testing`].

#![allow(dead_code)]

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

#[allow(unused_imports)] // not every test binary waits
pub use flotilla_intent_store::testing::wait_until;
pub use flotilla_intent_store::testing::{EtcdServer, PATIENCE};
use flotilla_intent_store::{
    EmbeddedOptions, EmbeddedStore, IntentStore, StoreError, WatchEvent, WatchStream,
};
use futures::StreamExt;

/// A store under test plus whatever must live as long as it (temp dir, etcd process).
pub struct Fixture {
    pub store: Arc<dyn IntentStore>,
    _guard: Box<dyn Any + Send>,
}

/// A fresh embedded store in a temp dir.
pub async fn embedded() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("intent-store-")
        .tempdir()
        .expect("create temp dir");
    let store = EmbeddedStore::open(dir.path())
        .await
        .expect("open embedded store");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// Opens an embedded store in an existing directory.
pub async fn embedded_at(dir: &Path, options: EmbeddedOptions) -> Arc<dyn IntentStore> {
    Arc::new(
        EmbeddedStore::open_with(dir, options)
            .await
            .expect("open embedded store"),
    )
}

/// A fresh etcd store backed by its own real etcd server.
pub async fn etcd() -> Fixture {
    let server = EtcdServer::start().await;
    Fixture {
        store: server.store().await,
        _guard: Box::new(server),
    }
}

/// The next item of a watch, panicking if none arrives within [`PATIENCE`].
pub async fn next_item(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("timed out waiting for a watch event")
        .expect("watch stream ended")
}

/// The next event of a watch, which must not be an error.
pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    next_item(stream).await.expect("watch error")
}
