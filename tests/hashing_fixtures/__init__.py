"""Helper modules for the hashing tests (their source is copied, edited and imported)."""
