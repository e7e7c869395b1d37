"""The verification service, its web page and replica sync."""
