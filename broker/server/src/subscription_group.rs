//! Consumer group configs (`config/subscriptionGroup.json`): retry policy, consume enable,
//! auto-creation on first heartbeat or pull.
//!
//! The send-back path reads `retryQueueNums`/`retryMaxTimes` from here, pulls check
//! `consumeEnable`, and admin tools create, list and delete groups. Changes are persisted
//! atomically before they are acknowledged.

use std::path::PathBuf;

use flotilla_message_store::metadata::{self, SubscriptionGroupConfig, SubscriptionGroupTable};
use parking_lot::RwLock;

use crate::topic_config::now_ms;

/// Group table failures.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The table could not be persisted.
    #[error("cannot persist subscriptionGroup.json: {0}")]
    Persist(#[from] metadata::MetadataError),
}

impl GroupError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Persist(_) => "GROUP_PERSIST_FAILED",
        }
    }
}

/// Owns the subscription group table.
pub struct SubscriptionGroupManager {
    path: PathBuf,
    table: RwLock<SubscriptionGroupTable>,
}

impl SubscriptionGroupManager {
    /// Loads the table under `root` (empty when absent).
    pub fn load(root: &std::path::Path) -> Result<Self, GroupError> {
        let path = metadata::subscription_groups_path(root);
        let table = metadata::load_json::<SubscriptionGroupTable>(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            table: RwLock::new(table),
        })
    }

    /// One group's config.
    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.table
            .read()
            .subscription_group_table
            .get(group)
            .cloned()
    }

    /// The group's config, creating it with defaults when `auto_create` allows.
    pub fn get_or_create(
        &self,
        group: &str,
        auto_create: bool,
    ) -> Result<Option<SubscriptionGroupConfig>, GroupError> {
        if let Some(g) = self.get(group) {
            return Ok(Some(g));
        }
        if !auto_create {
            return Ok(None);
        }
        if let Err(e) = flotilla_remoting::names::check_group(group) {
            // Never auto-create a group RocketMQ could not name: treated as not existing.
            tracing::warn!(error = %e, "subscription group not auto-created");
            return Ok(None);
        }
        let cfg = SubscriptionGroupConfig::new(group);
        let mut t = self.table.write();
        if let Some(g) = t.subscription_group_table.get(group) {
            return Ok(Some(g.clone()));
        }
        t.subscription_group_table
            .insert(group.to_string(), cfg.clone());
        t.data_version.next_version(now_ms());
        metadata::save_json(&self.path, &*t)?;
        tracing::info!(group, "subscription group auto-created");
        Ok(Some(cfg))
    }

    /// Creates or replaces a group.
    pub fn upsert(&self, cfg: SubscriptionGroupConfig) -> Result<(), GroupError> {
        let mut t = self.table.write();
        t.subscription_group_table
            .insert(cfg.group_name.clone(), cfg);
        t.data_version.next_version(now_ms());
        metadata::save_json(&self.path, &*t)?;
        Ok(())
    }

    /// Deletes a group; returns whether it existed.
    pub fn delete(&self, group: &str) -> Result<bool, GroupError> {
        let mut t = self.table.write();
        let existed = t.subscription_group_table.remove(group).is_some();
        t.forbidden_table.remove(group);
        if existed {
            t.data_version.next_version(now_ms());
            metadata::save_json(&self.path, &*t)?;
        }
        Ok(existed)
    }

    /// A snapshot of the table.
    pub fn snapshot(&self) -> SubscriptionGroupTable {
        self.table.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_create_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let m = SubscriptionGroupManager::load(dir.path()).unwrap();
        assert!(m.get_or_create("g", false).unwrap().is_none());
        let g = m.get_or_create("g", true).unwrap().unwrap();
        assert_eq!(g.retry_max_times, 16);
        let again = SubscriptionGroupManager::load(dir.path()).unwrap();
        assert!(again.get("g").is_some());
        assert!(again.delete("g").unwrap());
        assert!(!again.delete("g").unwrap());
    }
}
