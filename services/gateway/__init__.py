"""Gateway: the caption WebSocket that Kaltura's caption client reads (docs/design.md section 5)."""
