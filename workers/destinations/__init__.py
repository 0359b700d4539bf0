"""The I/O half of each bills-out destination: its HTTP client and the performer that
makes the remote side hold exactly the bill's latest version (``registry``)."""
