"""`make lint-nginx`: nginx -t on nginx/push-stream.conf in both flavours.

Each flavour is rendered twice: with the role's production defaults (only the
files nginx writes moved into a temporary prefix) and as the integration tests'
loopback node. Both modules are loaded from their Debian packages: push_stream
needs `make push-stream-module`, nchan `make deps`; a missing one fails the lint.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.push_node import MODULES, NGINX, NJS_DIR, PushNode, missing_module, render_config, render_key_set


def check_defaults(flavour: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"lint-nginx-{flavour}-") as tmp:
        prefix = Path(tmp)
        (prefix / "tmp").mkdir()
        config = prefix / "nginx.conf"
        # The files the role installs beside the config: the njs check and the key set.
        keys = prefix / "subscribe-keys.json"
        keys.write_text(render_key_set())
        config.write_text(
            render_config(
                {
                    "push_stream_flavour": flavour,
                    "push_stream_module_path": str(MODULES["push_stream"]),
                    "push_stream_nchan_module_path": str(MODULES["nchan"]),
                    "push_stream_pid_path": str(prefix / "nginx.pid"),
                    "push_stream_error_log": str(prefix / "error.log"),
                    "push_stream_temp_path": str(prefix / "tmp"),
                    "push_stream_njs_dir": str(NJS_DIR),
                    "push_stream_subscribe_keys_path": str(keys),
                }
            )
        )
        subprocess.run([NGINX, "-t", "-q", "-p", tmp, "-c", str(config)], check=True)


def main() -> int:
    flavours = ["push_stream", "nchan"]
    missing = [why for flavour in flavours if (why := missing_module(flavour))]
    if missing:
        print("lint-nginx: " + "; ".join(missing), file=sys.stderr)
        return 1
    for flavour in flavours:
        check_defaults(flavour)
        node = PushNode(flavour)
        try:
            node.check_config()
        finally:
            node.cleanup()
        print(
            f"lint-nginx: nginx -t ok: nginx/push-stream.conf, flavour {flavour}"
            " (role defaults and test node)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
