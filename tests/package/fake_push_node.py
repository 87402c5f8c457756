"""A stand-in push node for the package test.

Answers every POST /pub?id=<channel> with 200 (stored) and appends
"<path> <body>" to the log file named on the command line, so the test can
count what the glue delivered without needing nginx in the container.
GET /channels-stats?id=ALL answers as push-stream does, with two readers on
the channel `pkgtest`, for `realtime-glue readers`.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Publisher(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[1], "ab") as log:
            log.write(self.path.encode() + b" " + body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        body = (
            b'{"hostname": "package-test", "time": "2026-01-01T00:00:00", "channels": 1,'
            b' "wildcard_channels": 0, "uptime": 1, "infos": [\r\n'
            b'{"channel": "pkgtest", "published_messages": 1, "stored_messages": 1, "subscribers": 2}'
            b"\r\n]}\r\n"
        )
        if self.path != "/channels-stats?id=ALL":
            self.send_response(404)
            body = b""
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 8080), Publisher).serve_forever()
