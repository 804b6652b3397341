//! 5.6 sections: `[scheduled]` (scheduled messages), `[account]`
//! (account data) and `[retention]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduledConfig {
    /// Most scheduled messages one user may have pending (`invalid`
    /// beyond).
    pub max_per_user: u32,
    /// How often (ms) a node's scheduler looks for due messages besides
    /// waking at the next due time it knows: bounds how late a message
    /// scheduled on another node of a cluster is sent.
    pub poll_ms: u64,
}

impl Default for ScheduledConfig {
    fn default() -> Self {
        ScheduledConfig {
            max_per_user: 100,
            poll_ms: 1000,
        }
    }
}

impl ScheduledConfig {
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.max_per_user == 0 || self.max_per_user > 100_000 {
            return Err("scheduled.max_per_user must be 1 to 100000");
        }
        if self.poll_ms == 0 || self.poll_ms > 60_000 {
            return Err("scheduled.poll_ms must be 1 to 60000");
        }
        Ok(())
    }
}

/// 5.6 account data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// Most messages one export (`GET /v1/users/me/export`) holds, over
    /// all conversations (oldest conversations first; beyond it the
    /// export says `"truncated": true`). The zip is built in memory.
    pub export_max_messages: usize,
}

impl Default for AccountConfig {
    fn default() -> Self {
        AccountConfig {
            export_max_messages: 100_000,
        }
    }
}

impl AccountConfig {
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.export_max_messages == 0 || self.export_max_messages > 10_000_000 {
            return Err("account.export_max_messages must be 1 to 10000000");
        }
        Ok(())
    }
}

/// 5.6 retention: how long messages are kept, and the sweep that removes
/// expired ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a message is kept in conversations without a retention of
    /// their own; 0 keeps them forever.
    pub default_days: u32,
    /// How often (s) a node sweeps expired messages: at most a day, so
    /// that they leave within a day.
    pub sweep_secs: u64,
    /// Most conversations one round of the sweep looks at.
    pub sweep_convs: u32,
    /// Most messages one round removes (the next takes the rest).
    pub sweep_batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            default_days: 0,
            sweep_secs: 3600,
            sweep_convs: 1000,
            sweep_batch: 1000,
        }
    }
}

impl RetentionConfig {
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.default_days > tern_core::RETENTION_DAYS_MAX {
            return Err("retention.default_days must be 0 (keep forever) to 3650");
        }
        if self.sweep_secs == 0 || self.sweep_secs > 86_400 {
            return Err("retention.sweep_secs must be 1 to 86400");
        }
        if self.sweep_convs == 0 || self.sweep_convs > 1_000_000 {
            return Err("retention.sweep_convs must be 1 to 1000000");
        }
        if self.sweep_batch == 0 || self.sweep_batch > 100_000 {
            return Err("retention.sweep_batch must be 1 to 100000");
        }
        Ok(())
    }
}
