"""The HTTP face: REST API, Server-Sent Events, OpenAPI docs."""
