"""Real clusters: connections from kubeconfigs, and the objects a migration touches."""
