"""Token usage and its cost, counted per scope and thread."""
import threading
import time

from backend.engines.usage import Prices, UsageMeter


def test_usage_scopes_count_only_their_own_thread():
    meter = UsageMeter(Prices(per_1k_prompt=1.0, per_1k_completion=2.0))
    seen = {}

    def task(name, n):
        with meter.scope() as usage:
            for _ in range(n):
                meter.record(100, 1)
                time.sleep(0.001)
        seen[name] = usage

    threads = [threading.Thread(target=task, args=(i, i + 1)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [seen[i].requests for i in range(4)] == [1, 2, 3, 4]
    assert meter.total().prompt_tokens == 1000
    assert meter.to_dict(seen[0]) == {"prompt_tokens": 100, "completion_tokens": 1, "requests": 1, "cost": 0.102}
