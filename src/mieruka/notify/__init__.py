"""Notifications: rules that send a message when something happens (docs/notifications.md).

    rules.py      what a rule says, declared in code (`@app.task(notify=on_failure("mail:ops@x"))`)
    rulebook.py   the rules as stored (code, admins', users' subscriptions)
    outbox.py     the events, written once each, in the transaction that records what happened
    deliveries.py messages: routing events into them (digests), claiming, retrying
    messages.py   what a message says; channels.py where it goes (SMTP, webhooks)
    notifier.py   the delivery loop of a server

Importing this package imports only the declarations (the core reads them).
"""

from .rules import (
    Rule,
    on_failure,
    on_last_retry,
    on_long_run,
    on_missed_run,
    on_node_down,
    on_pool_change,
    on_source_change,
    on_success,
    rule,
)

__all__ = [
    "Rule",
    "on_failure",
    "on_last_retry",
    "on_long_run",
    "on_missed_run",
    "on_node_down",
    "on_pool_change",
    "on_source_change",
    "on_success",
    "rule",
]
