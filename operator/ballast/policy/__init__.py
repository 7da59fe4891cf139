"""Pure decisions: the seed's rules as functions. No I/O; time is passed in. Imports only ballast.api."""
