"""JupyterHub for tre: authenticator, spawner and pre-spawn hook, configuration and the hub's REST client.

The JupyterHub classes live in :mod:`.auth` and :mod:`.spawner` (importing them needs jupyterhub);
:mod:`.workspace` and :mod:`.client` do not.
"""
