"""The store: tables, engine set-up, locks and the sync log. Every other stage of `sync` builds on it."""
