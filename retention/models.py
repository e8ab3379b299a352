"""Tables of this package."""
