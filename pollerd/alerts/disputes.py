"""`dispute.deadline`: reminders before an open dispute's evidence deadline.

Every dispute awaiting evidence (also one opened before pollerd's first run) gets a reminder
at each configured time `before` its `evidence_due_by`, once each. The reminder due now is the
nearest one whose moment has passed while the deadline is still ahead: at first sight of a
dispute due in 3 hours only the 4 h reminder fires, never the 72 h and 24 h ones it overtook.
A dispute that closed or got evidence (`awaiting` false in `dispute_fact`) gets none: its
state is read from the store on every pass, just before anything is raised.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from pollerd.alerts.base import Alert, Facts, register
from pollerd.alerts.orders import order_alert
from pollerd.config.alerts import DisputeDeadlineAlert
from pollerd.config.types import short
from pollerd.model import utc_iso


def label(before: timedelta) -> str:
    """A reminder's name in its id, in hours as sellers think of them ("72h", "4h")."""
    seconds = before.total_seconds()
    return f"{seconds / 3600:g}h" if seconds % 3600 == 0 else short(before)


@register
class DisputeDeadline:
    type: ClassVar[str] = "dispute.deadline"
    table: ClassVar[str] = "dispute_deadline"

    def __init__(self, config: DisputeDeadlineAlert) -> None:
        self.config = config

    def evaluate(self, facts: Facts[Any]) -> list[Alert]:
        c = self.config
        due = []
        # a deadline later than this has no reminder's moment come yet: not read at all
        latest = facts.now + max(b.total_seconds() for b in c.before)
        for dispute in facts.store.disputes_awaiting(facts.name, facts.now, latest):
            if c.min_amount is not None and dispute.amount < c.min_amount:
                continue
            if c.reason_set and (dispute.reason or "") not in c.reason_set:
                continue
            assert dispute.evidence_due_by is not None  # the query asks for a deadline
            left = dispute.evidence_due_by.timestamp() - facts.now
            passed = [b for b in c.before if left <= b.total_seconds()]
            if passed:
                due.append((dispute, left, label(min(passed))))
        ids = {f"{facts.name}:{self.type}:{d.dispute_id}:{r}" for d, _, r in due}
        sent = facts.store.recorded(ids)  # one query, before reading any order
        alerts = []
        for dispute, left, reminder in due:
            if f"{facts.name}:{self.type}:{dispute.dispute_id}:{reminder}" in sent:
                continue
            figures = {
                "rule": "dispute_deadline",
                "severity": c.severity,
                "dispute": dispute.dispute_id,
                "reminder": reminder,
                "deadline": utc_iso(dispute.evidence_due_by),
                "amount": str(dispute.amount),
                "currency": dispute.currency,
                "reason": dispute.reason,
                "status": dispute.status,
            }
            deadline = utc_iso(dispute.evidence_due_by)
            reason = f"dispute evidence due in {left / 3600:.0f} h ({deadline})"
            subject = f"{dispute.dispute_id}:{reminder}"
            alerts.append(order_alert(facts, self.type, dispute.order_id, reason, figures, subject))
        return alerts
