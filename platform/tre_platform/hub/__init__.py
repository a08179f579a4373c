"""JupyterHub for tre: authenticator, spawner and pre-spawn hook, configuration and the hub's REST client.

The JupyterHub classes live in :mod:`.auth` and :mod:`.spawner` (importing them needs jupyterhub);
:mod:`.workspace` and :mod:`.client` do not. :mod:`.local` runs the control plane and the hub on loopback and
drives them as a researcher's browser does (the end-to-end tests and ``bench/workspace_bench.py``).
"""
