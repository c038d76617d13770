"""ShopSim's admin API under `/__sim/` (no auth), for subprocess tests and `pollerd sim`.

A test that runs pollerd as a child process cannot call `ShopSim` methods, so every store action
and fault is reachable over HTTP too (JSON bodies):

    POST   /__sim/orders                    create_order kwargs → {"id": N}
    GET    /__sim/orders/<id>               ground truth (GraphQL-shaped node)
    POST   /__sim/orders/<id>/<action>      pay authorize partially_pay void expire fulfill
                                            touch delete; cancel {"reason"};
                                            refund {"amount"} → {"id": refund id}
    POST   /__sim/updated                   {"ids": [...], "when": RFC 3339} (set_updated)
    POST   /__sim/disputes                  add_dispute kwargs incl. order_id → {"id": N}
    POST   /__sim/disputes/<id>             {"status"}
    POST   /__sim/faults                    {"kind", "count", "retry_after", "delay"}
    DELETE /__sim/faults
    POST   /__sim/consume                   {"points"}
    POST   /__sim/tokens/expire
    POST   /__sim/bulk/fail_next            {"partial": true}
    GET    /__sim/stats | /__sim/log | /__sim/history

Errors: 404 for an unknown order or route, 400 for a bad request, both `{"error": "..."}`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pollerd.model import parse_utc, utc_iso
from pollerd_sim.shop_orders import UnknownOrder
from pollerd_sim.shop_rest import Reply, json_reply

if TYPE_CHECKING:
    from pollerd_sim.shopify import ShopSim

_SIMPLE_ACTIONS = (
    "pay",
    "authorize",
    "partially_pay",
    "void",
    "expire",
    "fulfill",
    "touch",
    "delete",
)


def admin_reply(sim: ShopSim, method: str, path: str, body: bytes) -> Reply:
    try:
        payload = json.loads(body) if body.strip() else {}
        if not isinstance(payload, dict):
            raise TypeError("the body must be a JSON object")
        return json_reply(200, _route(sim, method, path.strip("/").split("/")[1:], payload))
    except UnknownOrder as exc:
        return json_reply(404, {"error": str(exc.args[0])})
    except KeyError as exc:
        return json_reply(400, {"error": f"missing field {exc.args[0]!r}"})
    except LookupError as exc:
        return json_reply(404, {"error": str(exc)})
    except (ValueError, TypeError) as exc:
        return json_reply(400, {"error": str(exc)})


def _when(value: Any, name: str) -> Any:
    if value is None:
        return None
    parsed = parse_utc(str(value))
    if parsed is None:
        raise ValueError(f"{name}: an RFC 3339 time is required")
    return parsed


def _route(sim: ShopSim, method: str, parts: list[str], payload: dict[str, Any]) -> Any:
    match (method, parts):
        case ("POST", ["orders"]):
            payload["created_at"] = _when(payload.get("created_at"), "created_at")
            return {"id": sim.create_order(**payload)}
        case ("GET", ["orders", order_id]):
            return sim.order(int(order_id))
        case ("POST", ["orders", order_id, action]):
            return _order_action(sim, int(order_id), action, payload)
        case ("POST", ["updated"]):
            sim.set_updated([int(i) for i in payload["ids"]], _when(payload["when"], "when"))
            return {"ok": True}
        case ("POST", ["disputes"]):
            disputed = int(payload.pop("order_id"))  # not `order_id`: the str captured above
            amount = str(payload.pop("amount"))
            payload["evidence_due_by"] = _when(payload.get("evidence_due_by"), "evidence_due_by")
            return {"id": sim.add_dispute(disputed, amount, **payload)}
        case ("POST", ["disputes", dispute_id]):
            sim.set_dispute_status(int(dispute_id), str(payload["status"]))
            return {"ok": True}
        case ("POST", ["faults"]):
            kind = str(payload.pop("kind"))
            sim.add_fault(kind, int(payload.pop("count", 1)), **payload)
            return {"ok": True, "kind": kind}
        case ("DELETE", ["faults"]):
            sim.clear_faults()
            return {"ok": True}
        case ("POST", ["consume"]):
            sim.consume(float(payload["points"]))
            return {"ok": True}
        case ("POST", ["tokens", "expire"]):
            sim.expire_tokens()
            return {"ok": True}
        case ("POST", ["bulk", "fail_next"]):
            sim.fail_next_bulk(bool(payload.get("partial", True)))
            return {"ok": True}
        case ("GET", ["stats"]):
            return sim.stats()
        case ("GET", ["log"]):
            with sim._log_lock:
                return list(sim.request_log)
        case ("GET", ["history"]):
            return [
                {
                    "time": utc_iso(c.time),
                    "order_id": c.order_id,
                    "action": c.action,
                    "financial": c.financial,
                }
                for c in sim.history()
            ]
    raise LookupError(f"no admin route {method} /__sim/{'/'.join(parts)}")


def _order_action(sim: ShopSim, order_id: int, action: str, payload: dict[str, Any]) -> Any:
    if action == "cancel":
        sim.cancel(order_id, str(payload.get("reason", "CUSTOMER")))
    elif action == "refund":
        return {"id": sim.refund(order_id, str(payload["amount"]))}
    elif action in _SIMPLE_ACTIONS:
        getattr(sim, action)(order_id)
    else:
        raise LookupError(
            f"no order action {action!r}; known: cancel, refund, {', '.join(_SIMPLE_ACTIONS)}"
        )
    return {"ok": True}
