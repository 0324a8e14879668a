"""Users, memberships (roles on tenants) and hashed API tokens."""
