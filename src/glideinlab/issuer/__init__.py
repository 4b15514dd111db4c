"""The workspace's SciToken issuer, run in the frontend node as upstream 3.11 Frontends do.

It publishes the issuer's public key over HTTPS (under the workspace CA) at the two URLs libscitokens
reads: ``<issuer>/.well-known/openid-configuration`` and its ``jwks_uri``.  Tokens are minted by the
frontend itself with the same key (``glideinlab.protocol.scitoken.mint_scitoken``), so there is no
interactive vault step.
"""
