"""The control layer: the one observe -> decide -> gate -> plan -> execute loop, its gates, and
policy mode's service (event log, metrics, Lease) around it."""
