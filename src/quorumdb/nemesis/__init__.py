"""Jepsen-style runs on real node processes: `quorumdb test` (faults, a workload, checkers)."""
