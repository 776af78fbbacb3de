"""Tooling of the rollout end to end (tests/e2e/test_rollouts.py): the lab, a load client, test images."""
