//! 5.5 offline push, the server's side: the providers of `[push]`
//! (`tern_push`) behind the core's `Pusher`. Who gets a push and when is
//! the core's (`tern_core::notifications`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tern_core::jobs::JobPolicy;
use tern_core::notifications::{PushConfig, PushFailure, PushNote, Pusher};
use tern_core::store::PushRegistration;
use tern_push::{Device, Notification, ProviderKind, Providers, PushError, WebPushKeys};

use crate::config::Config;

/// Sends through the configured providers.
struct ProviderPusher {
    providers: Providers,
}

/// The registration as `tern_push` names a device.
pub fn device_of(reg: &PushRegistration) -> Option<Device> {
    let provider = ProviderKind::parse(&reg.provider)?;
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Some(Device {
        user: reg.user.clone(),
        device: reg.device.clone(),
        provider,
        token: some(&reg.token),
        endpoint: some(&reg.endpoint),
        keys: (provider == ProviderKind::Webpush).then(|| WebPushKeys {
            p256dh: reg.p256dh.clone(),
            auth: reg.auth.clone(),
        }),
    })
}

#[async_trait]
impl Pusher for ProviderPusher {
    async fn send(&self, reg: &PushRegistration, note: &PushNote) -> Result<(), PushFailure> {
        let Some(device) = device_of(reg) else {
            return Err(PushFailure::Refused(format!(
                "unknown provider {}",
                reg.provider
            )));
        };
        let n = Notification {
            conv: note.conv.clone(),
            seq: note.seq,
            from: note.from.clone(),
            title: note.title.clone(),
            preview: note.preview.clone(),
            badge: note.badge,
        };
        self.providers.send(&device, &n).await.map_err(|e| match e {
            PushError::Gone(why) => PushFailure::Gone(why),
            PushError::Refused(why) => PushFailure::Refused(why),
            e @ PushError::Retry { .. } => PushFailure::Retry(e.to_string()),
        })
    }
}

/// The providers `[push]` configures (checked at start-up: an error names
/// the provider and what is wrong).
pub fn providers(cfg: &Config) -> anyhow::Result<Providers> {
    Providers::from_config(&cfg.push.providers())
        .map_err(|e| anyhow::anyhow!("push providers: {e}"))
}

/// The core's push settings; `None` when no provider is configured (then
/// nothing is written for push on the send path).
pub fn core_config(cfg: &Config, providers: &Providers) -> Option<PushConfig> {
    if providers.is_empty() {
        return None;
    }
    let p = &cfg.push;
    Some(PushConfig {
        pusher: Arc::new(ProviderPusher {
            providers: providers.clone(),
        }),
        providers: providers
            .kinds()
            .into_iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        preview: p.preview,
        max_devices: p.max_devices,
        delivery: JobPolicy {
            concurrency: p.concurrency,
            lease: Duration::from_millis(p.lease_ms),
            poll: Duration::from_millis(p.poll_ms),
            retry_base: Duration::from_millis(p.retry_base_ms),
            retry_max: Duration::from_millis(p.retry_max_ms),
            max_age: Duration::from_secs(p.max_age_secs),
        },
    })
}
