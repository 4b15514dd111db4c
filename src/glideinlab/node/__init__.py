"""Node-side entry points, run inside the containers (Debian 13, python3.13).

* ``init``: install what the host rendered under /etc/glideinlab (configs, trust) with the right owners
  and modes, then exec supervisord as PID 1.  Runs at every container start, so it is idempotent.
* ``probe``: check every HTCondor daemon of the node with an authenticated query and every Python
  service with supervisord; print JSON.  Used by ``glideinlab status`` and the compose healthcheck.
"""
