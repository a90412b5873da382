"""Per-project budgets in fixed time windows, counted in Redis so every web process shares them.

What one request can start is bounded elsewhere (ids per event, tasks per request); these bound
how much a stream of requests can start: forced refinement jobs and pre-annotated tasks."""
from __future__ import annotations

import redis

from .redis import key

# Adds ARGV[1] to the window's count unless that passes the limit ARGV[2]; the window (ARGV[3] s)
# starts with its first use. Returns -1 when taken, else the seconds left in the window.
_TAKE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if n > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return math.max(redis.call('TTL', KEYS[1]), 1)
end
return -1
"""


def take(conn: redis.Redis, name: str, project: int, amount: int, limit: int, window_s: int) -> int | None:
    """None when `amount` fits in this window's budget (and is counted), else the seconds to wait."""
    wait = int(conn.eval(_TAKE, 1, key("project", project, "budget", name), amount, limit, window_s))
    return None if wait < 0 else wait
