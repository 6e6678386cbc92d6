"""Alerts before the bill: budget thresholds and spend spikes, found by `serve`'s alert thread
in the ledger, remembered so each fires once per period, and sent to the log, webhooks and the
desktop (docs/alerts.md)."""
