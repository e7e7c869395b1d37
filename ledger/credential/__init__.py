"""Credentials: what an issuing department hands the holder of a certificate, its
``CL1:`` presentations and QR images."""
