"""`make lint-nginx`: nginx -t on nginx/push-stream.conf in both flavours.

Each flavour is rendered twice: with the role's production defaults (only the
files nginx writes moved into a temporary prefix, and the module taken from
build/) and as the integration tests' loopback node. The push_stream flavour
needs the module built by `make push-stream-module` (PUSH_STREAM_SRC set).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.push_node import BUILT_MODULE, NGINX, PushNode, render_config


def check_defaults(flavour: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"lint-nginx-{flavour}-") as tmp:
        prefix = Path(tmp)
        (prefix / "tmp").mkdir()
        config = prefix / "nginx.conf"
        config.write_text(
            render_config(
                {
                    "push_stream_flavour": flavour,
                    "push_stream_module_path": str(BUILT_MODULE),
                    "push_stream_pid_path": str(prefix / "nginx.pid"),
                    "push_stream_error_log": str(prefix / "error.log"),
                    "push_stream_temp_path": str(prefix / "tmp"),
                }
            )
        )
        subprocess.run([NGINX, "-t", "-q", "-p", tmp, "-c", str(config)], check=True)


def main() -> int:
    flavours = ["nchan"]
    if BUILT_MODULE.exists():
        flavours.insert(0, "push_stream")
    else:
        print(
            f"lint-nginx: {BUILT_MODULE} not built (PUSH_STREAM_SRC unset): push_stream flavour not checked"
        )
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
