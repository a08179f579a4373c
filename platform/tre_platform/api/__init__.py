"""The REST API: one sub-package per domain (router, schemas, models, service)."""
