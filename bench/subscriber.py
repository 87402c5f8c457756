"""An EventSource subscriber that records how late each message arrives.

    python bench/subscriber.py HOST PORT CHANNEL COUNT TIMEOUT OUT.json

Connects to /ev/CHANNEL, prints "connected", then reads events until COUNT
arrived or nothing came for TIMEOUT seconds. Each event's body is the format
stage's JSON; its data carries `sent` (time.time() at enqueue) and `n`. Writes
{"latencies_ms": [...], "received": n, "arrivals": [[n, sent, received], ...]}
to OUT.json.
"""

from __future__ import annotations

import http.client
import json
import sys
import time


def main(host: str, port: int, channel: str, count: int, timeout: float, out: str) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.request("GET", f"/ev/{channel}", headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"subscriber: /ev/{channel} answered HTTP {response.status}")
    print("connected", flush=True)
    latencies = []
    arrivals = []
    data_lines: list[bytes] = []
    try:
        while len(latencies) < count:
            line = response.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                data_lines.append(line[5:].strip())
            elif line in (b"\n", b"\r\n") and data_lines:
                received = time.time()
                body = json.loads(b"\n".join(data_lines))
                data_lines = []
                latencies.append((received - body["data"]["sent"]) * 1000)
                arrivals.append([body["data"].get("n"), body["data"]["sent"], received])
    except TimeoutError:
        pass
    conn.close()
    with open(out, "w") as handle:
        json.dump({"latencies_ms": latencies, "received": len(latencies), "arrivals": arrivals}, handle)


if __name__ == "__main__":
    h, p, ch, n, t, path = sys.argv[1:7]
    main(h, int(p), ch, int(n), float(t), path)
