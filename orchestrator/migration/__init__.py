"""Moving a running service: the typed plan (plan.py) made by the planner (planner.py), one class
per step (steps.py) over what moves between clusters (transfer.py, objects.py), the journaled
executor (executor.py, journal.py), DNS providers and the ownership registry (dns/)."""
