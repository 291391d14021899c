"""Every write of the console's own data (people's authenticators, recovery codes, sign-in
failures, sessions, invitations, memberships), one module per concern; each change writes its
audit event in the same transaction."""
