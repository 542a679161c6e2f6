"""Pure transforms from staged source records to destination payloads, one module per pair."""
