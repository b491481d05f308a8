"""Faults and load against ``smtpkit run``: each test starts the command and stops in seconds."""
