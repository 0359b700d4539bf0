"""Getting and keeping OAuth access tokens: the token endpoint (``oauth2``), each
destination's way of getting tokens (``connector``), refreshing under a lock
(``access``), and finishing a person's consent (``consent``)."""
