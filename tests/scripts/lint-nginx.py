"""`make lint-nginx`: nginx -t on nginx/push-stream.conf in both flavours, with and
without HTTPS, and no warning allowed.

Each flavour is rendered as the role renders it by default (plain HTTP only), as a
node with HTTPS from operator files (a throwaway certificate), as an ACME node
before its first certificate (plain listener with the challenge webroot) and
after, and as the integration tests' loopback node. Only the files nginx writes
(and the certificate) move into a temporary prefix. Both modules are loaded from
their Debian packages: push_stream needs `make nginx-modules`, nchan
`make deps`; a missing one fails the lint.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.push_node import (
    MODULES,
    NGINX,
    PushNode,
    installed_nginx_version,
    missing_module,
    render_config,
    render_key_set,
)
from support.tls import TestCA

LINT_KEYS = [
    {"id": "app-1", "secret": "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="},
    {
        "id": "firehose.acme",
        "secret": "EyIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=",
        "channels": ["firehose-acme"],
    },
]


def variants(prefix: Path) -> dict[str, dict]:
    certificate = TestCA.create(prefix / "ca").issue(["push.example"])
    served = {
        "push_stream_tls_certificate_path": str(certificate.certificate_path),
        "push_stream_tls_key_path": str(certificate.key_path),
    }
    return {
        "role defaults": {},
        "https from files, web push, cluster over https": {
            "push_stream_tls_mode": "files",
            "push_stream_webpush_upstream": "127.0.0.1:8099",
            "push_stream_cluster_tls": True,
            **served,
        },
        "acme, no certificate yet": {
            "push_stream_tls_mode": "acme",
            "push_stream_tls_serving": False,
            "push_stream_tls_acme_webroot": str(prefix / "acme"),
        },
        "acme": {
            "push_stream_tls_mode": "acme",
            "push_stream_tls_acme_webroot": str(prefix / "acme"),
            **served,
        },
    }


def check(flavour: str, name: str, overrides: dict, prefix: Path) -> None:
    (prefix / "tmp").mkdir(exist_ok=True)
    config = prefix / "nginx.conf"
    # The file the role installs beside the config: the key set (one unscoped key, one
    # scoped to a firehose channel).
    keys = prefix / "subscribe-keys.conf"
    keys.write_text(render_key_set({"push_stream_subscribe_keys": LINT_KEYS}))
    config.write_text(
        render_config(
            {
                "push_stream_flavour": flavour,
                "push_stream_module_path": str(MODULES["push_stream"]),
                "push_stream_nchan_module_path": str(MODULES["nchan"]),
                "push_stream_nginx_version": installed_nginx_version(),
                "push_stream_pid_path": str(prefix / "nginx.pid"),
                "push_stream_error_log": str(prefix / "error.log"),
                "push_stream_temp_path": str(prefix / "tmp"),
                "push_stream_subscribe_keys_path": str(keys),
                **overrides,
            }
        )
    )
    done = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(prefix), "-c", str(config)], capture_output=True, text=True
    )
    if done.returncode != 0 or "[warn]" in done.stderr:
        raise SystemExit(f"lint-nginx: flavour {flavour}, {name}:\n{done.stderr}")


def main() -> int:
    flavours = ["push_stream", "nchan"]
    missing = [why for flavour in flavours if (why := missing_module(flavour))]
    if missing:
        print("lint-nginx: " + "; ".join(missing), file=sys.stderr)
        return 1
    for flavour in flavours:
        with tempfile.TemporaryDirectory(prefix=f"lint-nginx-{flavour}-") as tmp:
            checked = variants(Path(tmp))
            for name, overrides in checked.items():
                check(flavour, name, overrides, Path(tmp))
        node = PushNode(flavour)
        try:
            node.check_config()
        finally:
            node.cleanup()
        print(
            f"lint-nginx: nginx -t ok, no warnings: nginx/push-stream.conf, flavour {flavour}"
            f" ({', '.join(checked)}; test node)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
