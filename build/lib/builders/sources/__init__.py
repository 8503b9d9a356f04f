"""One reader per source format. Each yields `SourceItem` or `Reject` (see base.py)."""
