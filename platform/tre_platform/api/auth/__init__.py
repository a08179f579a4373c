"""Sign-in: passwords, the TOTP step, browser sessions and API tokens."""
