"""The command-line programs (`slmforge`): commands apart from display (tables, error messages)."""
