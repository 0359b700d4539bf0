"""Outbound webhooks, the I/O half: ``sender.send`` posts one signed message to one
destination under the SSRF policy of ``domain/webhooks/addresses.py``."""
