DROP TABLE oidc_identity;
