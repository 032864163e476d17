"""Alerts at central: rules over what central stores (rules.py), their evaluation and lifecycle (engine.py),
their SQL (queries.py) and e-mail / webhook notifications (notify.py)."""
