"""Outbound webhooks, the pure half: which addresses a message may be sent to
(``addresses``) and how a message is signed (``signing``). The sending itself, the only
network I/O, is ``workers/webhooks/sender.py``."""
