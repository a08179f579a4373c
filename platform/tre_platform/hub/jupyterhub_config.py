"""JupyterHub configuration for tre: ``jupyterhub -f platform/tre_platform/hub/jupyterhub_config.py``.

Everything comes from tre's settings (``TRE_*`` environment variables); see
:func:`tre_platform.hub.config.configure`. ``tre hub start`` runs the hub with this file.
"""

from tre_platform.hub.config import configure

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - injected by JupyterHub
configure(c)
