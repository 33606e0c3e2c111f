"""CDS client authentication: JWTs signed by trusted clients, verified against their JWKS."""
