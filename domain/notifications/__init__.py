"""Notifications: who is told what, and how.

- ``emails``: the ``Email`` outbox and the ``email.send`` work item; the notice a disabled
  config or source emails to its chosen users.
- ``rendering``: every email's subject, text and HTML, from the templates in ``templates/``
  (the disabled notice, and one per event type of the catalogue for rules).
- ``rules``: notification rules (an event type, a calculation over its fields, where to
  send); ``matching``: firing them for each emitted event, once.
"""
