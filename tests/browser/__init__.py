"""Browser tests of the web page (a package: its conftest and helpers are its own)."""
