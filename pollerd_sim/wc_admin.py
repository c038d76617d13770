"""The simulator's admin API under `/__sim/` (no auth), for subprocess tests and `pollerd sim`.

A test that runs pollerd as a child process cannot call `WooSim` methods, so every store action
and fault is reachable over HTTP too:

    POST   /__sim/orders                      create_order kwargs → {"id": N}
    GET    /__sim/orders                      every order as REST renders it
    GET    /__sim/orders/<id>                 one order
    POST   /__sim/orders/<id>/status          {"status": "processing"}
    POST   /__sim/orders/<id>/checkout        {"transaction_id": ""} (optional)
    POST   /__sim/orders/<id>/refund          {"amount": "5.00", "reason": ""} → {"id": refund id}
    POST   /__sim/orders/<id>/trash | touch
    POST   /__sim/orders/<id>/restore         {"status": ...} (optional)
    DELETE /__sim/orders/<id>                 force delete
    POST   /__sim/modified                    {"ids": [...], "when": RFC 3339}
    POST   /__sim/faults                      {"kind", "count", "rate", "retry_after", "delay"}
    DELETE /__sim/faults
    GET    /__sim/history | /__sim/stats

Errors: 404 for an unknown order or route, 400 for a bad request, both `{"error": "..."}`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pollerd.model import parse_utc, utc_iso
from pollerd_sim.wc_orders import UnknownOrder
from pollerd_sim.wc_rest import Reply

if TYPE_CHECKING:
    from pollerd_sim.woocommerce import WooSim

_ORDER_ACTIONS = ("status", "checkout", "refund", "trash", "restore", "touch")


def _reply(status: int, data: Any) -> Reply:
    return Reply(status, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


def admin_reply(sim: WooSim, method: str, path: str, body: bytes) -> Reply:
    try:
        payload = json.loads(body) if body.strip() else {}
        if not isinstance(payload, dict):
            raise TypeError("the body must be a JSON object")
        return _reply(200, _route(sim, method, path.strip("/").split("/")[1:], payload))
    except UnknownOrder as exc:
        return _reply(404, {"error": str(exc.args[0])})
    except KeyError as exc:
        return _reply(400, {"error": f"missing field {exc.args[0]!r}"})
    except LookupError as exc:
        return _reply(404, {"error": str(exc)})
    except (ValueError, TypeError) as exc:
        return _reply(400, {"error": str(exc)})


def _route(sim: WooSim, method: str, parts: list[str], payload: dict[str, Any]) -> Any:
    match (method, parts):
        case ("POST", ["orders"]):
            return {"id": sim.create_order(**payload)}
        case ("GET", ["orders"]):
            return list(sim.orders_snapshot().values())
        case ("GET", ["orders", order_id]):
            return sim.order(int(order_id))
        case ("DELETE", ["orders", order_id]):
            sim.delete(int(order_id))
            return {"deleted": int(order_id)}
        case ("POST", ["orders", order_id, action]) if action in _ORDER_ACTIONS:
            return _order_action(sim, int(order_id), action, payload)
        case ("POST", ["modified"]):
            when = parse_utc(str(payload["when"]))
            if when is None:
                raise ValueError("when: an RFC 3339 time is required")
            sim.set_modified([int(i) for i in payload["ids"]], when)
            return {"ok": True}
        case ("POST", ["faults"]):
            kind = str(payload.pop("kind"))
            sim.add_fault(kind, **payload)
            return {"ok": True, "kind": kind}
        case ("DELETE", ["faults"]):
            sim.clear_faults()
            return {"ok": True}
        case ("GET", ["faults"]):
            return [vars(f) for f in sim.faults.active]
        case ("GET", ["history"]):
            return [
                {
                    "time": utc_iso(t.time),
                    "order_id": t.order_id,
                    "status": t.status,
                    "refunded_total": str(t.refunded_total),
                }
                for t in sim.history()
            ]
        case ("GET", ["stats"]):
            return sim.stats()
    raise LookupError(f"no admin route {method} /__sim/{'/'.join(parts)}")


def _order_action(sim: WooSim, order_id: int, action: str, payload: dict[str, Any]) -> Any:
    if action == "status":
        sim.set_status(order_id, str(payload["status"]))
    elif action == "checkout":
        return {"status": sim.checkout(order_id, str(payload.get("transaction_id", "")))}
    elif action == "refund":
        refund_id = sim.refund(order_id, str(payload["amount"]), str(payload.get("reason", "")))
        return {"id": refund_id}
    elif action == "trash":
        sim.trash(order_id)
    elif action == "restore":
        sim.restore(order_id, payload.get("status"))
    else:
        sim.touch(order_id)
    return {"ok": True}
