"""Fetching and checking another member's log: C2SP tiles and the verified replica."""
