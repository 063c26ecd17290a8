"""slmforge's steps and everything below the flows, grouped by concern (README, "Layout")."""
