"""Tests of the smtpkit command, run as a subprocess."""
