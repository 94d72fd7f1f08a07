"""The cluster's security: its PKI, TLS credentials, user and join tokens."""
