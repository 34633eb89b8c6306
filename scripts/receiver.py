#!/usr/bin/env python3
"""A webhook receiver to copy and start from: verifies each EHRS delivery with the
`standardwebhooks` package and prints one line per event.

    pip install standardwebhooks==1.3.0
    WEBHOOK_SECRET=whsec_... PORT=9000 python3 scripts/receiver.py

Why threaded, and why HTTP/1.1: the engine sends a subscription's deliveries over
several connections at once and keeps them alive between deliveries. A single-threaded
server (Python's plain `HTTPServer`) serves one connection until the client closes it,
so the others wait, time out, and the subscription is paused after five failures in a
row. `ThreadingHTTPServer` serves each connection on its own thread; HTTP/1.1 with a
Content-Length on every answer lets a connection carry the next delivery. Answer fast
(2xx within the webhook timeout) and do slow work afterwards.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ.get("WEBHOOK_SECRET", "")
PORT = int(os.environ.get("PORT", "9000"))


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    webhook = Webhook(SECRET) if SECRET else None

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            self.webhook.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except (WebhookVerificationError, ValueError) as err:
            self.answer(400, f"signature not verified: {err}\n".encode())
            print(f"refused  {self.headers.get('webhook-id')}: {err}", flush=True)
            return
        event = json.loads(body)
        print(f"verified {event.get('type')} sequence={event.get('sequence')} "
              f"id={self.headers.get('webhook-id')}", flush=True)
        self.answer(204, b"")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # one line per event is printed above; no access log


def main():
    if not SECRET.startswith("whsec_"):
        sys.exit("set WEBHOOK_SECRET to the subscription's secret (whsec_...)")
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Receiver)
    print(f"receiving on http://127.0.0.1:{PORT}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
