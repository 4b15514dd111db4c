"""glideinlab: GlideinWMS on real HTCondor, as a one-command container workspace."""

__version__ = "0.1.0"
