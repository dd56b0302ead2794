"""Worked examples (each a short, runnable script; tests/test_examples.py runs them)."""
