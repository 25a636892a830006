"""The web UI: server-rendered pages (Jinja2) that degrade to plain links and forms, with live
updates from the page's one event stream."""
