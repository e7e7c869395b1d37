"""certledger's composition root: the command line and the demo, above the ledger core,
the department node and the verifier."""
