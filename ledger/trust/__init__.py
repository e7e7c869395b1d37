"""Which trust-policy version to trust: the policy document, its queries and TUF's root
rules, as pure functions over bytes."""
