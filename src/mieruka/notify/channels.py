"""Where a message goes: e-mail over SMTP (STARTTLS, login) and webhooks, each with the body its
receiver reads: Slack, Microsoft Teams and Mattermost incoming webhooks, and a generic JSON body
signed with HMAC-SHA256 (`X-Mieruka-Signature: sha256=<hex of the body>`). Every send carries the
delivery's key (`X-Mieruka-Delivery`, the mail's Message-ID), the same on every retry, so a receiver
can drop a message it already has."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from dataclasses import dataclass
from typing import Any

from ..core.clock import utcnow
from .messages import Message

SIGNATURE_HEADER = "X-Mieruka-Signature"
DELIVERY_HEADER = "X-Mieruka-Delivery"


class SendError(Exception):
    """A message was not accepted; the text says why (no secrets in it)."""


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 587
    user: str = ""
    password: str = ""
    starttls: bool = True
    sender: str = "mieruka@localhost"
    timeout: float = 10.0
    ca_file: str = ""  # certificates to trust besides the system's (a self-signed intranet server)


@dataclass(frozen=True)
class Channels:
    smtp: Smtp
    webhook_timeout: float = 10.0
    webhook_secret: str = ""  # the generic webhook's HMAC key when its rule has none
    ca_file: str = ""


def send(channels: Channels, target: str, message: Message, secret: str | None = None) -> None:
    """Send `message` to `target` (`mail:...`, `webhook:...`, `slack:...`...); SendError if refused."""
    channel, _, address = target.partition(":")
    if channel == "mail":
        send_mail(channels.smtp, [a.strip() for a in address.split(",") if a.strip()], message)
        return
    body = payload(channel, message)
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: message.key, "User-Agent": "mieruka"}
    if channel == "webhook":
        key = (secret or channels.webhook_secret).encode()
        headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(key, data, hashlib.sha256).hexdigest()
    import httpx  # on the first webhook: a server that sends none never loads it

    try:
        response = httpx.post(
            address, content=data, headers=headers, timeout=channels.webhook_timeout, verify=tls(channels.ca_file)
        )
    except httpx.HTTPError as exc:
        raise SendError(f"{channel}: {type(exc).__name__}: {exc}"[:500]) from None
    if response.status_code >= 300:
        raise SendError(f"{channel}: the receiver answered {response.status_code} {response.text[:200]!r}")


def payload(channel: str, message: Message) -> dict[str, Any]:
    """The JSON body each kind of webhook expects."""
    text = message.text
    if channel == "slack":
        return {
            "text": f"*{message.title}*\n{text}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _fenced(message)[:2900]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": f"<{message.link}|Open in mieruka>"}},
            ],
        }
    if channel == "mattermost":
        return {"text": f"#### {message.title}\n{_fenced(message)}\n[Open in mieruka]({message.link})"}
    if channel == "teams":  # an Adaptive Card, as Teams workflows' incoming webhooks take it
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {"type": "TextBlock", "text": message.title, "weight": "Bolder", "wrap": True},
                            {"type": "TextBlock", "text": "\n\n".join(message.lines), "wrap": True},
                        ],
                        "actions": [{"type": "Action.OpenUrl", "title": "Open in mieruka", "url": message.link}],
                    },
                }
            ],
        }
    return {
        "delivery": message.key,
        "title": message.title,
        "text": "\n".join(message.lines),
        "url": message.link,
        "digest": message.digest,
        "events": message.events,
    }


def _fenced(message: Message) -> str:
    head, *rest = message.lines or [""]
    body = "\n".join(rest).strip("\n")
    return head + (f"\n```\n{body}\n```" if body else "")


def send_mail(smtp: Smtp, to: list[str], message: Message) -> None:
    # Here: a server that sends no mail never loads the mail modules.
    import smtplib
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    if not smtp.host:
        raise SendError("mail: no SMTP server is configured (setting notify_smtp_host)")
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = smtp.sender
    mail["To"] = ", ".join(to)
    mail["Date"] = format_datetime(utcnow())
    domain = smtp.sender.rpartition("@")[2] or "mieruka"
    mail["Message-ID"] = make_msgid(idstring=message.key, domain=domain)
    mail[DELIVERY_HEADER] = message.key
    mail.set_content(message.text)
    context = tls(smtp.ca_file)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
            if smtp.starttls:
                client.starttls(context=context)
            if smtp.user:
                client.login(smtp.user, smtp.password)
            refused = client.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"mail: {type(exc).__name__}: {exc}"[:500]) from None
    if refused:
        raise SendError(f"mail: refused for {', '.join(refused)}")


def tls(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
