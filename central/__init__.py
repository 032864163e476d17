"""Central: collector (verify → chain → store → ack), registry, enrolment, bundles, API and page."""
