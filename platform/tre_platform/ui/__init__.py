"""Server-rendered web pages (Jinja2 + htmx) for every role, served beside the REST API.

``mount_ui(app, api_paths=...)`` adds them to the control plane's application; see :mod:`.app`.
"""

from tre_platform.ui.app import mount_ui

__all__ = ["mount_ui"]
