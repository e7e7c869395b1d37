"""A department's log: canonical statements, RFC 9162 Merkle math, C2SP signed notes,
checkpoints and cosignatures, tlog-proof, the durable SQLite store and its audit."""
