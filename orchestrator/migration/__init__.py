"""Inter-cluster migration of a running service: DNS cut-over and the steps around it."""
