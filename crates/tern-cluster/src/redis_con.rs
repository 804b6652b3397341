//! One connection to Redis, a single server or a Redis Cluster, as presence
//! and the limiter use it.
//!
//! `cluster.redis_url` names one server (`redis://host:port`) or, comma
//! separated, the seed nodes of a Redis Cluster. In a Redis Cluster every
//! key carries the cluster name as a hash tag (`{tern}:nodes`,
//! `{tern}:r:ann`), so that the keys a script touches (a user's routes,
//! the node set, the generations, the leases it names) lie in one slot; a
//! single server keeps the plain names (`tern:nodes`).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;
use tern_core::bus::{PlumbingError, PlumbingResult};

#[derive(Clone)]
pub(crate) enum RedisCon {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisCon {
    /// Connects within about `timeout`; calls are bounded by it too.
    pub(crate) async fn open(url: &str, timeout: Duration) -> PlumbingResult<RedisCon> {
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let unavailable = |e| PlumbingError::unavailable("redis", e);
        if urls.len() > 1 {
            let client = ClusterClient::builder(urls)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // Quick retries within a call's bound: a redirect after a
                // failover is followed as soon as the slots are refreshed.
                .retries(5)
                .min_retry_wait(20)
                .max_retry_wait(400)
                .build()
                .map_err(unavailable)?;
            let con = tokio::time::timeout(timeout * 2, client.get_async_connection())
                .await
                .map_err(|e| PlumbingError::unavailable("redis", e))?
                .map_err(unavailable)?;
            return Ok(RedisCon::Cluster(con));
        }
        let client = redis::Client::open(url).map_err(unavailable)?;
        // Few quick reconnect attempts: a caller waits at most about the
        // timeouts, and the next call triggers another attempt anyway.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let con = tokio::time::timeout(
            timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|e| PlumbingError::unavailable("redis", e))?
        .map_err(unavailable)?;
        Ok(RedisCon::Single(con))
    }

    /// Where this connection's keys start: `prefix`, or `{prefix}` in a
    /// Redis Cluster (see the module comment).
    pub(crate) fn key_prefix(&self, prefix: &str) -> String {
        match self {
            RedisCon::Single(_) => prefix.to_owned(),
            RedisCon::Cluster(_) => format!("{{{prefix}}}"),
        }
    }
}

impl ConnectionLike for RedisCon {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisCon::Single(c) => c.req_packed_command(cmd),
            RedisCon::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisCon::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisCon::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisCon::Single(c) => c.get_db(),
            RedisCon::Cluster(c) => c.get_db(),
        }
    }
}

/// A Lua script run by its hash (`EVALSHA`) and, where the server does not
/// know it yet, by its text (`EVAL`), which also caches it there. Never
/// `SCRIPT LOAD`: a Redis Cluster sends that to every master, and one
/// master that is down (or a replica just promoted, whose cache is empty)
/// would fail the call; `EVAL` goes to the one master of the keys' slot.
#[derive(Clone)]
pub(crate) struct Lua {
    code: String,
    hash: String,
}

impl Lua {
    pub(crate) fn new(code: &str) -> Lua {
        let hash = redis::Script::new(code).get_hash().to_owned();
        Lua {
            code: code.to_owned(),
            hash,
        }
    }

    pub(crate) fn prepare_invoke(&self) -> LuaCall<'_> {
        LuaCall {
            lua: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(crate) fn key<T: redis::ToRedisArgs>(&self, key: T) -> LuaCall<'_> {
        let mut call = self.prepare_invoke();
        call.key(key);
        call
    }
}

/// One call of a [`Lua`] script: its keys and arguments.
pub(crate) struct LuaCall<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl LuaCall<'_> {
    pub(crate) fn key<T: redis::ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub(crate) fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn cmd(&self, name: &str, script: &str) -> Cmd {
        let mut c = redis::cmd(name);
        c.arg(script).arg(self.keys.len());
        for k in &self.keys {
            c.arg(k.as_slice());
        }
        for a in &self.args {
            c.arg(a.as_slice());
        }
        c
    }

    pub(crate) async fn invoke_async<T: redis::FromRedisValue>(
        &self,
        con: &mut RedisCon,
    ) -> redis::RedisResult<T> {
        match self.cmd("EVALSHA", &self.lua.hash).query_async(con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.cmd("EVAL", &self.lua.code).query_async(con).await
            }
            r => r,
        }
    }
}
