"""Host redirect for tap-shopify, and nothing else: it builds `https://{shop}.myshopify.com`
URLs itself (ShopifyAPI's session and, hard-coded, its bulk-query submit), so on loopback every
`*.myshopify.com` lookup resolves to 127.0.0.1 at the TLS proxy's port. The tap's logic, URLs,
headers and TLS checks are untouched (the proxy's certificate names `<shop>.myshopify.com`).

Loaded only into the tap's own interpreter, through PYTHONPATH, by bench/peers/shopify_probe.py.
"""

import os
import socket

_real_getaddrinfo = socket.getaddrinfo
_PORT = int(os.environ["PEERS_SHOPIFY_PORT"])


def _getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
    if isinstance(host, str) and host.endswith(".myshopify.com"):
        return _real_getaddrinfo("127.0.0.1", _PORT, *args, **kwargs)
    return _real_getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
