"""Human review: queues and claims, annotations and consensus, the audit log, agreement, Argilla sync."""
