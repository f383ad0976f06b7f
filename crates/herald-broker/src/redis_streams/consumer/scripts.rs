//! The consumer's Lua scripts: moving due delayed messages back into the stream, settling one
//! delivery only while its consumer still holds it (ack, nack now, nack later), and releasing what
//! a consumer holds when it ends.

use std::sync::LazyLock;

use redis::Script;

/// Moves due entries of the delayed set `KEYS[2]` into the stream `KEYS[1]`, flagged as
/// redeliveries. `ARGV[1]`: most to move.
pub(super) const PROMOTE: &str = r"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, frame in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'm', frame, 'r', '1')
  redis.call('ZREM', KEYS[2], frame)
end
return #due
";

/// Whether consumer `ARGV[3]` of group `ARGV[1]` still holds entry `ARGV[2]` of stream `KEYS[1]`.
const HELD: &str = r"
local function held()
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  return #p == 1 and p[1][2] == ARGV[3]
end
";

/// Acks and deletes the entry if still held.
const ACK: &str = r"
if not held() then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
";

/// Makes the entry claimable at once if still held. `ARGV[4]`: the idle time to set.
const NACK_NOW: &str = r"
if not held() then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[4], 'JUSTID')
return 1
";

/// Moves the entry to the delayed set `KEYS[2]` if still held. `ARGV[4]`: delay in ms;
/// `ARGV[5]`: the frame.
const NACK_LATER: &str = r"
if not held() then return 0 end
local now = redis.call('TIME')
local due = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], due, ARGV[5])
return 1
";

/// The settle scripts, each with the `held` helper, made once; run by `EVALSHA` (loaded again by
/// the `redis` crate when Redis does not know them, after a restart).
pub(super) static ACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{HELD}{ACK}")));
pub(super) static NACK_NOW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{HELD}{NACK_NOW}")));
pub(super) static NACK_LATER_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{HELD}{NACK_LATER}")));
pub(super) static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// Makes claimable at once (idle `ARGV[5]`) up to `ARGV[4]` entries that consumer `ARGV[2]` of
/// group `ARGV[1]` holds in stream `KEYS[1]`, from id `ARGV[3]` on; the last id, or nil when
/// there were none. One script, so no entry another consumer claims in between is taken back.
const RELEASE: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], '+', tonumber(ARGV[4]), ARGV[2])
if #pending == 0 then return false end
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for _, entry in ipairs(pending) do claim[#claim + 1] = entry[1] end
claim[#claim + 1] = 'IDLE'
claim[#claim + 1] = ARGV[5]
claim[#claim + 1] = 'JUSTID'
redis.call(unpack(claim))
return pending[#pending][1]
";
