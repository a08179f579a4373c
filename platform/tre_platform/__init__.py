"""Control plane of the Trusted Research Environment."""
