//! Token buckets kept in Redis, so a rate limit holds across nodes (see
//! [`crate::service::limits`]).
//!
//! One Lua script per check: it refills the bucket from Redis's own clock, takes the cost
//! if there is enough, and answers how long to wait otherwise. A bucket is a hash
//! `{prefix}:rate:{bucket}` with the tokens left and when they were counted; it expires
//! once it would be full again, so an idle client costs nothing.

use super::{Cluster, timed};

/// `KEYS[1]` the bucket; `ARGV[1]` capacity (= tokens per minute), `ARGV[2]` cost. Answers
/// 0 when the cost was taken, else the milliseconds until it could be.
const TAKE: &str = r#"
local capacity = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local per_ms = capacity / 60000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * per_ms)
end
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return wait
"#;

impl Cluster {
    /// Takes `cost` tokens from the shared bucket `bucket` holding `capacity` tokens and
    /// refilling `capacity` a minute. `Ok(0)` when taken, `Ok(ms)` the wait before it could
    /// be, `Err` when Redis did not answer in time.
    pub async fn take_tokens(&self, bucket: &str, capacity: u32, cost: u32) -> Result<u64, String> {
        let script = redis::Script::new(TAKE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.key(&format!("rate:{bucket}")))
            .arg(capacity)
            .arg(cost);
        let mut conn = self.conn();
        timed(invocation.invoke_async::<u64>(&mut conn)).await
    }
}
