"""The audit journal: the hash chain (`chain`, pure), appending and signing (`services`), and what is read back from it (`reports`). docs/audit.md."""
