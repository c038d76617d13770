"""pollerd's own HTTP listeners, each on its own address and in its own style:

- `scrape`: `/metrics` and `/healthz` on `[pollerd] metrics_listen`, a stdlib WSGI server in a
  daemon thread (a hung event loop still answers `/healthz`, with 503).
- `unsubscribe`: one-click unsubscribe on `[pollerd] listen` (reached as `public_url`), an
  asyncio server on the daemon's loop.

They stay apart on purpose: `metrics_listen` is meant for loopback or a private network, while
`listen` is what a mail recipient's link reaches through a reverse proxy. Importing this package
loads neither.
"""
