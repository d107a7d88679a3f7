"""Adversarial submissions for the autograder suite (see attacks.py)."""
