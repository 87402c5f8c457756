"""A stand-in push node for the package test.

Answers every POST /pub?id=<channel> with 200 (stored) and appends
"<path> <body>" to the log file named on the command line, so the test can
count what the glue delivered without needing nginx in the container.
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

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 80), Publisher).serve_forever()
