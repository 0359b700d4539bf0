"""HTTP in: webhook intake and the admin API. Thin: it stores, publishes by name, answers."""
