"""Moving a running service: the typed plan (plan.py) made by the planner (planner.py), one class
per step (steps.py), the journaled executor (executor.py, journal.py), DNS providers (dns/)."""
