"""A department's node: issuing API, public log tiles, witness endpoint, mirroring."""
