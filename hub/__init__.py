"""Findings Hub: verified webhook intake, normalized findings, delivery to ticketing and SIEMs."""

__version__ = "0.1.0"
