"""Can tap-shopify run against the Shopify simulator? One discovery run, as far as it gets.

    python bench/peers/shopify_probe.py [--venv-dir ~/.cache/pollerd-peers]

tap-shopify (pinned in `peers_tools.PINS`) builds `https://{shop}.myshopify.com` itself, so it
runs with the host-only shim in `myshopify_shim/` behind the TLS proxy (certificate for
`acme.myshopify.com`) in front of a `ShopSim`. Prints one JSON object: the tap's exit code and
wall time, the requests the simulator answered, and the tap's last error line. Measured
(see README.md): the tap stops at its first request, `GET /admin/api/2025-07/shop.json`
(`shopify.Shop.current()`), which ShopSim does not serve (404, five tries, exit 1), so no orders
are ever requested; and its orders bulk query asks for 101 `Order` fields ShopSim's schema lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_tls import TlsProxy, make_certificate
from peers_tools import DEFAULT_VENV_ROOT, PINS, ensure_venv

from pollerd_sim import ShopSim
from pollerd_sim.harness import SHOPIFY_TOKEN

SHIM = Path(__file__).resolve().parent / "myshopify_shim"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_ROOT)
    args = parser.parse_args()
    venv, install_s = ensure_venv("tap-shopify", args.venv_dir.expanduser())
    with tempfile.TemporaryDirectory(prefix="pollerd-peers-shopify-") as tmp:
        cert, key = make_certificate(Path(tmp) / "tls", ("acme.myshopify.com",))
        proxy = TlsProxy(cert, key)
        sim = ShopSim(access_token=SHOPIFY_TOKEN).start()
        proxy.start(sim.port)
        try:
            for _ in range(3):
                sim.create_order(financial="PENDING")
            config = Path(tmp) / "config.json"
            config.write_text(
                json.dumps(
                    {"shop": "acme", "access_token": SHOPIFY_TOKEN, "start_date": "2026-01-01"}
                )
            )
            env = dict(
                os.environ,
                PYTHONPATH=str(SHIM),
                PEERS_SHOPIFY_PORT=str(proxy.port),
                SSL_CERT_FILE=str(cert),
                REQUESTS_CA_BUNDLE=str(cert),
            )
            started = time.monotonic()
            proc = subprocess.run(
                [str(venv / "bin" / "tap-shopify"), "-c", str(config), "--discover"],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
            wall = round(time.monotonic() - started, 1)
            requests = [f"{e['path']} -> {e['status']}" for e in sim.request_log]
        finally:
            proxy.stop()
            sim.stop()
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    print(
        json.dumps(
            {
                "benchmark": "peers-shopify-probe",
                "tool": "tap-shopify",
                "version": PINS["tap-shopify"],
                "install_s": round(install_s, 1),
                "exit_code": proc.returncode,
                "wall_s": wall,
                "requests": requests,
                "last_error": lines[-1] if lines else "",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
