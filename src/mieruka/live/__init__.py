"""Live dashboards and streams: tiles computed once per refresh and pushed to every viewer, stream
points kept in ring buffers, and the wake-ups that tell open event streams something is new."""
