"""The entry point names NoSuchPlugin, which is not here."""
