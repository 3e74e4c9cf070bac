"""What the product keeps in SQL: subscribers (platform side) and the audit trail (worker side)."""
