"""Test support for the city APIs (not shipped in their images): the platform's daemons on
loopback, configured the way the program configures them, and the bounded load generator."""
