"""A protocol-faithful fake Discord for end-to-end tests of the Discord adapter."""
