//! [`tern_core::Limiter`] on Redis: every node of a cluster shares the
//! same buckets, so a limit reached through one node holds on all.
//!
//! One key per bucket, `{prefix}:rl:{key}`, a string holding the bucket's
//! theoretical arrival time (µs, Redis clock), written with `PX` set to the
//! time the bucket takes to refill: a key left alone expires as soon as it
//! would hold a full bucket, so nothing is left behind. A hit or check is
//! one script (atomic, one round trip) running GCRA as
//! [`tern_core::limits::gcra`] does.

use crate::redis_con::{Lua, RedisCon};
use async_trait::async_trait;

use std::time::Duration;
use tern_core::bus::{PlumbingError, PlumbingResult};
use tern_core::limits::{Decision, Limiter, Rule};

const CALL_TIMEOUT: Duration = Duration::from_millis(2000);

/// KEYS[1] bucket; ARGV interval µs, burst, take (1), check (0) or
/// refund (-1).
/// Returns {allowed 0/1, retry after µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if ARGV[3] == '-1' then
  local back = tonumber(redis.call('GET', KEYS[1]) or now) - interval
  if back <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000))
  end
  return {1, 0}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
if ARGV[3] == '1' then
  local ttl = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
end
return {1, 0}
";

#[derive(Clone)]
pub struct RedisLimiter {
    con: RedisCon,
    prefix: String,
    script: Lua,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> PlumbingError {
    PlumbingError::unavailable("redis", e)
}

impl RedisLimiter {
    /// Buckets under `{prefix}:rl:` (the prefix is the cluster's name).
    pub async fn connect(url: &str, prefix: &str) -> PlumbingResult<RedisLimiter> {
        let con = RedisCon::open(url, CALL_TIMEOUT).await?;
        Ok(RedisLimiter {
            prefix: con.key_prefix(prefix),
            con,
            script: Lua::new(GCRA),
        })
    }

    async fn run(&self, key: &str, rule: Rule, op: i8) -> PlumbingResult<Decision> {
        let interval = (rule.interval.as_micros() as u64).max(1);
        let mut con = self.con.clone();
        let mut inv = self.script.key(format!("{}:rl:{key}", self.prefix));
        inv.arg(interval).arg(rule.burst).arg(op);
        let (allowed, retry_us): (i64, i64) =
            tokio::time::timeout(CALL_TIMEOUT * 2, inv.invoke_async(&mut con))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        Ok(if allowed == 1 {
            Decision::ALLOW
        } else {
            Decision::refuse(Duration::from_micros(retry_us.max(1) as u64))
        })
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn hit(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
        self.run(key, rule, 1).await
    }

    async fn check(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
        self.run(key, rule, 0).await
    }

    async fn refund(&self, key: &str, rule: Rule) -> PlumbingResult<()> {
        self.run(key, rule, -1).await.map(|_| ())
    }

    async fn health(&self) -> PlumbingResult<()> {
        let mut con = self.con.clone();
        tokio::time::timeout(
            CALL_TIMEOUT * 2,
            redis::cmd("PING").query_async::<String>(&mut con),
        )
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(())
    }
}
