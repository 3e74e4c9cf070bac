"""Pieces shared by the producer (platform side) and the tasks (worker side)."""
