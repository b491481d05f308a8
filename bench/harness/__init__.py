"""The benchmark harness: starts servers and clients, measures, and reports."""
