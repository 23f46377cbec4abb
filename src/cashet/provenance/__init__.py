"""What was computed from what: queries over a store (log, show, history, diff), the views
the CLI and the server share, and archives (export, import)."""
