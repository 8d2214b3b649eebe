"""The decisions tooling: the ADR format (``adr``), replaying the accepted ADRs (``replay``), the check and
index of ``make decisions`` (``check``), new ADRs (``scaffold``), what a run records (``provenance``) and
``make runs`` (``runs``). config.py is read with ``ast`` here, never imported.

May import: the standard library and ``ddpm.decisions`` itself; no torch, so the check runs anywhere.
"""
