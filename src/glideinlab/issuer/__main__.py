"""``python3 -m glideinlab.issuer --config issuer.yaml``: serve the issuer's discovery and keys."""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from ..config import load_yaml, require
from ..errors import ConfigError
from ..protocol import scitoken

log = logging.getLogger("glideinlab.issuer")


def documents(config: dict, where: str) -> dict[str, bytes]:
    """Path -> JSON body for every document the issuer serves."""
    issuer = require(config, "issuer", where, "issuer")
    key_file = Path(require(config, "key_file", where, "key_file"))
    kid = require(config, "key_id", where, "key_id")
    try:
        pem = key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(where, "key_file", f"cannot read {key_file}: {exc.strerror}") from None
    base = urlsplit(issuer).path.rstrip("/")
    discovery = scitoken.openid_configuration(issuer)
    jwks_path = urlsplit(discovery["jwks_uri"]).path
    return {
        f"{base}/.well-known/openid-configuration": json.dumps(discovery).encode(),
        jwks_path: json.dumps(scitoken.jwks(pem, kid)).encode(),
    }


def serve(config: dict, where: str) -> None:
    docs = documents(config, where)
    host, _, port = require(config, "listen", where, "listen").rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 with Content-Length: libcurl (inside libscitokens) treats a TLS stream that ends
        # without close_notify as an error, so the body must not be delimited by closing the socket.
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (http.server API)
            body = docs.get(self.path.split("?")[0])
            payload = body or b'{"error": "not found"}'
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, fmt, *args):
            log.info("%s %s", self.address_string(), fmt % args)

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(require(config, "cert_file", where, "cert_file"),
                        require(config, "cert_key_file", where, "cert_key_file"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    log.info("serving %s on %s", ", ".join(docs), config["listen"])
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glideinlab.issuer", description=__doc__)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(load_yaml(args.config), args.config)
    except ConfigError as err:
        print(f"glideinlab.issuer: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
