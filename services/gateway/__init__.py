"""Gateway: the caption WebSocket that Kaltura's caption client reads (DESIGN section 5)."""
